# BoxCaseg: box-supervised instance segmentation by class-agnostic learning with salient
# images (CVPR 2021), as one Snakemake workflow.
#
#   snakemake --cores all                                   # the embedded demo, locally
#   snakemake --cores all --configfile my.yaml              # your data
#   snakemake --workflow-profile profiles/slurm --configfile my.yaml   # on a SLURM cluster
#   snakemake --report results/<run>/report.html            # the HTML report afterwards
#
# One rule file per stage; every rule calls the `boxcaseg` command with paths and one config
# section, so editing a section reruns exactly that stage and what depends on it.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


if "resources" in config:
    raise WorkflowError(
        "config: the `resources:` section is gone. A job's threads and resources are set the "
        "Snakemake way and the launch follows them: --set-threads / --set-resources on the "
        "command line or in a profile (profiles/default, profiles/slurm); docs/cluster.md"
    )
validate(config, schema="schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/segmentation.smk"
include: "rules/proxy.smk"
include: "rules/detection.smk"
include: "rules/summary.smk"


rule all:
    default_target: True
    input:
        final_targets(),

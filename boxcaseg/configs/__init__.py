"""The packaged OpenMMLab configs (``seg/…`` for Stage 2, ``det/…`` for Stage 5) and the lookup
of a config name among them.

The lookup lives here, beside the files, and needs nothing but :mod:`pathlib`: Snakemake's parse
(``model_config_file`` in rules/common.smk) resolves the model configs of every rule without
importing the training engine (torch, mmengine). The config files themselves are executed by
mmengine's ``Config``, never imported as modules.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).parent


def packaged_configs() -> list[str]:
    """Every packaged config a run can name, relative to :data:`CONFIG_DIR` (``seg/…``,
    ``det/…``); the ``_base_`` pieces they inherit from left out."""
    return sorted(
        str(p.relative_to(CONFIG_DIR))
        for p in CONFIG_DIR.rglob("*.py")
        if "_base_" not in p.parts and p.name != "__init__.py"
    )


def resolve_config(config: str) -> str:
    """A config path as given, or relative to the packaged configs (``seg/…``, ``det/…``)."""
    if Path(config).is_file():
        return str(Path(config).resolve())
    packaged = CONFIG_DIR / config
    if packaged.is_file():
        return str(packaged)
    raise FileNotFoundError(
        f"config {config} not found (neither a file nor one of {packaged_configs()})"
    )

"""Every packaged config as mmengine resolves it (its ``_base_`` chain merged, ``_base_.``
references read, ``_delete_`` applied), stored as text: an edit of a config file that changes
what a run trains with shows up as a changed dump (tests/test_resolved_configs.py).

    PYTHONPATH=. python tests/resolved_configs.py            # check: which configs changed
    PYTHONPATH=. python tests/resolved_configs.py --update   # after an INTENDED change: rewrite

A dump is ``Config.fromfile(path).pretty_text`` of one config under boxcaseg/configs (the
``_base_`` pieces are part of the configs that inherit them), in
tests/data/resolved_configs/<seg|det>__<name>.txt. Review the diff of the dumps before
committing them: it is what the change does to each run.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from boxcaseg.configs import CONFIG_DIR, packaged_configs

REPO = Path(__file__).resolve().parents[1]
DUMPS = REPO / "tests" / "data" / "resolved_configs"
UPDATE = "PYTHONPATH=. python tests/resolved_configs.py --update"


def dump_path(config: str) -> Path:
    """``seg/boxcaseg_hr48_voc.py`` -> ``DUMPS/seg__boxcaseg_hr48_voc.txt``."""
    return DUMPS / (config.removesuffix(".py").replace("/", "__") + ".txt")


def resolved_text(config: str) -> str:
    """The packaged ``config`` as mmengine resolves it (its custom_imports must be importable)."""
    from mmengine.config import Config

    return Config.fromfile(str(CONFIG_DIR / config)).pretty_text.rstrip("\n") + "\n"


def difference(config: str) -> str | None:
    """A unified diff from the stored dump to the config as it resolves now, or None if equal."""
    path = dump_path(config)
    now = resolved_text(config)
    stored = path.read_text() if path.is_file() else ""
    if now == stored:
        return None
    return "".join(
        difflib.unified_diff(
            stored.splitlines(keepends=True),
            now.splitlines(keepends=True),
            f"{path.relative_to(REPO)} ({'stored' if stored else 'missing'})",
            f"{config} (as it resolves now)",
        )
    )


def stale_dumps() -> list[Path]:
    """Dumps of configs that are no longer packaged."""
    current = {dump_path(config) for config in packaged_configs()}
    return sorted(p for p in DUMPS.glob("*.txt") if p not in current)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite the stored dumps")
    args = parser.parse_args(argv)
    changed = 0
    for config in packaged_configs():
        diff = difference(config)
        if diff is None:
            continue
        changed += 1
        if args.update:
            dump_path(config).parent.mkdir(parents=True, exist_ok=True)
            dump_path(config).write_text(resolved_text(config))
            print(f"rewritten: {dump_path(config)}")
        else:
            print(diff)
    for path in stale_dumps():
        changed += 1
        if args.update:
            path.unlink()
            print(f"removed (no such config): {path}")
        else:
            print(f"stale (no such config): {path}")
    if not changed:
        print(f"all {len(packaged_configs())} packaged configs resolve to their stored dumps")
    return 0 if args.update or not changed else 1


if __name__ == "__main__":
    sys.exit(main())

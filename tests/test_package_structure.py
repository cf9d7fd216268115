"""The package's layering: no module imports another that (directly or through others)
imports it back, function-level imports included (they hide a circle, they do not remove it);
the OpenMMLab adapters (``boxcaseg.mm``) import no stage module; the config lookup is light."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import boxcaseg

PACKAGE = Path(boxcaseg.__file__).parent


def module_imports(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: the boxcaseg modules it imports anywhere in its body}`` (function-level and
    relative imports included), for the ``boxcaseg`` package at ``package``."""
    modules = {}
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if relative.parts[0] == "configs" and len(relative.parts) > 2:
            continue  # OpenMMLab config files (seg/, det/), not modules
        parts = ("boxcaseg", *relative.with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        # the package a relative import starts from: the module's own for an __init__.py
        home = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = home[: len(home) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                targets.add(module)
                targets.update(f"{module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_the_circle_finder_finds_a_circle():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    graph = module_imports()
    assert "boxcaseg.data.yolo_seg" in graph and "boxcaseg.cli" in graph
    assert import_circles(graph) == []


# The stages (one module each, docs/method.md) and the command over them run the OpenMMLab
# adapters, never the other way round: code that an adapter and a stage both need lives below
# both (as Stage 3's inference in boxcaseg.proxy_inference, which the mIoU* hook runs).
STAGE_MODULES = {
    "boxcaseg.engine",
    "boxcaseg.segmentation",
    "boxcaseg.proxy",
    "boxcaseg.merge_drop",
    "boxcaseg.baselines",
    "boxcaseg.detection",
    "boxcaseg.apply",
    "boxcaseg.summary",
    "boxcaseg.cli",
}


def adapters_importing_stages(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """``{module under boxcaseg.mm: the stage modules it imports}``, where there are any."""
    return {
        name: sorted(targets & STAGE_MODULES)
        for name, targets in sorted(graph.items())
        if (name == "boxcaseg.mm" or name.startswith("boxcaseg.mm.")) and targets & STAGE_MODULES
    }


def test_the_stage_import_finder_sees_function_level_and_relative_imports(tmp_path):
    package = tmp_path / "boxcaseg"
    (package / "mm" / "seg").mkdir(parents=True)
    for module in ("__init__", "engine", "proxy", "crops", "mm/__init__", "mm/seg/__init__"):
        (package / f"{module}.py").write_text("")
    (package / "mm/seg/model.py").write_text(
        "from boxcaseg.crops import x\n\ndef load():\n    from boxcaseg.engine import y\n"
    )
    (package / "mm/seg/hooks.py").write_text("from ...proxy import grade\nfrom . import model\n")
    (package / "mm/__init__.py").write_text("from boxcaseg import engine\n")
    graph = module_imports(package)
    assert graph["boxcaseg.mm.seg.hooks"] == {
        "boxcaseg.proxy",
        "boxcaseg.mm.seg",
        "boxcaseg.mm.seg.model",
    }
    assert adapters_importing_stages(graph) == {
        "boxcaseg.mm": ["boxcaseg.engine"],
        "boxcaseg.mm.seg.hooks": ["boxcaseg.proxy"],
        "boxcaseg.mm.seg.model": ["boxcaseg.engine"],
    }


def test_the_openmmlab_adapters_import_no_stage_module():
    """The registered adapters (boxcaseg/mm/) sit below the stages: a config's custom_imports
    loads them in plain mmseg / mmdet, without the training engine or a stage's file steps."""
    graph = module_imports()
    assert "boxcaseg.mm.seg.hooks" in graph and STAGE_MODULES <= set(graph)
    assert adapters_importing_stages(graph) == {}


@pytest.mark.slow
def test_every_module_imports_alone():
    """Each module in a fresh interpreter: an import that only works after another module
    was loaded (an order dependence, or a circle broken by luck) fails here."""
    names = sorted(module_imports())
    code = "import importlib, sys\nimportlib.import_module(sys.argv[1])\n"
    failures = {}
    for name in names:
        result = subprocess.run(
            [sys.executable, "-c", code, name],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        )
        if result.returncode:
            failures[name] = result.stderr.strip().splitlines()[-1:]
    assert len(names) > 40 and failures == {}


def test_the_config_lookup_loads_no_training_stack():
    """Snakemake's parse resolves every rule's model config (rules/common.smk,
    ``model_config_file``): the lookup must not pull in torch or mmengine."""
    code = (
        "import sys; from boxcaseg.configs import resolve_config; "
        "resolve_config('seg/boxcaseg_hr48_voc.py'); "
        "print(sorted(m for m in ('torch', 'mmengine', 'boxcaseg.engine') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"

"""The package's layering: no module imports another that (directly or through others)
imports it back, function-level imports included (they hide a circle, they do not remove it)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import boxcaseg

PACKAGE = Path(boxcaseg.__file__).parent


def module_imports() -> dict[str, set[str]]:
    """``{module: the boxcaseg modules it imports anywhere in its body}``."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "configs" and len(relative.parts) > 2:
            continue  # OpenMMLab config files (seg/, det/), not modules
        parts = ("boxcaseg", *path.relative_to(PACKAGE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
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

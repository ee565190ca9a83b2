"""Layers point one way: the core (`gflow/` outside `gflow/cli/` and `gflow/bench/`) imports no
environment, command-line or benchmark module, and probes no environment with getattr."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "gflow"
ABOVE_CORE = ("gflow.envs", "gflow.cli", "gflow.bench", "envs")
"""Packages the core must not import (the installed gflow.envs, and a stray top-level envs)."""


def core_modules() -> list[Path]:
    """Every Python file of the core (`python -m gflow`, the command's entry point, is not)."""
    return [
        path
        for path in sorted(ROOT.rglob("*.py"))
        if path.relative_to(ROOT).parts[0] not in ("cli", "bench", "__main__.py")
    ]


def imported(path: Path) -> list[str]:
    """The absolute module names a file imports, at any depth (lazy imports included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_the_walk_sees_the_core():
    paths = {p.relative_to(ROOT).as_posix() for p in core_modules()}
    assert {"training.py", "env.py", "objectives/base.py", "policies/mlp.py"} <= paths
    assert not any(p.startswith(("cli/", "bench/")) for p in paths)


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_core_imports_nothing_above_it(path):
    bad = [
        name
        for name in imported(path)
        if any(name == top or name.startswith(top + ".") for top in ABOVE_CORE)
    ]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


PROBE = re.compile(r"\b(getattr|hasattr)\((env|self\.env|base)\s*,\s*[\"']")
"""An environment attribute read by name with a fallback: a declaration the contract lacks."""


def test_the_checks_would_catch_a_violation(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f(env):\n    from gflow.envs.hypergrid import HyperGrid\n")
    assert "gflow.envs.hypergrid" in imported(sample)
    assert PROBE.search('if getattr(env, "conditional", False):')
    assert not PROBE.search("fn = getattr(self.env, method)")


def test_no_environment_is_probed_with_getattr():
    probe = PROBE
    hits = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in sorted(ROOT.rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if probe.search(line)
    ]
    assert not hits, f"environment probed with getattr at {hits}; declare it on gflow.env.Env"


@pytest.mark.parametrize(
    "path", sorted((ROOT / "bench").glob("*.py")), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_benchmarks_import_no_command_line(path):
    bad = [name for name in imported(path) if name == "gflow.cli" or name.startswith("gflow.cli.")]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"

"""The `gflow` command starts fast: `--help` and `hv` on a small file import no heavy library
(torch, rdkit, matplotlib, ...), as `python -X importtime` shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = {"torch", "rdkit", "matplotlib", "torch_geometric", "botorch", "pyarrow", "scipy", "RNA"}
"""Top-level packages that take a second or more to import; only commands that use them may."""


def imported(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `python -X importtime -m gflow ARGV`: the process and the top-level packages imported."""
    command = [sys.executable, "-X", "importtime", "-m", "gflow", *argv]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    names = {
        line.rpartition("|")[2].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    return proc, names


@pytest.mark.parametrize("argv", [["--help"], ["hv", "--help"], ["score", "--help"]])
def test_help_imports_nothing_heavy(argv):
    proc, names = imported(*argv)
    assert proc.returncode == 0 and "usage: gflow" in proc.stdout
    assert "gflow" in names and not names & HEAVY, sorted(names & HEAVY)


def test_hv_on_a_small_file_imports_nothing_heavy(tmp_path: Path):
    path = tmp_path / "front.csv"
    path.write_text("1,3\n2,2\n3,1\n")
    proc, names = imported("hv", str(path), "--ref", "0,0")
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "6.0"
    assert "moocore" in names and not names & HEAVY, sorted(names & HEAVY)


def test_train_help_still_lists_every_option():
    proc, names = imported("train", "hypergrid", "--help")
    assert proc.returncode == 0 and "--objective" in proc.stdout and "--ndim" in proc.stdout

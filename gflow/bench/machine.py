"""Where a benchmark ran, recorded beside its results: one function for every benchmark."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one), else what `platform` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_record() -> dict[str, Any]:
    """The CPU model name, its family and model numbers (hosts that share a name can differ by a
    generation) and the vector instructions torch's CPU kernels use (e.g. AVX2, AVX512)."""
    import torch

    ids = {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("cpu family", "model") and key.strip() not in ids:
                ids[key.strip()] = value.strip()
            if len(ids) == 2:
                break
    family_model = f"family {ids['cpu family']} model {ids['model']}" if len(ids) == 2 else None
    return {
        "cpu": cpu_name(),
        "cpu_family_model": family_model,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_info() -> dict[str, Any]:
    """Platform, CPU (`cpu_record`) and core count, Python and torch versions, torch's thread
    count and the 1-minute load average now (where the OS reports one)."""
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        **cpu_record(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_1m": load,
    }


def code_state(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The git commit of the checkout at `root` (default: the one holding gflow) and the files
    under gflow/ and envs/ that differ from it; None and [] outside a git checkout."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    git = ["git", "-C", str(root)]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--", "gflow", "envs"], capture_output=True, text=True
        )
    except OSError:
        return {"gflow_commit": None, "gflow_uncommitted_files": []}
    files = [line[3:] for line in changed.stdout.splitlines()] if commit.returncode == 0 else []
    return {"gflow_commit": commit.stdout.strip() or None, "gflow_uncommitted_files": files}

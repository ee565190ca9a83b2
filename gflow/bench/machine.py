"""Where a benchmark ran, recorded beside its results: one function for every benchmark."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any


def _cpuinfo(keys: tuple[str, ...]) -> dict[str, str]:
    """The first value of each of `keys` in /proc/cpuinfo (empty where there is none)."""
    cpuinfo = Path("/proc/cpuinfo")
    found: dict[str, str] = {}
    if not cpuinfo.exists():
        return found
    for line in cpuinfo.read_text().splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in keys and key not in found:
            found[key] = value.strip()
            if len(found) == len(keys):
                break
    return found


def cpu_record() -> dict[str, Any]:
    """The CPU model name (else what `platform` says), its family and model numbers (hosts that
    share a name can differ by a generation) and the vector instructions torch's CPU kernels
    use (e.g. AVX2, AVX512)."""
    import torch

    ids = _cpuinfo(("model name", "cpu family", "model"))
    has_ids = "cpu family" in ids and "model" in ids
    return {
        "cpu": ids.get("model name") or platform.processor() or platform.machine(),
        "cpu_family_model": f"family {ids['cpu family']} model {ids['model']}" if has_ids else None,
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

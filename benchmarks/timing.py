"""The timed loop of the throughput benchmark, the same on both sides: imported by
benchmarks/throughput.py and by the peer's script (it needs torch only)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any


def time_iterations(step: Callable[[], Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run `step` `warmup` times untimed, then until the wall budget (and the minimum count) is
    spent; iterations, wall and CPU seconds."""
    import torch

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None
    for _ in range(args.warmup):
        step()
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    iterations = 0
    while iterations < args.min_iterations or time.perf_counter() - wall < args.seconds:
        step()
        iterations += 1
    sync()
    return {
        "iterations": iterations,
        "wall_seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
    }


def phase_rows(report: dict[str, Any], unit: str, digits: int) -> list[str]:
    """A profile's phases as markdown table rows (header first), the parts of sampling
    indented under it; `unit` names the period ("iteration", "step")."""
    rows = [f"| phase | ms / {unit} | share |", "| --- | ---: | ---: |"]
    for name, value in report["phases"].items():
        rows.append(f"| {name} | {value['ms']:.{digits}f} | {100 * value['share']:.1f}% |")
        if name == "sampling":
            for part, v in report["sampling_parts"].items():
                rows.append(f"| - {part} | {v['ms']:.{digits}f} | {100 * v['share']:.1f}% |")
    return rows

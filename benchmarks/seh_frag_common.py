"""What the side-by-side molecule benchmarks (seh_frag.py, seh_frag_moo.py) share: the machine
record, running a `gflow bench` command in its own process, and the figure that puts both
sides' curves against training steps and against wall-clock seconds on the same axes."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from gflow.bench.machine import children_cpu_seconds, code_state, cpu_record
from gflow.bench.plots import save_figure

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
COLOURS = {"gflow": "tab:blue", "peer": "tab:red"}


def add_side_by_side_arguments(p: argparse.ArgumentParser, results: Path) -> None:
    """The options both side-by-side molecule benchmarks take (run lengths, reuse, outputs)."""
    p.add_argument("--steps", type=int, default=120, help="training steps of the peer")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads, each side")
    p.add_argument("--log-every", type=int, default=10, help="steps between curve points")
    p.add_argument("--head", choices=("factored", "flat"), default="factored",
                   help="gflow's fragment head (gflow bench seh-frag --head)")
    p.add_argument("--gflow-seconds", type=float, default=None,
                   help="gflow's training budget in seconds (default: the peer's wall time; "
                   "without --peer, none: gflow runs --steps)")  # fmt: skip
    p.add_argument("--peer-run", type=Path, default=None,
                   help="reuse an earlier peer run folder (its results.json and log) instead of "
                   "training the peer again; recorded as reused")  # fmt: skip
    p.add_argument("--gflow-run", type=Path, default=None,
                   help="reuse a finished gflow run folder, no new training")  # fmt: skip
    p.add_argument("--note", default=None, help="how the sides were run, kept in the results")
    p.add_argument("--work", type=Path, default=None, help="run folders (default: a temp dir)")
    p.add_argument("--results", type=Path, default=results)


def check_side_by_side_arguments(
    p: argparse.ArgumentParser, args: argparse.Namespace, counts: Sequence[str]
) -> None:
    """Refuse counts below 1 (`counts`: option names, as attributes) and a --steps that is not
    a multiple of --log-every."""
    if any(getattr(args, name.lstrip("-").replace("-", "_")) < 1 for name in counts):
        names = ", ".join(counts[:-1]) + f" and {counts[-1]}"
        p.error(f"{names} must be >= 1")
    if args.steps % args.log_every:
        p.error(f"--steps ({args.steps}) must be a multiple of --log-every ({args.log_every})")


def machine(threads: int) -> dict[str, Any]:
    """Where, when and with what the benchmark ran."""
    import torch

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **code_state(ROOT),
        "platform": platform.platform(),
        **cpu_record(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads_per_side": threads,
    }


def run_gflow(command: Sequence[str], out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run `gflow <command> --out OUT` in its own process (so that its peak memory is its own);
    its results.json and how the process ran: the load average before and after, its CPU seconds
    (user + system) and wall seconds, setup and evaluation included."""
    gflow = Path(sys.executable).parent / "gflow"
    before = list(os.getloadavg())
    cpu, start = children_cpu_seconds(), time.perf_counter()
    done = subprocess.run([str(gflow), *command, "--out", str(out)], text=True, check=False)
    cpu, wall = children_cpu_seconds() - cpu, time.perf_counter() - start
    after = list(os.getloadavg())
    if done.returncode != 0:
        raise SystemExit(f"gflow {' '.join(command)} exited with status {done.returncode}")
    process = {
        "load_average": {"before": before, "after": after},
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "cpu_percent_of_one_core": 100 * cpu / wall,
    }
    return json.loads((out / "results.json").read_text()), process


def per_cpu_second(trajectories: int, process: dict[str, Any]) -> float | None:
    """Trajectories per CPU second of a whole process (setup and evaluation included), where
    its CPU seconds are known."""
    cpu = process.get("cpu_seconds")
    return trajectories / cpu if cpu else None


def at_step(history: list[dict[str, Any]], step: int) -> dict[str, Any]:
    """The curve entry at exactly `step`."""
    matches = [h for h in history if h["step"] == step]
    if not matches:
        raise SystemExit(f"the curve has no entry at step {step}")
    return matches[0]


def at_equal_steps(run: dict[str, Any], steps: int, batch: int) -> dict[str, Any]:
    """gflow's curve entry at `steps` with its trajectories/s to there and its peak resident
    memory up to there (the whole run's where the curve does not record it: runs from before
    it did), the whole run's peak beside it."""
    entry = at_step(run["history"], steps)
    return entry | {
        "trajectories_per_second": steps * batch / entry["seconds"],
        "peak_rss_mb": entry.get("peak_rss_mb") or run["peak_rss_mb"],
        "peak_rss_mb_whole_run": run["peak_rss_mb"],
    }


def within(history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The last curve entry reached within `seconds`."""
    inside = [h for h in history if h["seconds"] <= seconds]
    return inside[-1] if inside else history[0]


def target(value: float | None, op: str, goal: float) -> dict[str, Any]:
    """A target's record: the value, the target (`>= goal` or `<= goal`) and whether it is met."""
    met = value is not None and (value >= goal if op == ">=" else value <= goal)
    return {"value": value, "target": f"{op} {goal}", "met": met}


def curve_figure(
    path: Path,
    title: str,
    curves: dict[str, list[dict[str, Any]]],
    metrics: Sequence[tuple[str, str]],
    marks: dict[str, float] | None = None,
) -> None:
    """One row per metric (key, axis label), columns against steps and against seconds; each
    side's history (entries with step, seconds and the metric keys) on the same axes. `marks`
    draws labelled vertical lines on the seconds column (e.g. the peer's wall time)."""
    figure = Figure(figsize=(11, 3.4 * len(metrics)), layout="constrained")
    axes = figure.subplots(len(metrics), 2, squeeze=False)
    for row, (key, label) in enumerate(metrics):
        for column, x in enumerate(("step", "seconds")):
            ax = axes[row][column]
            for side, history in curves.items():
                points = [(h[x], h[key]) for h in history if h.get(key) is not None]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, color=COLOURS.get(side), lw=1.8, marker="o", ms=2, label=side)
            for name, value in (marks or {}).items():
                if x == "seconds":
                    ax.axvline(value, color="grey", ls="--", lw=1)
                    ax.annotate(name, (value, 0.02), xycoords=("data", "axes fraction"),
                                rotation=90, fontsize=7, color="grey")  # fmt: skip
            ax.set_xlabel("training step" if x == "step" else "wall-clock seconds")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    figure.suptitle(title)
    save_figure(figure, path, dpi=90)

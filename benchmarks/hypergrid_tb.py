"""Hypergrid trajectory-balance benchmark: gflow against torchgfn on the same machine.

For each setting (4-D H=8 and 2-D H=64, R0 = 1e-3, batch 16, a 2x256 MLP, Adam lr 1e-3 with
log Z at lr 1e-1, uniform P_B, no exploration) both libraries train one after the other, never
at once, alternating which goes first, under the same budget: an iteration count or a training
wall time, whichever ends first. Each run reports iterations/s and trajectories/s (compared over
the iterations every run completed) and the training wall time (exact evaluation excluded, at the
same cadence on both sides) until the exact TV between the sampler's terminal distribution and
R/Z first reaches the target. torchgfn runs in its own virtual environment, created here on
first use and never a dependency of gflow. Results go to benchmarks/results/hypergrid_tb.json
with a PNG plot beside it.

    .venv/bin/python benchmarks/hypergrid_tb.py            # full run (about an hour on 2 cores)
    .venv/bin/python benchmarks/hypergrid_tb.py --quick    # smoke run, a minute or two
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = ROOT / "benchmarks" / "peers" / "torchgfn_hypergrid.py"
DEFAULT_VENV = ROOT / ".peer" / "torchgfn"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "hypergrid_tb.json"
QUICK_OUT = ROOT / "runs" / "bench" / "hypergrid_tb_quick.json"
LIBRARIES = ("gflow", "torchgfn")


@dataclass(frozen=True)
class Setting:
    """One benchmarked grid: its budget per run (whichever ends first), evaluation cadence and
    number of repeats."""

    name: str
    ndim: int
    height: int
    iterations: int
    seconds: float
    eval_every: int
    repeats: int


SETTINGS = (
    Setting("4d_h8", 4, 8, iterations=8000, seconds=300, eval_every=100, repeats=3),
    Setting("2d_h64", 2, 64, iterations=10**6, seconds=600, eval_every=500, repeats=3),
)
QUICK = {"iterations": 200, "seconds": 60, "eval_every": 100, "repeats": 1}
SECONDARY_LEVELS = (0.5, 0.3)
"""Looser TV levels also timed: where the target is out of reach, they still compare progress."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the published settings."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: few iterations, one repeat")
    p.add_argument(
        "--settings",
        nargs="+",
        choices=[s.name for s in SETTINGS],
        default=[s.name for s in SETTINGS],
    )
    p.add_argument("--iterations", type=int, help="iteration budget per run (default: per setting)")
    p.add_argument(
        "--max-seconds", type=float, help="training wall-time budget per run (default: per setting)"
    )
    p.add_argument("--repeats", type=int, help="runs per library and setting (default: per one)")
    p.add_argument("--eval-every", type=int, help="iterations between exact evaluations")
    p.add_argument("--seed", type=int, default=0, help="seed of the first repeat")
    p.add_argument("--tv-target", type=float, default=0.1)
    p.add_argument("--r0", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-logz", type=float, default=1e-1)
    p.add_argument("--epsilon", type=float, default=0.0, help="uniform exploration, both sides")
    p.add_argument("--threads", type=int, default=1, help="torch threads in each run")
    p.add_argument("--peer-venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--peer-spec", default="torchgfn>=2.4,<2.5", help="pip requirement for the peer")
    p.add_argument("--skip-peer", action="store_true", help="measure gflow only")
    p.add_argument(
        "--from-json",
        action="store_true",
        help="run nothing: derive the figures and the plot again from the curves in --out",
    )
    p.add_argument("--out", type=Path, help=f"JSON path (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ndim", type=int, help=argparse.SUPPRESS)
    p.add_argument("--height", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.out is None:
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT
    for name in ("iterations", "repeats", "eval_every", "batch", "hidden", "layers", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_seconds is not None and args.max_seconds <= 0:
        p.error("--max-seconds must be > 0")
    if not 0 <= args.epsilon <= 1:
        p.error("--epsilon must be in [0, 1]")
    if not 0 < args.tv_target < 1:
        p.error("--tv-target must be in (0, 1)")
    return args


def budget(args: argparse.Namespace, setting: Setting) -> dict[str, Any]:
    """Iterations, seconds, evaluation cadence and repeats for one setting: the command line
    first, then --quick, then the setting's own."""
    own = (
        QUICK
        if args.quick
        else {
            "iterations": setting.iterations,
            "seconds": setting.seconds,
            "eval_every": setting.eval_every,
            "repeats": setting.repeats,
        }
    )
    given = {
        "iterations": args.iterations,
        "seconds": args.max_seconds,
        "eval_every": args.eval_every,
        "repeats": args.repeats,
    }
    return {k: own[k] if given[k] is None else given[k] for k in own}


def run_gflow(args: argparse.Namespace) -> dict[str, Any]:
    """Worker: train with gflow's training loop (`Trainer.run`, what `gflow.training.train`
    runs) until the iteration budget, or the wall-time budget checked at each evaluation."""
    import torch
    from gflow.envs.hypergrid import HyperGrid

    from gflow.checkpoint import seed_everything
    from gflow.objectives import get_objective
    from gflow.training import ModelConfig, TrainConfig, Trainer, build_policy

    torch.set_num_threads(args.threads)
    env = HyperGrid(args.ndim, args.height, r0=args.r0)
    every = args.eval_every
    config = TrainConfig(
        steps=-(-args.iterations // every) * every,
        batch_size=args.batch,
        lr=args.lr,
        lr_log_z=args.lr_logz,
        epsilon=args.epsilon,
        eval_every=args.eval_every,
        checkpoint_every=0,
        log_every=args.eval_every,
        seed=args.seed,
    )
    seed_everything(args.seed)
    policy = build_policy(env, ModelConfig(hidden=args.hidden, layers=args.layers))
    trainer = Trainer(env, policy, get_objective("tb"), config)
    seed_everything(args.seed)
    budget = args.max_seconds
    trainer.run(quiet=True, until=lambda t: t.step % every == 0 and t.train_seconds >= budget)
    curve = [
        {"iteration": e["step"], "seconds": e["train_seconds"], "tv": e["exact_tv"]}
        for e in trainer.eval_history
    ]
    return {"curve": curve}


def ensure_peer(venv: Path, spec: str) -> Path:
    """The peer's Python, creating its virtual environment (CPU torch first) if it is missing."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    import torch

    torch_version = torch.__version__.split("+")[0]
    print(f"creating {venv} with torch=={torch_version} (CPU) and {spec}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"torch=={torch_version}"], check=True)
    subprocess.run([*pip, spec], check=True)
    return python


def peer_versions(python: Path) -> dict[str, str]:
    """torch and torchgfn versions inside the peer environment."""
    code = (
        "import importlib.metadata as m, json, torch;"
        "print(json.dumps({'torch': torch.__version__, 'torchgfn': m.version('torchgfn')}))"
    )
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def worker_flags(
    args: argparse.Namespace, setting: Setting, plan: dict[str, Any], seed: int
) -> list[str]:
    """Settings passed identically to both workers."""
    flags = {
        "--ndim": setting.ndim,
        "--height": setting.height,
        "--r0": args.r0,
        "--batch": args.batch,
        "--hidden": args.hidden,
        "--layers": args.layers,
        "--lr": args.lr,
        "--lr-logz": args.lr_logz,
        "--epsilon": args.epsilon,
        "--seed": seed,
        "--iterations": plan["iterations"],
        "--max-seconds": plan["seconds"],
        "--eval-every": plan["eval_every"],
        "--threads": args.threads,
    }
    return [str(x) for pair in flags.items() for x in pair]


def launch(command: list[str]) -> dict[str, Any]:
    """Run one worker to completion and parse the JSON on the last line of its output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:2])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def levels(target: float) -> list[float]:
    """TV levels timed in every run: the target and the looser SECONDARY_LEVELS, loosest first."""
    return sorted({target, *SECONDARY_LEVELS}, reverse=True)


def summarize_run(
    library: str,
    seed: int,
    curve: list[dict[str, float]],
    load: tuple[list[float], list[float]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Throughput and times to each TV level of one run, from its evaluation curve."""
    last = curve[-1]
    rate = last["iteration"] / last["seconds"] if last["seconds"] > 0 else None
    hits = {
        f"{v:g}": next((c for c in curve if c["tv"] <= v), None) for v in levels(args.tv_target)
    }
    return {
        "library": library,
        "seed": seed,
        "iterations": last["iteration"],
        "train_seconds": last["seconds"],
        "iterations_per_second": rate,
        "trajectories_per_second": None if rate is None else rate * args.batch,
        "seconds_to_tv": {k: None if h is None else h["seconds"] for k, h in hits.items()},
        "iterations_to_tv": {k: None if h is None else h["iteration"] for k, h in hits.items()},
        "final_tv": last["tv"],
        "min_tv": min(c["tv"] for c in curve),
        "loadavg_before": load[0],
        "loadavg_after": load[1],
        "curve": curve,
    }


def seconds_at(run: dict[str, Any], iteration: int) -> float:
    """Training seconds a run took to reach `iteration` (an evaluation point of its curve)."""
    return next(c["seconds"] for c in run["curve"] if c["iteration"] == iteration)


def time_to(runs: list[dict[str, Any]], level: str) -> dict[str, Any]:
    """Median time to a TV level over runs, a run that never got there counting as slower than
    any; with the shortest training time of those runs, a bound when the median did not."""
    times = [r["seconds_to_tv"][level] for r in runs]
    median = statistics.median_low(float("inf") if t is None else t for t in times)
    missed = [r["train_seconds"] for r, t in zip(runs, times, strict=True) if t is None]
    return {
        "reached": len(runs) - len(missed),
        "seconds": None if median == float("inf") else median,
        "not_reached_after_seconds": min(missed) if missed else None,
    }


def summarize(runs: list[dict[str, Any]], matched: int, args: argparse.Namespace) -> dict[str, Any]:
    """Medians over repeats. Throughput is taken over the first `matched` iterations, which
    every run of the setting completed: the same stretch of training for both libraries."""
    rate = statistics.median(matched / seconds_at(r, matched) for r in runs)
    return {
        "runs": len(runs),
        "matched_iterations": matched,
        "iterations_per_second": rate,
        "trajectories_per_second": rate * args.batch,
        "iterations_per_second_whole_run": statistics.median(
            r["iterations_per_second"] for r in runs
        ),
        "time_to_tv": {f"{v:g}": time_to(runs, f"{v:g}") for v in levels(args.tv_target)},
    }


def time_ratio(ours: dict[str, Any], peer: dict[str, Any]) -> tuple[float | None, str | None]:
    """torchgfn/gflow median time to one TV level, and a note when it is a bound or missing."""
    if ours["seconds"] is None:
        return None, "gflow's median run did not reach it"
    if peer["seconds"] is None:
        bound = peer["not_reached_after_seconds"] / ours["seconds"]
        return bound, "lower bound: torchgfn's median run did not reach it"
    return peer["seconds"] / ours["seconds"], None


def ratios(ours: dict[str, Any], peer: dict[str, Any], target: float) -> dict[str, Any]:
    """gflow/torchgfn iterations per second, torchgfn/gflow time to each TV level."""
    out: dict[str, Any] = {
        "iterations_per_second": ours["iterations_per_second"] / peer["iterations_per_second"],
        "time_to_tv": {},
    }
    for level in ours["time_to_tv"]:
        value, note = time_ratio(ours["time_to_tv"][level], peer["time_to_tv"][level])
        out["time_to_tv"][level] = value if note is None else {"value": value, "note": note}
    out["time_to_target"] = out["time_to_tv"][f"{target:g}"]
    return out


def summarize_setting(entry: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Fill a setting's per-library summaries and ratios from its runs."""
    runs = entry["runs"]
    matched = min(r["iterations"] for r in runs)
    libraries = [lib for lib in LIBRARIES if any(r["library"] == lib for r in runs)]
    for library in libraries:
        entry[library] = summarize([r for r in runs if r["library"] == library], matched, args)
    if len(libraries) == 2:
        entry["ratios"] = ratios(entry["gflow"], entry["torchgfn"], args.tv_target)
    return entry


def machine(peer: dict[str, str] | None, threads: int) -> dict[str, Any]:
    """Where and with what the benchmark ran."""
    import torch

    from gflow.bench.machine import code_state, cpu_record

    return {
        **code_state(ROOT),
        "platform": platform.platform(),
        **cpu_record(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch_threads_per_run": threads,
        "gflow_torch": torch.__version__,
        "peer_torch": None if peer is None else peer["torch"],
        "torchgfn": None if peer is None else peer["torchgfn"],
    }


def plot(result: dict[str, Any], path: Path, target: float) -> None:
    """Exact TV against training wall time, one panel per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = result["settings"]
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4.2), squeeze=False)
    colors = {"gflow": "tab:blue", "torchgfn": "tab:orange"}
    for ax, setting in zip(axes[0], settings, strict=True):
        for library in LIBRARIES:
            for i, run in enumerate(r for r in setting["runs"] if r["library"] == library):
                xs = [c["seconds"] for c in run["curve"]]
                ys = [max(c["tv"], 1e-4) for c in run["curve"]]
                ax.plot(
                    xs,
                    ys,
                    color=colors[library],
                    alpha=0.8,
                    lw=1.2,
                    label=library if i == 0 else None,
                )
                hit = run["seconds_to_tv"][f"{target:g}"]
                if hit is not None:
                    ax.plot(hit, target, "o", color=colors[library], ms=5)
        ax.axhline(target, color="gray", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("training wall time (s), evaluation excluded")
        ax.set_ylabel("exact TV(P_T, R/Z)")
        ax.set_title(f"hypergrid {setting['ndim']}-D H={setting['height']}, TB, batch 16")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_setting(
    args: argparse.Namespace, setting: Setting, peer_python: Path | None
) -> dict[str, Any]:
    """All repeats of one setting, the libraries alternating which goes first."""
    plan = budget(args, setting)
    libraries = ("gflow",) if peer_python is None else LIBRARIES
    runs = []
    for repeat in range(plan["repeats"]):
        seed = args.seed + repeat
        flags = worker_flags(args, setting, plan, seed)
        for library in libraries if repeat % 2 == 0 else libraries[::-1]:
            if library == "gflow":
                command = [sys.executable, __file__, "--worker", *flags]
            else:
                command = [str(peer_python), str(PEER_SCRIPT), *flags]
            before = list(os.getloadavg())
            curve = launch(command)["curve"]
            load = (before, list(os.getloadavg()))
            run = summarize_run(library, seed, curve, load, args)
            runs.append(run)
            print(
                f"{setting.name} {library:8s} seed {seed}: "
                f"{run['iterations_per_second']:.1f} it/s over {run['iterations']} iterations, "
                f"seconds to TV {run['seconds_to_tv']}, final TV {run['final_tv']:.3f}",
                flush=True,
            )
    entry = {"name": setting.name, "ndim": setting.ndim, "height": setting.height, "budget": plan}
    entry["runs"] = runs
    return summarize_setting(entry, args)


def resummarize(args: argparse.Namespace) -> dict[str, Any]:
    """The report in --out with every figure derived again from its stored curves."""
    result = json.loads(args.out.read_text())
    for entry in result["settings"]:
        entry["runs"] = [
            summarize_run(
                r["library"],
                r["seed"],
                r["curve"],
                (r["loadavg_before"], r["loadavg_after"]),
                args,
            )
            for r in entry["runs"]
        ]
        summarize_setting(entry, args)
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with --worker, one gflow training run)."""
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_gflow(args)))
        return
    if args.from_json:
        result = resummarize(args)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        plot(result, args.out.with_suffix(".png"), args.tv_target)
        return
    peer_python = None if args.skip_peer else ensure_peer(args.peer_venv, args.peer_spec)
    versions = None if peer_python is None else peer_versions(peer_python)
    started = time.time()
    result: dict[str, Any] = {
        "benchmark": "hypergrid trajectory balance, gflow vs torchgfn",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(versions, args.threads),
        "config": {
            "r0": args.r0,
            "batch": args.batch,
            "hidden": args.hidden,
            "layers": args.layers,
            "lr": args.lr,
            "lr_log_z": args.lr_logz,
            "epsilon": args.epsilon,
            "backward_policy": "uniform",
            "activation": "leaky_relu",
            "tv_target": args.tv_target,
            "quick": args.quick,
        },
        "settings": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for setting in (s for s in SETTINGS if s.name in args.settings):
        result["settings"].append(run_setting(args, setting, peer_python))
        result["wall_seconds"] = time.time() - started
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out.with_suffix(".png"), args.tv_target)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    for entry in result["settings"]:
        if "ratios" in entry:
            print(f"{entry['name']}: ratios {json.dumps(entry['ratios'])}")


if __name__ == "__main__":
    main()

"""Data-parallel (DDP) scaling on CPU: hypergrid 2-D H=8 trained by one process without
torch.distributed, and by torchrun with 1 and with 2 processes (gloo), at the same global batch.

Two measurements:

1. Learning per sample: the exact TV of each run against trajectories sampled (step x global
   batch), every `--eval-every` steps; the three modes run one after the other for each seed, the
   order rotating with the seed. The 2-process run should follow the same curve within the seed
   spread (it computes the whole batch's loss and gradient exactly; only the random streams
   differ). Training seconds per step (evaluation excluded) are recorded too; on this 2-core
   machine shared with other jobs they say more about the load than about DDP.
2. The collectives a DDP step adds, timed alone on 2 gloo ranks (median of `--repeats`): the
   gather of the scored batch, the gradient all-reduce, and a broadcast of every weight (what
   the start of a run, or a learner refreshing workers over torch.distributed, pays); for the
   hypergrid MLP trained here and the default 2x256 MLP.

No GPU here: NCCL is not measured (the results say so). Results: benchmarks/results/
ddp_scaling.json and ddp_scaling.png (machine, code state, load averages).

    .venv/bin/python benchmarks/ddp_scaling.py            # 3 seeds, 400 steps (about 10 min)
    .venv/bin/python benchmarks/ddp_scaling.py --quick    # 1 seed, 60 steps
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "ddp_scaling.json"
QUICK_OUT = ROOT / "runs" / "bench" / "ddp_scaling_quick.json"
MODES = ("single", "ddp1", "ddp2")
"""One process without torch.distributed; torchrun with 1 and with 2 processes."""
TRAIN = {
    "--ndim": "2",
    "--height": "8",
    "--r0": "0.1",
    "--batch-size": "32",
    "--lr": "3e-3",
    "--epsilon": "0.05",
    "--hidden": "64",
    "--log-every": "10",
    "--checkpoint-every": "0",
    "--threads": "1",
}
"""The run: the hypergrid of the DDP test, whose one-process form reaches TV < 0.05 in 300 steps."""
MODELS = {"hypergrid_mlp_2x64": (64, 2), "mlp_2x256": (256, 2)}


def command(mode: str, out: Path, seed: int, steps: int, eval_every: int) -> list[str]:
    """The command line of one training run."""
    options = [x for pair in TRAIN.items() for x in pair]
    options += ["--steps", str(steps), "--eval-every", str(eval_every), "--seed", str(seed)]
    options += ["--out", str(out), "--quiet", "--device", "cpu"]
    gflow = ["-m", "gflow", "train", "hypergrid", *options]
    if mode == "single":
        return [sys.executable, *gflow]
    nproc = mode.removeprefix("ddp")
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", nproc]
    return [sys.executable, *launcher, *gflow]


def train_run(mode: str, seed: int, steps: int, eval_every: int) -> dict[str, Any]:
    """Run one training; its TV curve, training seconds per step and the load around it."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        before = list(os.getloadavg())
        start = time.perf_counter()
        env = os.environ | {"OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            command(mode, out, seed, steps, eval_every), capture_output=True, text=True, env=env
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{mode} seed {seed} failed:\n{done.stderr[-2000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
    batch = int(TRAIN["--batch-size"])
    return {
        "mode": mode,
        "seed": seed,
        "trajectories": [e["step"] * batch for e in metrics["eval_history"]],
        "exact_tv": [e["exact_tv"] for e in metrics["eval_history"]],
        "final_tv": metrics["exact_tv"],
        "train_seconds_per_step": metrics["train_seconds"] / metrics["steps"],
        "wall_seconds": wall,
        "loadavg_before": before,
        "loadavg_after": list(os.getloadavg()),
    }


def _median_seconds(fn: Any, repeats: int) -> float:
    """Median wall seconds of `fn()` over `repeats` calls (after 5 warm-up calls), ranks in
    step (a barrier before each call)."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _step_seconds(env: Any, model: Any, rank: int, repeats: int) -> dict[str, float]:
    """Median seconds of a whole training step (batch 32, TB): a DDP step on 2 ranks (16
    trajectories each) and, interleaved with it, one process alone on all 32 (rank 0 while the
    other rank waits)."""
    from gflow.checkpoint import seed_everything
    from gflow.distributed import DistributedTrainer
    from gflow.objectives import get_objective
    from gflow.training import TrainConfig, Trainer, build_policy

    config = TrainConfig(batch_size=32, epsilon=0.05, top_k=0)
    seed_everything(0)
    ddp = DistributedTrainer(env, build_policy(env, model), get_objective("tb"), config)
    single = Trainer(env, build_policy(env, model), get_objective("tb"), config)
    ddp_times, single_times = [], []
    for _ in range(5 + repeats):
        dist.barrier()
        start = time.perf_counter()
        ddp.train_step()
        ddp_times.append(time.perf_counter() - start)
        dist.barrier()
        if rank == 0:
            start = time.perf_counter()
            single.train_step()
            single_times.append(time.perf_counter() - start)
        dist.barrier()
    return {
        "ddp2_step_s": statistics.median(ddp_times[5:]),
        "single_process_step_s": statistics.median(single_times[5:]) if rank == 0 else 0.0,
    }


def _collectives_worker(rank: int, init_file: str, repeats: int, out: str) -> None:
    """One of 2 gloo ranks: time the DDP step's collectives and a weight broadcast."""
    from gflow.envs.hypergrid import HyperGrid

    from gflow.checkpoint import seed_everything
    from gflow.distributed import all_reduce_gradients, gather_trajectories
    from gflow.objectives import get_objective
    from gflow.sampling import sample_forward
    from gflow.scoring import score
    from gflow.training import ModelConfig, build_policy

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    env = HyperGrid(2, 8, r0=0.1)
    results: dict[str, Any] = {}
    for name, (hidden, layers) in MODELS.items():
        seed_everything(rank)
        policy = build_policy(env, ModelConfig(hidden=hidden, layers=layers))
        params = list(policy.parameters())
        for p in params:
            p.grad = torch.randn_like(p)
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        batch = sample_forward(env, policy, 16, epsilon=0.05)
        traj = score(env, policy, batch, get_objective("tb").needs)
        results[name] = {
            "parameters": sum(p.numel() for p in params),
            "gradient_all_reduce_s": _median_seconds(
                partial(all_reduce_gradients, params), repeats
            ),
            "weight_broadcast_s": _median_seconds(partial(dist.broadcast, flat, 0), repeats),
            "gather_16_scored_trajectories_per_rank_s": _median_seconds(
                partial(gather_trajectories, traj), repeats
            ),
        } | _step_seconds(env, ModelConfig(hidden=hidden, layers=layers), rank, repeats)
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def collective_costs(repeats: int) -> dict[str, Any]:
    """The collectives' medians, measured on 2 gloo ranks."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "costs.json"
        before = list(os.getloadavg())
        mp.spawn(
            _collectives_worker, args=(str(Path(folder) / "init"), repeats, str(out)), nprocs=2
        )
        costs = json.loads(out.read_text())
    return {
        "backend": "gloo",
        "ranks": 2,
        "repeats": repeats,
        "loadavg_before": before,
        "loadavg_after": list(os.getloadavg()),
        "models": costs,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per mode: mean and spread of the TV at each evaluation and of the seconds per step."""
    summary: dict[str, Any] = {}
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        curves = list(zip(*(r["exact_tv"] for r in mine), strict=True))
        per_step = [r["train_seconds_per_step"] for r in mine]
        summary[mode] = {
            "trajectories": mine[0]["trajectories"],
            "exact_tv_mean": [statistics.fmean(c) for c in curves],
            "exact_tv_min": [min(c) for c in curves],
            "exact_tv_max": [max(c) for c in curves],
            "train_seconds_per_step_median": statistics.median(per_step),
        }
    base = summary["ddp1"]["train_seconds_per_step_median"]
    for mode in MODES:
        summary[mode]["seconds_per_step_vs_ddp1"] = (
            summary[mode]["train_seconds_per_step_median"] / base
        )
    return summary


def plot(summary: dict[str, Any], path: Path) -> None:
    """Exact TV against trajectories sampled: mean over seeds, band from min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, s in summary.items():
        ax.plot(s["trajectories"], s["exact_tv_mean"], label=mode)
        ax.fill_between(s["trajectories"], s["exact_tv_min"], s["exact_tv_max"], alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("trajectories sampled (all ranks)")
    ax.set_ylabel("exact TV")
    ax.set_title("hypergrid 2-D H=8, batch 32: 1 process vs DDP 1 and 2")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    """Run the benchmark and write the results."""
    from gflow.bench.machine import code_state, machine_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 60 steps (smoke run)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=200, help="timings per collective")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.eval_every, args.repeats = 1, 60, 20, 30
    out = args.out or (QUICK_OUT if args.quick else OUT)
    torch.set_num_threads(1)
    record: dict[str, Any] = {
        "benchmark": "ddp_scaling",
        "machine": machine_info(),
        "code": code_state(),
        "gpu": "no GPU in this session: NCCL and CUDA figures not measured",
        "train_options": TRAIN | {"steps": args.steps, "eval_every": args.eval_every},
    }
    record["collectives"] = collective_costs(args.repeats)
    print(json.dumps(record["collectives"]["models"], indent=1), flush=True)
    runs = []
    for seed in range(args.seeds):
        order = MODES[seed % 3 :] + MODES[: seed % 3]
        for mode in order:
            run = train_run(mode, seed, args.steps, args.eval_every)
            runs.append(run)
            print(
                f"seed {seed} {mode}: final TV {run['final_tv']:.4f}, "
                f"{1000 * run['train_seconds_per_step']:.1f} ms/step, "
                f"load {run['loadavg_before'][0]:.1f}",
                flush=True,
            )
    record["runs"] = runs
    record["summary"] = summarize(runs)
    record["machine_after"] = machine_info()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    plot(record["summary"], out.with_suffix(".png"))
    print(f"-> {out}")


if __name__ == "__main__":
    main()

"""Training throughput against batch size: gflow and torchgfn, trajectories per second.

For each environment (hypergrid 4-D H=8 with R0 = 1e-3; bit sequences n = 120, k = 8, where
torchgfn has the environment as `gfn.gym.BitSequence`) and each batch size (16, 256 and 4,096 by
default) both libraries run TB training iterations (on-policy sampling, the loss, backward and a
fused Adam step; a 2 x 256 MLP with leaky ReLU on one-hot inputs, uniform P_B, lr 1e-3, log Z
lr 1e-1) one after the other, never at once, alternating which goes first, each with one torch
thread. A run trains a few untimed iterations first, then times iterations until `--seconds` of
wall time have passed (at least `--min-iterations`). Reported per run: iterations, wall and CPU
seconds, trajectories per second by wall time and by CPU time (the process's CPU time, which a
shared machine's other jobs move much less), and the load average before and after. With
`--device cuda` both sides run on the GPU (gflow's trainer then samples with the fixed-horizon
sampler, no host synchronisation inside the rollout loop). Per
setting: medians over repeats and the gflow/torchgfn ratios. Results go to
benchmarks/results/throughput.json. torchgfn runs in the virtual environment that
`hypergrid_tb.py` creates.

    .venv/bin/python benchmarks/throughput.py                       # about ten minutes
    .venv/bin/python benchmarks/throughput.py --envs hypergrid --batches 16 --seconds 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hypergrid_tb import DEFAULT_VENV, ROOT, ensure_peer, launch, machine, peer_versions  # noqa: E402
from timing import time_iterations  # noqa: E402

PEER_SCRIPT = ROOT / "benchmarks" / "peers" / "torchgfn_throughput.py"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "throughput.json"
ENVS = {
    "hypergrid": {"ndim": 4, "height": 8, "r0": 1e-3},
    "bitseq": {"length": 120, "word_size": 8},
}
LIBRARIES = ("gflow", "torchgfn")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the published settings."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", nargs="+", choices=sorted(ENVS), default=list(ENVS))
    p.add_argument("--batches", nargs="+", type=int, default=[16, 256, 4096])
    p.add_argument("--seconds", type=float, default=15.0, help="timed wall seconds per run")
    p.add_argument("--min-iterations", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device", default="cpu",
        help="torch device of both sides; on cuda gflow samples with the fixed-horizon sampler",
    )
    p.add_argument("--peer-venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--peer-spec", default="torchgfn>=2.4,<2.5")
    p.add_argument("--skip-peer", action="store_true", help="measure gflow only")
    p.add_argument(
        "--floor-iterations", type=int, default=100,
        help="hypergrid on the CPU: iterations after the timed ones whose floor (matrix products "
        "and Adam step alone) is timed; 0: skip",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--env", choices=sorted(ENVS), help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("batches", "repeats", "min_iterations", "hidden", "layers"):
        values = getattr(args, name)
        if min(values if isinstance(values, list) else [values]) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.seconds <= 0 or args.warmup < 0 or args.floor_iterations < 0:
        p.error("--seconds must be > 0, --warmup and --floor-iterations >= 0")
    return args


def run_gflow(args: argparse.Namespace) -> dict[str, Any]:
    """Worker: gflow's training step (`Trainer.train_step`) on one environment and batch."""
    import torch

    from gflow.checkpoint import seed_everything
    from gflow.objectives import get_objective
    from gflow.policies.mlp import MLPPolicy
    from gflow.training import TrainConfig, Trainer

    torch.set_num_threads(1)
    if args.env == "hypergrid":
        from gflow.envs.hypergrid import HyperGrid

        env = HyperGrid(**ENVS["hypergrid"], device=args.device)
    else:
        from gflow.envs.bitseq import BitSequence

        env = BitSequence(**ENVS["bitseq"], device=args.device)
    seed_everything(args.seed)
    policy = MLPPolicy(
        env.feature_dim, env.n_actions, env.n_backward, hidden=args.hidden, layers=args.layers
    ).to(args.device)
    config = TrainConfig(
        batch_size=args.batch,
        seed=args.seed,
        eval_every=0,
        checkpoint_every=0,
        top_k=0,
        device=args.device,
    )
    trainer = Trainer(env, policy, get_objective("tb"), config)
    run = time_iterations(trainer.train_step, args)
    if args.floor_iterations and args.env == "hypergrid" and args.device == "cpu":
        run["floor"] = floor_after(trainer, args.floor_iterations)
    return run


def floor_after(trainer: Any, iterations: int) -> dict[str, Any]:
    """Train `iterations` more steps, recording the rows the policy evaluated at every sampling
    step (the distinct states where the trainer deduplicates), then time the floor of those
    iterations (`profile_hypergrid.floor`: their matrix products and Adam steps alone, CPU
    time): what this iteration would cost with no overhead around them."""
    from profile_hypergrid import floor

    rows: list[list[int]] = []
    sample = trainer.batch

    def batch() -> Any:
        rollout = sample()
        sizes = rollout.state_mask.sum(0).tolist()
        recorded = rollout.recorded
        if recorded is not None and recorded.index is not None:
            sizes = [len(step.unique()) for step in recorded.index.split(sizes)]
        rows.append(sizes)
        return rollout

    trainer.batch = batch
    for _ in range(iterations):
        trainer.train_step()
    trainer.batch = sample
    return floor(trainer, rows, time.process_time)


def worker_flags(args: argparse.Namespace, env: str, batch: int, seed: int) -> list[str]:
    """Settings passed identically to both workers."""
    flags = {
        "--env": env,
        "--batch": batch,
        "--seconds": args.seconds,
        "--min-iterations": args.min_iterations,
        "--warmup": args.warmup,
        "--hidden": args.hidden,
        "--layers": args.layers,
        "--seed": seed,
        "--device": args.device,
    }
    return [str(x) for pair in flags.items() for x in pair]


def rates(run: dict[str, Any], batch: int) -> dict[str, float]:
    """Trajectories per second by wall time and by CPU time."""
    n = run["iterations"] * batch
    return {
        "trajectories_per_second": n / run["wall_seconds"],
        "trajectories_per_second_cpu": n / run["cpu_seconds"],
    }


def summarize(runs: list[dict[str, Any]], libraries: tuple[str, ...]) -> dict[str, Any]:
    """Medians per library and the gflow/torchgfn ratios of one setting."""
    out: dict[str, Any] = {}
    for lib in libraries:
        mine = [r for r in runs if r["library"] == lib]
        out[lib] = {
            key: statistics.median(r[key] for r in mine)
            for key in ("trajectories_per_second", "trajectories_per_second_cpu")
        }
    if len(libraries) == 2:
        out["ratios"] = {
            key: out["gflow"][key] / out["torchgfn"][key]
            for key in ("trajectories_per_second", "trajectories_per_second_cpu")
        }
    floors = [r["floor"]["total_ms"] for r in runs if "floor" in r]
    if floors:
        out["gflow"]["floor_ms_per_iteration"] = statistics.median(floors)
        out["gflow"]["ms_per_iteration_cpu"] = 1e3 * statistics.median(
            r["cpu_seconds"] / r["iterations"] for r in runs if r["library"] == "gflow"
        )
    if floors and "ratios" in out:
        # the CPU-time ratio gflow would reach if an iteration cost its floor and nothing more
        peer_ms = 1e3 * statistics.median(
            r["cpu_seconds"] / r["iterations"] for r in runs if r["library"] == "torchgfn"
        )
        out["ratios"]["ceiling_at_floor_cpu"] = peer_ms / out["gflow"]["floor_ms_per_iteration"]
    return out


def main(argv: list[str] | None = None) -> None:
    """Run every environment and batch size, both libraries interleaved; write the report."""
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_gflow(args)))
        return
    peer_python = None if args.skip_peer else ensure_peer(args.peer_venv, args.peer_spec)
    peer = None if peer_python is None else peer_versions(peer_python)
    libraries = ("gflow",) if peer_python is None else LIBRARIES
    started = time.perf_counter()
    settings = []
    for env in args.envs:
        for batch in args.batches:
            runs = []
            for repeat in range(args.repeats):
                flags = worker_flags(args, env, batch, args.seed + repeat)
                order = libraries if (len(settings) + repeat) % 2 == 0 else libraries[::-1]
                for lib in order:
                    if lib == "gflow":
                        command = [sys.executable, __file__, "--worker", *flags,
                                   "--floor-iterations", str(args.floor_iterations)]  # fmt: skip
                    else:
                        command = [str(peer_python), str(PEER_SCRIPT), *flags]
                    before = list(os.getloadavg())
                    run = {"library": lib, "seed": args.seed + repeat, **launch(command)}
                    run |= rates(run, batch) | {
                        "loadavg_before": before,
                        "loadavg_after": list(os.getloadavg()),
                    }
                    runs.append(run)
                    floor_ms = run.get("floor", {}).get("total_ms")
                    floor_note = f", floor {floor_ms:.2f} ms/iteration" if floor_ms else ""
                    print(
                        f"{env} batch {batch} {lib:8s}: "
                        f"{run['trajectories_per_second']:.0f} traj/s "
                        f"({run['trajectories_per_second_cpu']:.0f} per CPU second), "
                        f"{run['iterations']} iterations, load {before[0]:.1f}{floor_note}",
                        flush=True,
                    )
            settings.append(
                {"env": env, **ENVS[env], "batch": batch, **summarize(runs, libraries),
                 "runs": runs}
            )
    report = {
        "benchmark": "throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(peer, 1),
        "gpu": None if args.device == "cpu" else args.device,
        "gpu_note": "no GPU was measured: the machine this report comes from has none"
        if args.device == "cpu" else None,
        "config": {k: v for k, v in vars(args).items() if k not in ("worker", "env", "batch")},
        "settings": settings,
        "wall_seconds": time.perf_counter() - started,
    }
    report["config"]["out"] = str(args.out)
    report["config"]["peer_venv"] = str(args.peer_venv)
    from gflow.checkpoint import atomic_write

    data = json.dumps(report, indent=1).encode()
    atomic_write(args.out, lambda f: f.write(data))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

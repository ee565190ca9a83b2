"""Where a TB training iteration on hypergrid spends its time, phase by phase.

Runs gflow's own training step (`Trainer.train_step`, what `gflow train` runs) on hypergrid
(4-D H=8 by default: R0 = 1e-3, batch 16, a 2 x 256 MLP, uniform P_B, one torch thread, the
settings of `hypergrid_tb.py`) and times each phase of every iteration by wrapping the functions
the step calls, so that the profile follows whatever path the trainer takes:

- sampling: the whole `sample_forward` call, split into the policy's forward logits (with the
  featurization, and the recording of activations where scoring reuses them), masks,
  action draws, environment steps (step and select) and the rest (loop bookkeeping, assembly);
- scoring: `score` (the second forward pass over all visited states, when the trainer makes one);
- loss: the objective's loss function;
- backward: `loss.backward()`;
- optimizer: `zero_grad` and `step`;
- other: whatever the step does besides (the finiteness check, the trainer's own code, and the
  tracking of the best objects sampled when `--top-k` turns it on).

After the profile it measures the **floor** of the same iterations: the matrix products alone
(the sampling pass's three linear layers at every step, on as many rows as were sampled at that
step in the timed iterations; the heads and the gradient products of the backward pass over all
visited states; no activation, mask, draw or bookkeeping) and the fused Adam step, each timed on
the same clock with the same torch thread count, so that the report says how far an iteration is
from what eager PyTorch cannot avoid (`--floor-iterations`, 0 to skip). The rows are all the
visited states: from batch 64, where the trainer evaluates distinct states once, the iteration
multiplies fewer rows than its floor does, which is then that of the plain path.

The first `--warmup` iterations train untimed (trajectories lengthen as training goes, so the
profile is of a run past its first iterations); the next `--iterations` are timed, and the report
gives milliseconds per iteration and the share of each phase. Output: a markdown table on stdout
and in `<out>.md`, and the JSON report at `--out` (default
benchmarks/results/profile_hypergrid.json). Timers wrap the calls, they do not sample: on a CPU
every torch operation has finished when its call returns, so the time of a call is its cost. By
default the clock is this process's CPU time (`--clock cpu`; with one torch thread, the work
done, which other jobs on a shared machine move much less than the wall time); `--clock wall`
times elapsed time.

    .venv/bin/python benchmarks/profile_hypergrid.py
    .venv/bin/python benchmarks/profile_hypergrid.py --label after --out runs/profile.json
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import phase_rows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "profile_hypergrid.json"
PHASES = ("sampling", "scoring", "loss", "backward", "optimizer")
SAMPLING_PARTS = ("policy forward", "masks", "draws", "env steps")


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
"""cpu: this process's CPU time (one torch thread: the work done, little moved by other jobs on
a shared machine); wall: elapsed time."""


class PhaseClock:
    """Accumulates time per (phase, part); `part` calls inside a phase are charged to it."""

    def __init__(self, now: Callable[[], float] = time.process_time) -> None:
        self.now = now
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.phase: str | None = None

    @contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        """Charge the block to `phase` (nested phases are charged to the outer one only)."""
        if self.phase is not None:
            yield
            return
        self.phase = phase
        start = self.now()
        try:
            yield
        finally:
            self.seconds[(phase, "")] += self.now() - start
            self.phase = None

    def wrap_phase(self, phase: str, fn: Callable) -> Callable:
        """`fn`, its calls charged to `phase`."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.timing(phase):
                return fn(*args, **kwargs)

        return timed

    def wrap_part(self, part: str, fn: Callable) -> Callable:
        """`fn`, its calls charged to `part` of whichever phase is running."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = self.now()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.phase is not None:
                    self.seconds[(self.phase, part)] += self.now() - start

        return timed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the benchmark's 4-D H=8 setting."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ndim", type=int, default=4)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--r0", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--warmup", type=int, default=300, help="untimed iterations first")
    p.add_argument("--iterations", type=int, default=1000, help="timed iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--top-k", type=int, default=0,
        help="track the best k objects as `gflow train` does by default (100); 0: off",
    )
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="what is timed")
    p.add_argument(
        "--floor-iterations", type=int, default=300,
        help="timed iterations of the floor (matrix products and Adam step alone); 0: skip",
    )
    p.add_argument("--label", default="current", help="name of this profile in the report")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    for name in ("batch", "hidden", "layers", "iterations", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0 or args.floor_iterations < 0:
        p.error("--warmup and --floor-iterations must be >= 0")
    return args


def instrument(trainer: Any, clock: PhaseClock) -> None:
    """Wrap what a training step calls so that `clock` sees each phase and sampling part."""
    import torch

    import gflow.sampling
    import gflow.training
    from gflow.tabular import TableWalk

    env, policy = trainer.env, trainer.policy
    gflow.training.sample_forward = clock.wrap_phase("sampling", gflow.sampling.sample_forward)
    gflow.training.score = clock.wrap_phase("scoring", gflow.training.score)
    gflow.sampling.sample_actions = clock.wrap_part("draws", gflow.sampling.sample_actions)
    policy.forward_logits = clock.wrap_part("policy forward", policy.forward_logits)
    make_recorder = getattr(policy, "recorder", None)
    if make_recorder is not None:

        def recorder() -> Any:
            rec = make_recorder()
            if rec is not None:
                rec.forward_logits = clock.wrap_part("policy forward", rec.forward_logits)
            return rec

        policy.recorder = recorder
    parts = {"forward_mask": "masks", "backward_mask": "masks", "featurize": "policy forward"}
    parts |= {"step": "env steps", "select": "env steps"}
    for name, part in parts.items():
        setattr(env, name, clock.wrap_part(part, getattr(env, name)))
        if name != "backward_mask":  # the same parts of a walk on the state table
            setattr(TableWalk, name, clock.wrap_part(part, getattr(TableWalk, name)))
    objective = trainer.objective
    trainer.objective = replace(objective, loss=clock.wrap_phase("loss", objective.loss))
    optimizer = trainer.optimizer
    optimizer.step = clock.wrap_phase("optimizer", optimizer.step)
    optimizer.zero_grad = clock.wrap_phase("optimizer", optimizer.zero_grad)
    torch.Tensor.backward = clock.wrap_phase("backward", torch.Tensor.backward)


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """Train `warmup` iterations, then time `iterations` more phase by phase."""
    import torch
    from gflow.envs.hypergrid import HyperGrid

    from gflow.checkpoint import seed_everything
    from gflow.objectives import get_objective
    from gflow.policies.mlp import MLPPolicy
    from gflow.training import TrainConfig, Trainer

    torch.set_num_threads(args.threads)
    env = HyperGrid(args.ndim, args.height, r0=args.r0)
    config = TrainConfig(
        steps=args.warmup + args.iterations,
        batch_size=args.batch,
        seed=args.seed,
        eval_every=0,
        checkpoint_every=0,
        top_k=args.top_k,
    )
    seed_everything(args.seed)
    policy = MLPPolicy(
        env.feature_dim, env.n_actions, env.n_backward, hidden=args.hidden, layers=args.layers
    )
    trainer = Trainer(env, policy, get_objective("tb"), config)
    for _ in range(args.warmup):
        trainer.train_step()
    clock = PhaseClock(CLOCKS[args.clock])
    instrument(trainer, clock)
    lengths = []
    rows: list[list[int]] = []
    sample = trainer.batch

    def batch() -> Any:
        rollout = sample()
        lengths.append(float(rollout.lengths.float().mean()))
        rows.append(rollout.state_mask.sum(0).tolist())
        return rollout

    trainer.batch = batch
    start = clock.now()
    for _ in range(args.iterations):
        trainer.train_step()
    total = clock.now() - start
    report = summarize(clock, total, args, sum(lengths) / len(lengths))
    if args.floor_iterations:
        report["floor"] = floor(trainer, rows[: args.floor_iterations], clock.now)
    return report


def floor(trainer: Any, rows: list[list[int]], now: Callable[[], float]) -> dict[str, Any]:
    """Milliseconds per iteration of the matrix products alone of the iterations whose rows per
    sampling step are `rows` (the policy's linear layers at each step, without gradients; the
    heads and the gradient products over all their states), and of the optimizer's step."""
    import torch
    import torch.nn.functional as F

    from gflow.training import build_optimizer

    policy = trainer.policy
    linears = [*policy._trunk_linears, policy.forward_head]
    heads = [policy.forward_head, policy.flow_head]
    if policy.backward_head is not None:
        heads.append(policy.backward_head)
    width = max(sum(r) for r in rows)
    x = torch.randn(width, linears[0].in_features)
    acts = [x] + [torch.randn(width, lin.out_features) for lin in linears[:-1]]
    seconds = {"sampling forwards": 0.0, "backward": 0.0, "optimizer": 0.0}
    with torch.no_grad():
        for sizes in rows:
            start = now()
            for r in sizes:
                h = x[:r]
                for lin in linears:
                    h = F.linear(h, lin.weight, lin.bias)
            seconds["sampling forwards"] += now() - start
            n = sum(sizes)
            start = now()
            h = acts[-1][:n]
            grad_h = None
            for head in heads:
                g = F.linear(h, head.weight, head.bias)  # the heads' forward on all states
                g.T @ h  # the head's weight gradient
                grad_h = g @ head.weight if grad_h is None else grad_h.addmm_(g, head.weight)
            assert grad_h is not None
            for i in reversed(range(len(policy._trunk_linears))):
                weight = policy._trunk_linears[i].weight
                grad_h.T @ acts[i][:n]  # weight gradient
                if i:
                    grad_h = grad_h @ weight  # gradient of the layer's input
            seconds["backward"] += now() - start
        for p in policy.parameters():
            p.grad = torch.zeros_like(p)
        optimizer = build_optimizer(policy, trainer.config)  # what the trainer builds
        start = now()
        for _ in rows:
            optimizer.step()
        seconds["optimizer"] = now() - start
    policy.zero_grad(set_to_none=True)
    parts = {k: 1e3 * v / len(rows) for k, v in seconds.items()}
    return {"iterations": len(rows), "ms": parts, "total_ms": sum(parts.values())}


def summarize(
    clock: PhaseClock, total: float, args: argparse.Namespace, mean_length: float
) -> dict[str, Any]:
    """Milliseconds per iteration and share of the whole for every phase and sampling part."""
    n = args.iterations
    per_iter = 1e3 * total / n

    def entry(seconds: float) -> dict[str, float]:
        return {"ms": 1e3 * seconds / n, "share": seconds / total}

    phases = {p: entry(clock.seconds.get((p, ""), 0.0)) for p in PHASES}
    phases["other"] = entry(total - sum(clock.seconds.get((p, ""), 0.0) for p in PHASES))
    sampling_total = clock.seconds.get(("sampling", ""), 0.0)
    parts = {p: entry(clock.seconds.get(("sampling", p), 0.0)) for p in SAMPLING_PARTS}
    parts["rest"] = entry(sampling_total - sum(clock.seconds.get(("sampling", p), 0.0)
                                               for p in SAMPLING_PARTS))
    import torch

    return {
        "label": args.label,
        "clock": args.clock,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg": list(os.getloadavg()),
            "torch": torch.__version__,
        },
        "setting": {
            "ndim": args.ndim,
            "height": args.height,
            "r0": args.r0,
            "batch": args.batch,
            "hidden": args.hidden,
            "layers": args.layers,
            "warmup": args.warmup,
            "iterations": n,
            "seed": args.seed,
            "threads": args.threads,
            "top_k": args.top_k,
        },
        "mean_trajectory_length": mean_length,
        "ms_per_iteration": per_iter,
        "iterations_per_second": n / total,
        "phases": phases,
        "sampling_parts": parts,
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table: phases, then the parts of sampling indented."""
    rows = [
        f"Profile `{report['label']}` ({report.get('clock', 'wall')} time): "
        f"{report['ms_per_iteration']:.2f} ms per iteration "
        f"({report['iterations_per_second']:.0f} it/s), mean trajectory length "
        f"{report['mean_trajectory_length']:.1f}, load average "
        f"{report['machine']['loadavg'][0]:.2f}",
        "",
        *phase_rows(report, "iteration", 3),
    ]
    if "floor" in report:
        fl = report["floor"]
        parts = ", ".join(f"{k} {v:.3f}" for k, v in fl["ms"].items())
        ratio = report["ms_per_iteration"] / fl["total_ms"]
        rows += [
            "",
            f"Floor (matrix products and the Adam step alone, same rows): {fl['total_ms']:.2f} ms "
            f"per iteration ({parts} ms); the iteration is {ratio:.1f}x it.",
        ]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Profile, print the table, write the JSON report and the table beside it."""
    args = parse_args(argv)
    report = profile(args)
    table = markdown(report)
    print(table)
    from gflow.checkpoint import atomic_write

    data = json.dumps(report, indent=1).encode()
    atomic_write(args.out, lambda f: f.write(data))
    atomic_write(args.out.with_suffix(".md"), lambda f: f.write(table.encode()))


if __name__ == "__main__":
    main()

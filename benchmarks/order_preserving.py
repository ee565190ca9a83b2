"""Order-preserving GFlowNets (Chen & Mauch 2024) on hypergrids: a total order (single
objective) and the Pareto order (Branin-Currin).

Single objective: OP-TB, which sees only the order of rewards, against TB trained on R^beta for
beta = 1, 4, 16, on a hypergrid (default 2-D, H = 32, R0 = 1e-3: 36 modes in four 3 x 3 blocks
near the corners). Modes are the cells of maximal reward (as in the paper); the curve is the
number of modes among the training samples so far.
At the end, the exact probability the sampler puts on the modes (dynamic programming over the
state graph) is recorded next to the mass R^beta / Z puts there.

Multi-objective: a 32 x 32 grid scored by Branin and Currin (both in [0, 1], larger is better).
OP-TB learns from the Pareto order of each batch; baselines are TB on the equal-weight sum,
preference-conditioned TB (MOGFN-PC, Dirichlet(1) preferences, inverse temperature beta) and
uniformly random actions. Every `record_every` steps, `eval_samples` on-policy draws (random
preferences for PC) give the hypervolume of their objective vectors (reference point 0) and the
share of them on the grid's true Pareto front; the front's own hypervolume is the ceiling.

Same network and budget everywhere: 2 x 256 MLP, uniform P_B, batch 16, Adam lr 1e-3 (log Z
1e-1), no exploration.

    .venv/bin/python benchmarks/order_preserving.py            # default: a few minutes
    .venv/bin/python benchmarks/order_preserving.py --paper    # longer runs, 3 seeds

Results: benchmarks/results/order_preserving.json and .png (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gflow.envs.hypergrid import HyperGrid
from gflow.envs.mo_hypergrid import MOHyperGrid

from gflow.bench.machine import machine_info
from gflow.bench.plots import save_figure
from gflow.checkpoint import save_json, seed_everything
from gflow.conditioning import ConditionalEnv, Conditioning, TemperatureDistribution
from gflow.env import Env
from gflow.exact import target_distribution, terminal_distribution
from gflow.metrics import hypervolume, is_non_dominated
from gflow.objectives import get_objective
from gflow.policies.mlp import MLPPolicy
from gflow.sampling import sample_forward
from gflow.training import Callback, ModelConfig, TrainConfig, Trainer, build_policy

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "order_preserving.json"
BETAS = (1.0, 4.0, 16.0)


class PoweredHyperGrid(HyperGrid):
    """The hypergrid with reward R(x)^beta (energy beta * E(x))."""

    def __init__(self, ndim: int, height: int, r0: float, beta: float):
        super().__init__(ndim, height, r0)
        self.beta = beta

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        return self.beta * super().log_reward(states)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the short run committed with the results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--paper", action="store_true", help="longer runs (5x the steps), seeds 0-2")
    p.add_argument("--ndim", type=int, default=2, help="single-objective grid dimensions")
    p.add_argument("--height", type=int, default=32, help="single-objective grid side")
    p.add_argument("--r0", type=float, default=1e-3, help="single-objective base reward")
    p.add_argument("--single-steps", type=int, help="steps per single-objective run (3000)")
    p.add_argument("--mo-height", type=int, default=32, help="Branin-Currin grid side")
    p.add_argument("--mo-steps", type=int, help="steps per multi-objective run (1000)")
    p.add_argument("--pc-beta", type=float, default=16.0, help="inverse temperature of PC-TB")
    p.add_argument("--eval-samples", type=int, default=256, help="draws per hypervolume point")
    p.add_argument("--record-every", type=int, default=50, help="steps between curve points")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0; paper 0 1 2)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON path (PNG beside it)")
    args = p.parse_args(argv)
    scale = 5 if args.paper else 1
    args.single_steps = args.single_steps or 3000 * scale
    args.mo_steps = args.mo_steps or 1000 * scale
    args.seeds = args.seeds or ([0, 1, 2] if args.paper else [0])
    for name in ("single_steps", "mo_steps", "eval_samples", "record_every", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


MODEL = ModelConfig(hidden=256, layers=2)
"""The shared network: a 2 x 256 MLP, uniform P_B."""


def config(steps: int, seed: int, top_k: int = 0) -> TrainConfig:
    """The shared training setup."""
    return TrainConfig(
        steps=steps, batch_size=16, lr=1e-3, lr_log_z=1e-1, seed=seed, top_k=top_k, eval_every=0
    )


class Every(Callback):
    """Calls `record(trainer)` after each training step in `steps`."""

    def __init__(self, steps: list[int], record: Callable[[Trainer], None]):
        self.steps, self.record = set(steps), record

    def after_step(self, trainer: Trainer, loss: torch.Tensor, batch: Any) -> None:
        if trainer.step in self.steps:
            self.record(trainer)


def recorded(steps: int, every: int) -> list[int]:
    """Steps that get a curve point: every `every` and the last."""
    return sorted({*range(every, steps + 1, every), steps})


def single_run(objective: str, beta: float, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train on the hypergrid (reward R^beta; OP-TB sees only the order, so beta = 1 for it):
    modes found against steps, and the exact mass on the modes at the end."""
    env = PoweredHyperGrid(args.ndim, args.height, args.r0, beta)
    cfg = config(args.single_steps, seed, top_k=1)
    seed_everything(seed)
    policy = build_policy(env, MODEL)
    trainer = Trainer(env, policy, get_objective(objective), cfg)
    states = trainer.graph.states
    log_r = env.log_reward(states)
    is_mode = log_r == log_r.max()
    modes = set(np.array(env.keys(states), dtype=object)[is_mode.numpy()].tolist())
    started, curve = time.perf_counter(), []
    points = recorded(args.single_steps, args.record_every)
    found = Every(points, lambda t: curve.append([t.step, len(modes & t.top.seen)]))
    trainer.run(quiet=True, callbacks=[found])
    sampler = terminal_distribution(trainer.graph, env, policy)
    target, _ = target_distribution(trainer.graph, env)
    return {
        "objective": objective,
        "beta": beta,
        "seed": seed,
        "modes": len(modes),
        "curve": curve,
        "modes_found": curve[-1][1],
        "first_step_all_modes": next((s for s, n in curve if n == len(modes)), None),
        "mode_mass": float(sampler[is_mode].sum()),
        "target_mode_mass": float(target[is_mode].sum()),
        "distinct_cells_sampled": len(trainer.top.seen),
        "seconds": time.perf_counter() - started,
    }


def draw_objectives(env: Env, policy: MLPPolicy, n: int, epsilon: float = 0.0) -> np.ndarray:
    """(n, k) objective vectors of on-policy draws (random preferences when conditional)."""
    cond = env.conditioning.sample(n) if getattr(env, "conditional", False) else None
    rollout = sample_forward(env, policy, n, cond, epsilon=epsilon)
    return env.reward_components(rollout.terminal).numpy()


def front_metrics(values: np.ndarray, front: set[bytes]) -> tuple[float, float]:
    """Hypervolume (reference point 0) of the draws and their share on the true Pareto front."""
    on_front = np.mean([row.tobytes() in front for row in values])
    return hypervolume(values, 0.0), float(on_front)


def mo_run(method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One multi-objective method: hypervolume and Pareto share of on-policy draws over steps."""
    base = MOHyperGrid(args.mo_height, ["branin", "currin"])
    table = base.table.numpy()
    front = {row.tobytes() for row in table[is_non_dominated(table)]}
    if method == "pc-tb":
        temperature = TemperatureDistribution("constant", (args.pc_beta,))
        env: Env = ConditionalEnv(base, Conditioning(2, temperature=temperature))
    else:
        env = base
    objective = {"op-tb": "op-tb", "pc-tb": "tb", "sum-tb": "tb", "random": "tb"}[method]
    cfg = config(args.mo_steps, seed)
    seed_everything(seed)
    policy = build_policy(env, MODEL)
    curve, started = [], time.perf_counter()
    points = recorded(args.mo_steps, args.record_every)

    def measure(step: int, epsilon: float) -> None:
        values = draw_objectives(env, policy, args.eval_samples, epsilon)
        curve.append([step, *front_metrics(values, front)])

    if method == "random":  # no training: uniformly random draws at the same points
        for step in points:
            measure(step, 1.0)
    else:
        trainer = Trainer(env, policy, get_objective(objective), cfg)
        trainer.run(quiet=True, callbacks=[Every(points, lambda t: measure(t.step, 0.0))])
    return {
        "method": method,
        "seed": seed,
        "curve": [[s, hv] for s, hv, _ in curve],
        "pareto_share": [[s, share] for s, _, share in curve],
        "final_hypervolume": curve[-1][1],
        "final_pareto_share": curve[-1][2],
        "seconds": time.perf_counter() - started,
    }


def mean_curve(runs: list[dict[str, Any]], key: str = "curve") -> tuple[list[int], np.ndarray]:
    """Steps and the mean over runs (seeds) of a curve."""
    return [p[0] for p in runs[0][key]], np.array([[p[1] for p in r[key]] for r in runs]).mean(0)


def summarize(single: list[dict[str, Any]], multi: list[dict[str, Any]], true_hv: float) -> dict:
    """Means over seeds per method: modes found, first step with all modes and mass on modes;
    final hypervolume (and its ratio to the front's), area under the hypervolume curve and
    final Pareto share."""
    so = {}
    for label in dict.fromkeys(single_label(r) for r in single):
        mine = [r for r in single if single_label(r) == label]
        firsts = [r["first_step_all_modes"] for r in mine]
        so[label] = {
            "modes": mine[0]["modes"],
            "modes_found": float(np.mean([r["modes_found"] for r in mine])),
            "first_step_all_modes": firsts if len(firsts) > 1 else firsts[0],
            "area_modes_found": float(mean_curve(mine)[1].mean()),
            "mode_mass": float(np.mean([r["mode_mass"] for r in mine])),
            "target_mode_mass": mine[0]["target_mode_mass"],
        }
    mo = {}
    for method in dict.fromkeys(r["method"] for r in multi):
        mine = [r for r in multi if r["method"] == method]
        _, hv = mean_curve(mine)
        mo[method] = {
            "final_hypervolume": float(hv[-1]),
            "final_vs_true_front": float(hv[-1] / true_hv),
            "area_hypervolume": float(hv.mean()),
            "final_pareto_share": float(mean_curve(mine, "pareto_share")[1][-1]),
        }
    return {"single_objective": so, "multi_objective": mo, "true_front_hypervolume": true_hv}


def single_label(run: dict[str, Any]) -> str:
    """A single-objective run's method name: op-tb, or tb with its reward exponent."""
    return "op-tb" if run["objective"] == "op-tb" else f"tb beta={run['beta']:g}"


def finding(summary: dict[str, Any]) -> str:
    """One paragraph from the numbers."""
    so, mo = summary["single_objective"], summary["multi_objective"]
    modes = next(iter(so.values()))["modes"]
    by_area = sorted(so, key=lambda n: -so[n]["area_modes_found"])
    single = "; ".join(
        f"{n}: {v['modes_found']:g}/{modes} modes, all found at step {v['first_step_all_modes']}, "
        f"mass on modes {v['mode_mass']:.3f} (R^beta/Z: {v['target_mode_mass']:.3f})"
        for n, v in so.items()
    )
    by_hv = sorted(mo, key=lambda n: -mo[n]["area_hypervolume"])
    multi = "; ".join(
        f"{n}: final hypervolume {v['final_hypervolume']:.4f} ({v['final_vs_true_front']:.3f} of "
        f"the true front's), Pareto share {v['final_pareto_share']:.2f}"
        for n, v in mo.items()
    )
    return (
        f"Single objective, ranking by area under the modes-found curve: {' > '.join(by_area)} "
        f"({single}). Branin-Currin, ranking by area under the hypervolume curve: "
        f"{' > '.join(by_hv)} ({multi})."
    )


def plot(
    single: list[dict[str, Any]],
    multi: list[dict[str, Any]],
    true_hv: float,
    path: Path,
    modes: int,
) -> None:
    """Left: modes found against steps; middle: hypervolume of draws; right: Pareto share."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4), layout="tight")
    axes = fig.subplots(1, 3)
    for label in dict.fromkeys(single_label(r) for r in single):
        axes[0].plot(*mean_curve([r for r in single if single_label(r) == label]), label=label)
    axes[0].axhline(modes, ls="--", c="k", lw=1, label="all modes")
    axes[0].set_ylabel("modes found")
    for method in dict.fromkeys(r["method"] for r in multi):
        mine = [r for r in multi if r["method"] == method]
        axes[1].plot(*mean_curve(mine), label=method)
        axes[2].plot(*mean_curve(mine, "pareto_share"), label=method)
    axes[1].axhline(true_hv, ls="--", c="k", lw=1, label="true front")
    axes[1].set_ylabel("hypervolume of draws (ref 0)")
    axes[2].set_ylabel("share of draws on the true front")
    titles = ("hypergrid, single objective", "Branin-Currin", "Branin-Currin")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both parts, write the JSON and the plot, print the finding."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    single = []
    for seed in args.seeds:
        for objective, beta in [("op-tb", 1.0)] + [("tb", b) for b in BETAS]:
            run = single_run(objective, beta, seed, args)
            single.append(run)
            print(
                f"{single_label(run):12} seed {seed}: {run['modes_found']}/{run['modes']} modes, "
                f"mass on modes {run['mode_mass']:.3f} in {run['seconds']:.0f} s",
                flush=True,
            )
    table = MOHyperGrid(args.mo_height, ["branin", "currin"]).table.numpy()
    true_hv = hypervolume(table, 0.0)
    multi = []
    for seed in args.seeds:
        for method in ("op-tb", "pc-tb", "sum-tb", "random"):
            run = mo_run(method, seed, args)
            multi.append(run)
            print(
                f"{method:8} seed {seed}: hypervolume {run['final_hypervolume']:.4f} "
                f"(front {true_hv:.4f}) in {run['seconds']:.0f} s",
                flush=True,
            )
    summary = summarize(single, multi, true_hv)
    result = {
        "benchmark": "order_preserving",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "single": {
                "ndim": args.ndim,
                "height": args.height,
                "r0": args.r0,
                "steps": args.single_steps,
                "betas": list(BETAS),
            },
            "multi": {
                "height": args.mo_height,
                "objectives": ["branin", "currin"],
                "steps": args.mo_steps,
                "pc_beta": args.pc_beta,
                "eval_samples": args.eval_samples,
                "reference_point": 0.0,
            },
            "network": "MLP 2 x 256, uniform P_B",
            "batch_size": 16,
            "lr": 1e-3,
            "lr_log_z": 1e-1,
            "record_every": args.record_every,
            "seeds": args.seeds,
            "paper": args.paper,
        },
        "finding": finding(summary),
        "summary": summary,
        "single_objective_runs": single,
        "multi_objective_runs": multi,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_json(args.out, result)
    plot(single, multi, true_hv, args.out.with_suffix(".png"), single[0]["modes"])
    print(result["finding"])
    return result


if __name__ == "__main__":
    main()

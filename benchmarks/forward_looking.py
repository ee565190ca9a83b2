"""Forward-looking GFlowNets on set generation (Pan et al. 2023, Section 5): FL-DB against DB, TB
and SubTB on the small / medium / large sets (|U|, |S| = 30, 20 / 80, 60 / 100, 80).

Same budget and network for every objective: a 2 x 256 MLP, uniform backward policy (learned,
as in the authors' code, with --learn-pb), batch 16, Adam at lr 1e-3 (log Z at 1e-1), the same
number of steps. As in the authors' code,
each step also draws 16 on-policy sets (no exploration) for evaluation, and the curve is the mean
reward of the 100 best distinct on-policy sets drawn so far; training rollouts mix the policy
with uniform exploration at the authors' per-method weights (DB 1, FL-DB 1 on small and 0.5
otherwise, TB 0 or 0.0625; SubTB takes DB's). Two references: a perfect sampler (exact draws from
R/Z, by conditional-Bernoulli sampling on the additive energies) given the same number of
evaluation draws, and the exact top-100 mean reward of the environment (best-first enumeration
of the sets with the lowest energies). The mean log-reward of the evaluation draws is recorded
too, next to its exact value under R/Z.

    .venv/bin/python benchmarks/forward_looking.py            # default: a few minutes, 1 seed
    .venv/bin/python benchmarks/forward_looking.py --paper    # 10,000 steps, 3 seeds (hours)
    .venv/bin/python benchmarks/forward_looking.py --learn-pb \
        --out benchmarks/results/forward_looking_learned_pb.json

Results: benchmarks/results/forward_looking.json and .png (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import heapq
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gflow.envs.sets import SIZES, SetGeneration

from gflow.bench.machine import machine_info
from gflow.bench.plots import save_figure
from gflow.checkpoint import save_json, seed_everything
from gflow.objectives import get_objective
from gflow.replay import ReplayBuffer
from gflow.sampling import sample_forward
from gflow.training import Callback, ModelConfig, TopObjects, TrainConfig, Trainer, build_policy

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "forward_looking.json"
OBJECTIVES = ("fl-db", "db", "tb", "subtb")
PAPER_EPSILON = {
    "small": {"fl-db": 1.0, "db": 1.0, "tb": 0.0, "subtb": 1.0},
    "medium": {"fl-db": 0.5, "db": 1.0, "tb": 0.0625, "subtb": 1.0},
    "large": {"fl-db": 0.5, "db": 1.0, "tb": 0.0, "subtb": 1.0},
}
"""Uniform-exploration weight of training rollouts per size and objective (authors' code)."""
TOP_K = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the short run committed with the results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--paper", action="store_true", help="paper scale: 10,000 steps, seeds 0-2")
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    p.add_argument("--objectives", nargs="+", choices=OBJECTIVES, default=list(OBJECTIVES))
    p.add_argument("--steps", type=int, help="training steps per run (default 400; paper 10000)")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0; paper 0 1 2)")
    p.add_argument(
        "--epsilon",
        type=float,
        help="one exploration weight for every run (default: the authors' per-method weights)",
    )
    p.add_argument(
        "--learn-pb", action="store_true", help="learned P_B, as the authors (default uniform)"
    )
    p.add_argument("--eval-batch", type=int, default=16, help="on-policy sets drawn per step")
    p.add_argument("--record-every", type=int, help="steps between curve points (default 10)")
    p.add_argument("--env-seed", type=int, default=0, help="seed of the element energies")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON path (PNG beside it)")
    args = p.parse_args(argv)
    args.steps = args.steps or (10_000 if args.paper else 400)
    args.seeds = args.seeds or ([0, 1, 2] if args.paper else [0])
    args.record_every = args.record_every or (100 if args.paper else 10)
    for name in ("steps", "eval_batch", "record_every", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.epsilon is not None and not 0 <= args.epsilon <= 1:
        p.error("--epsilon must be in [0, 1]")
    return args


def best_sets_mean_reward(env: SetGeneration, k: int) -> float:
    """Exact mean reward of the k best sets: a best-first walk over sets of the |S| elements
    with the lowest energies, each successor moving one chosen element to the next unchosen
    rank (every set is reached, its sum of energies never below its predecessor's)."""
    energy = np.sort(env.energies.double().cpu().numpy())
    start = tuple(range(env.set_size))
    heap, known, rewards = [(energy[list(start)].sum(), start)], {start}, []
    while heap and len(rewards) < k:
        total, chosen = heapq.heappop(heap)
        rewards.append(math.exp(-total))
        taken = set(chosen)
        for i, rank in enumerate(chosen):
            if rank + 1 < env.universe and rank + 1 not in taken:
                nxt = tuple(sorted(chosen[:i] + (rank + 1,) + chosen[i + 1 :]))
                if nxt not in known:
                    known.add(nxt)
                    heapq.heappush(heap, (total - energy[rank] + energy[rank + 1], nxt))
    return float(np.mean(rewards))


def log_elementary(log_w: np.ndarray, degree: int) -> np.ndarray:
    """(n+1, degree+1) table: entry [i, j] is log e_j(w_i, ..., w_{n-1}), the log of the
    elementary symmetric polynomial of degree j of the weights from i on."""
    n = len(log_w)
    table = np.full((n + 1, degree + 1), -np.inf)
    table[:, 0] = 0.0
    for i in range(n - 1, -1, -1):
        table[i, 1:] = np.logaddexp(table[i + 1, 1:], log_w[i] + table[i + 1, :-1])
    return table


def exact_sets(env: SetGeneration, n: int, rng: np.random.Generator) -> torch.Tensor:
    """`n` sets drawn exactly from R/Z: element i joins, with j elements still to choose, with
    probability w_i e_{j-1}(w_{i+1}, ...) / e_j(w_i, ...), where w = exp(-energy)."""
    log_w = -env.energies.double().cpu().numpy()
    table = log_elementary(log_w, env.set_size)
    sets = np.zeros((n, env.universe), dtype=np.int64)
    left = np.full(n, env.set_size)
    for i in range(env.universe):
        log_p = log_w[i] + table[i + 1, np.maximum(left - 1, 0)] - table[i, left]
        take = (left > 0) & (rng.random(n) < np.exp(np.minimum(log_p, 0.0)))
        sets[take, i] = 1
        left -= take
    return torch.from_numpy(sets).to(env.device)


def exact_reference(
    env: SetGeneration, steps: list[int], per_step: int, seed: int
) -> dict[str, Any]:
    """The perfect sampler's curve: top-K mean reward of its first `per_step * s` draws at
    each recorded step s, and the exact mean log-reward under R/Z."""
    sets = exact_sets(env, per_step * steps[-1], np.random.default_rng(seed))
    log_reward = env.log_reward(sets)
    best, curve, done = ReplayBuffer(env, TOP_K), [], 0
    for step in steps:
        best.add(sets[done : per_step * step], log_reward[done : per_step * step])
        done = per_step * step
        curve.append([step, float(best.log_reward.exp().mean())])
    return {"curve": curve, "mean_log_reward": mean_log_reward(env)}


def mean_log_reward(env: SetGeneration) -> float:
    """E[log R(x)] under R/Z: minus the sum of energies weighted by each element's inclusion
    probability w_i e_{m-1}(w without i) / e_m(w)."""
    log_w = -env.energies.double().cpu().numpy()
    total = log_elementary(log_w, env.set_size)[0, -1]
    inclusion = [
        math.exp(log_w[i] + log_elementary(np.delete(log_w, i), env.set_size - 1)[0, -1] - total)
        for i in range(env.universe)
    ]
    return float(np.dot(inclusion, log_w))


class EvaluationDraws(Callback):
    """After each training step, `per_step` on-policy draws (no exploration): the best distinct
    sets drawn so far and, at the recorded steps, their top-K mean reward and the mean
    log-reward of the draws since the last record."""

    def __init__(self, env: SetGeneration, per_step: int, recorded: set[int]):
        self.env, self.per_step, self.recorded = env, per_step, recorded
        self.best = TopObjects(env, TOP_K)
        self.curve: list[list[float]] = []
        self.log_rewards: list[list[float]] = []
        self.window: list[torch.Tensor] = []

    def after_step(self, trainer: Trainer, loss: torch.Tensor, batch: Any) -> None:
        draws = sample_forward(self.env, trainer.policy, self.per_step)
        self.best.add(draws)
        self.window.append(draws.log_reward)
        if trainer.step in self.recorded:
            self.curve.append([trainer.step, self.best.stats()["top_k_reward"]])
            self.log_rewards.append([trainer.step, float(torch.cat(self.window).mean())])
            self.window = []


def run_one(size: str, name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one objective on one size; its evaluation curves and timings."""
    env = SetGeneration.preset(size, seed=args.env_seed)
    epsilon = PAPER_EPSILON[size][name] if args.epsilon is None else args.epsilon
    config = TrainConfig(
        steps=args.steps, batch_size=16, lr=1e-3, lr_log_z=1e-1, epsilon=epsilon, seed=seed, top_k=0
    )
    seed_everything(seed)
    policy = build_policy(env, ModelConfig(hidden=256, layers=2, learn_pb=args.learn_pb))
    trainer = Trainer(env, policy, get_objective(name), config)
    evaluation = EvaluationDraws(env, args.eval_batch, set(record_steps(args)))
    started = time.perf_counter()
    trainer.run(quiet=True, callbacks=[evaluation])
    evaluated, curve, log_rewards = evaluation.best, evaluation.curve, evaluation.log_rewards
    train_s = trainer.train_seconds
    return {
        "size": size,
        "objective": name,
        "seed": seed,
        "epsilon": epsilon,
        "curve": curve,
        "mean_log_reward": log_rewards,
        "final_top_k_reward": curve[-1][1],
        "unique_sets": evaluated.stats()["unique_objects"],
        "train_seconds": train_s,
        "seconds": time.perf_counter() - started,
    }


def record_steps(args: argparse.Namespace) -> list[int]:
    """The steps at which curves get a point: every `record_every` and the last."""
    return sorted({*range(args.record_every, args.steps + 1, args.record_every), args.steps})


def _mean_curve(runs: list[dict[str, Any]], key: str) -> tuple[list[int], np.ndarray]:
    """Steps and the mean over runs (seeds) of the curve under `key`."""
    return [s for s, _ in runs[0][key]], np.array([[v for _, v in r[key]] for r in runs]).mean(0)


def summarize(runs: list[dict[str, Any]], references: dict[str, Any]) -> dict[str, Any]:
    """Per size and objective (means over seeds): final top-K reward and its ratio to the
    perfect sampler's, the area under the curve (its mean) relative to the perfect sampler's,
    the first step reaching 90% of the best final value among objectives, and the final mean
    log-reward of evaluation draws; then the objectives ranked by area."""
    table: dict[str, Any] = {}
    for size, ref in references.items():
        ref_values = np.array([v for _, v in ref["curve"]])
        rows = {}
        for name in OBJECTIVES:
            mine = [r for r in runs if r["size"] == size and r["objective"] == name]
            if mine:
                steps, values = _mean_curve(mine, "curve")
                rows[name] = (steps, values, _mean_curve(mine, "mean_log_reward")[1])
        target = 0.9 * max(values[-1] for _, values, _ in rows.values())
        objectives = {
            name: {
                "final_top_k_reward": float(values[-1]),
                "final_vs_perfect_sampler": float(values[-1] / ref_values[-1]),
                "area_vs_perfect_sampler": float(values.mean() / ref_values.mean()),
                "steps_to_90pct_of_best_final": next(
                    (s for s, v in zip(steps, values, strict=True) if v >= target), None
                ),
                "final_mean_log_reward": float(log_r[-1]),
                "peak_mean_log_reward": float(log_r.max()),
                "peak_step": steps[int(log_r.argmax())],
            }
            for name, (steps, values, log_r) in rows.items()
        }
        table[size] = {
            "exact_top_k_reward": ref["exact_top_k_reward"],
            "perfect_sampler_final_top_k_reward": float(ref_values[-1]),
            "exact_mean_log_reward": ref["mean_log_reward"],
            "objectives": objectives,
            "ranking_by_area": sorted(
                objectives, key=lambda n: -objectives[n]["area_vs_perfect_sampler"]
            ),
        }
    return table


def _each(objs: dict[str, Any], text: Any) -> str:
    """`name value` for every objective, comma-separated; `text` formats one summary row."""
    return ", ".join(f"{n} {text(o)}" for n, o in objs.items())


def finding(summary: dict[str, Any], learn_pb: bool) -> str:
    """One paragraph from the numbers: where FL-DB ranks by area, when each objective reaches
    90% of the best final value, how far each is from the perfect sampler, and how the mean
    log-reward of the draws moves against that of R/Z."""
    parts, wins = [], 0
    for size, row in summary.items():
        objs = row["objectives"]
        wins += row["ranking_by_area"][0] == "fl-db"
        reach = _each(objs, lambda o: o["steps_to_90pct_of_best_final"])
        ratio = _each(objs, lambda o: f"{o['final_vs_perfect_sampler']:.2f}")
        log_r = _each(
            objs,
            lambda o: (
                f"{o['peak_mean_log_reward']:.2f} ({o['peak_step']}) -> "
                f"{o['final_mean_log_reward']:.2f}"
            ),
        )
        parts.append(
            f"{size}: ranking by area {' > '.join(row['ranking_by_area'])}; steps to 90% of the "
            f"best final top-{TOP_K} reward: {reach}; final top-{TOP_K} reward / perfect "
            f"sampler's: {ratio}; mean log R of draws, peak (step) -> final: {log_r} "
            f"(R/Z: {row['exact_mean_log_reward']:.2f})"
        )
    backward = "learned" if learn_pb else "uniform"
    return (
        f"P_B {backward}. FL-DB has the largest area under the top-{TOP_K} curve on {wins} of "
        f"{len(parts)} sizes. {'; '.join(parts)}. Reading: the top-{TOP_K} curve rewards early "
        f"concentration on high-reward sets (a mean log R above that of R/Z lifts it past the "
        f"perfect sampler's), so the mean-log-R panel is the check of convergence to R/Z."
    )


def plot(runs: list[dict[str, Any]], references: dict[str, Any], path: Path) -> None:
    """Per size: the top-K curve (top row) and the mean log-reward of evaluation draws (bottom
    row) of each objective, with the perfect sampler and the exact values as references."""
    from matplotlib.figure import Figure

    sizes = list(references)
    fig = Figure(figsize=(5 * len(sizes), 7.5), layout="tight")
    axes = fig.subplots(2, len(sizes), squeeze=False)
    for column, size in enumerate(sizes):
        top, mean = axes[0][column], axes[1][column]
        ref = references[size]
        for name in OBJECTIVES:
            mine = [r for r in runs if r["size"] == size and r["objective"] == name]
            if mine:
                top.plot(*_mean_curve(mine, "curve"), label=name.upper())
                mean.plot(*_mean_curve(mine, "mean_log_reward"), label=name.upper())
        top.plot(*zip(*ref["curve"], strict=True), "k--", lw=1, label="perfect sampler")
        mean.axhline(ref["mean_log_reward"], ls="--", c="k", lw=1, label="E[log R] under R/Z")
        universe, set_size = SIZES[size]
        top.set_title(f"{size} (|U|={universe}, |S|={set_size})")
        top.set_yscale("log")
        mean.set_xlabel("training step")
    axes[0][0].set_ylabel(f"mean reward of top-{TOP_K} distinct sets drawn")
    axes[1][0].set_ylabel("mean log R of evaluation draws")
    axes[0][0].legend(fontsize=8)
    axes[1][0].legend(fontsize=8)
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every (size, objective, seed), write the JSON and the plot, print the finding."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    references = {}
    for size in args.sizes:
        env = SetGeneration.preset(size, seed=args.env_seed)
        references[size] = exact_reference(env, record_steps(args), args.eval_batch, seed=0)
        references[size]["exact_top_k_reward"] = best_sets_mean_reward(env, TOP_K)
    runs = []
    for size in args.sizes:
        for name in args.objectives:
            for seed in args.seeds:
                run = run_one(size, name, seed, args)
                runs.append(run)
                print(
                    f"{size:6} {name:8} seed {seed}: top-{TOP_K} {run['final_top_k_reward']:.4g} "
                    f"(perfect sampler {references[size]['curve'][-1][1]:.4g}) "
                    f"in {run['seconds']:.0f} s",
                    flush=True,
                )
    summary = summarize(runs, references)
    result = {
        "benchmark": "forward_looking",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "steps": args.steps,
            "seeds": args.seeds,
            "batch_size": 16,
            "network": "MLP 2 x 256",
            "backward_policy": "learned" if args.learn_pb else "uniform",
            "lr": 1e-3,
            "lr_log_z": 1e-1,
            "subtb_lambda": 0.9,
            "epsilon": PAPER_EPSILON if args.epsilon is None else args.epsilon,
            "eval_batch": args.eval_batch,
            "top_k": TOP_K,
            "env_seed": args.env_seed,
            "paper": args.paper,
        },
        "finding": finding(summary, args.learn_pb),
        "summary": summary,
        "references": references,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_json(args.out, result)
    plot(runs, references, args.out.with_suffix(".png"))
    print(result["finding"])
    return result


if __name__ == "__main__":
    main()

"""OC-GFN benchmark (Pan et al. 2024): does reward-free pre-training make adaptation to a new
reward faster? On hypergrid and bit sequences (enumerable sizes, so every number is exact):

1. pre-train an outcome-conditioned GFlowNet, with and without outcome teleportation, and record
   the exact probability of reaching each outcome over steps;
2. for each downstream reward: the exact TV of the marginal policy converted without training;
   then fine-tuning (the marginal distilled with the amortized (N, Q) predictor, or with the
   exact sum over outcomes, then trajectory balance) against trajectory balance from scratch
   with the same network, batch and learning rates: exact TV and modes found among the training
   samples over steps and seconds.

Usage: python benchmarks/oc_gfn.py [--quick] [--out benchmarks/results/oc_gfn.json] [--plot P]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from gflow.envs.bitseq import BitSequence
from gflow.envs.hypergrid import HyperGrid

from gflow.checkpoint import seed_everything
from gflow.env import Env
from gflow.exact import distribution_errors, state_graph, target_distribution
from gflow.finetune import FinetuneOptions, FinetuneTrainer, build_model, conversion_distribution
from gflow.objectives import get_objective
from gflow.objectives.outcome import outcome_objective
from gflow.outcome import outcome_env, terminal_objects
from gflow.pretrain import PretrainOptions, PretrainTrainer
from gflow.training import Callback, ModelConfig, TrainConfig, Trainer, build_policy

HERE = Path(__file__).parent
MODEL = ModelConfig(hidden=64)
"""Every network of the benchmark: a 2 x 64 MLP, uniform P_B."""
METHODS = {"amortized": 4, "exact-sum": 0, "scratch": None}
"""Fine-tuning with the (N, Q) predictor (4 outcomes per move), with the exact sum over all
outcomes, and TB from scratch."""


def hypergrid_modes(env: HyperGrid, states: torch.Tensor, log_reward: torch.Tensor) -> set:
    """Corners (sign patterns around the centre) of sampled objects with the top reward."""
    top = log_reward > torch.log(torch.tensor(env.r0 + 2.0)).item()
    signs = (states[top].float() > (env.height - 1) / 2).long()
    return {tuple(row) for row in signs.tolist()}


def bitseq_modes(env: BitSequence, states: torch.Tensor, log_reward: torch.Tensor) -> set:
    """Modes of the mode set sampled exactly."""
    hits = (env.distances(states) == 0).any(dim=0)
    return set(hits.nonzero().squeeze(1).tolist())


class ModesFound(Callback):
    """Records the modes found by the training batches and adds their number to every
    evaluation's entry."""

    def __init__(self, modes_of: Any):
        self.modes_of, self.found = modes_of, set()

    def after_step(self, trainer: Trainer, loss: torch.Tensor, batch: Any) -> None:
        done = batch.done
        objects = trainer.env.select(batch.terminal, done)
        self.found |= self.modes_of(trainer.env, objects, batch.log_reward[done])

    def after_evaluate(self, trainer: Trainer, entry: dict[str, Any]) -> None:
        entry["modes"] = len(self.found)


def pretrain(env: Env, steps: int, teleport: bool, cfg: dict, seed: int) -> tuple[Any, dict]:
    """Pre-train an OC-GFN; the policy and the success history."""
    oenv = outcome_env(env, enumerate_outcomes=True)
    objective = outcome_objective("db", teleport)
    config = TrainConfig(
        steps=steps,
        eval_every=max(1, steps // 10),
        seed=seed,
        epsilon=0.0 if teleport else 0.05,
        top_k=0,
        **cfg,
    )
    seed_everything(seed)
    policy = build_policy(oenv, MODEL)
    options = PretrainOptions(swapped=not teleport)
    start = time.perf_counter()
    metrics = PretrainTrainer(oenv, policy, objective, config, options).run(quiet=True)
    history = [
        {k: e[k] for k in ("step", "exact_success", "exact_success_min")}
        for e in metrics["eval_history"]
    ]
    return policy, {
        "objective": objective.name,
        "seconds": time.perf_counter() - start,
        "history": history,
    }


def adapt(
    env: Env,
    pretrained: Any,
    samples: int,
    steps: int,
    distill: int,
    cfg: dict,
    seed: int,
    modes_of: Any,
) -> dict[str, list]:
    """Fine-tuning from the pre-trained model (`samples` outcomes per move from Q, 0: exact
    sum), or TB from scratch when `pretrained` is None, on `env`'s reward."""
    config = TrainConfig(steps=steps, eval_every=max(1, steps // 12), seed=seed, **cfg)
    out = {}
    seed_everything(seed)
    trainer: Trainer
    if pretrained is None:
        trainer = Trainer(env, build_policy(env, MODEL), get_objective("tb"), config)
    else:
        options = FinetuneOptions(distill_steps=distill, samples=samples)
        model = build_model(env, pretrained, options, MODEL)
        trainer = FinetuneTrainer(
            env, model, get_objective("tb"), config, options, env.featurize, terminal_objects(env)
        )
    seed_everything(seed)
    metrics = trainer.run(quiet=True, callbacks=[ModesFound(modes_of)])
    keys = ("step", "train_seconds", "exact_tv", "modes")
    out["history"] = [{k: e[k] for k in keys} for e in metrics["eval_history"]]
    return out


def task_list(quick: bool) -> list[dict]:
    """The environments (structure), their downstream rewards, and step budgets."""
    grid_rewards = [HyperGrid(2, 8, r0=r0) for r0 in (1e-2, 1e-3)]
    bit_rewards = [BitSequence(8, 2, n_modes=2, beta=6.0, seed=s) for s in (1, 2, 3)]
    scale = 0.05 if quick else 1.0
    return [
        {
            "name": "hypergrid-2d-H8",
            "structure": HyperGrid(2, 8),
            "rewards": grid_rewards,
            "labels": [f"r0={env.r0:g}" for env in grid_rewards],
            "modes_of": hypergrid_modes,
            "n_modes": 4,
            "pretrain_steps": int(1500 * scale),
            "steps": int(600 * scale),
            "distill": int(300 * scale),
        },
        {
            "name": "hypergrid-2d-H16",
            "structure": HyperGrid(2, 16),
            "rewards": [HyperGrid(2, 16, r0=1e-4)],
            "labels": ["r0=0.0001"],
            "modes_of": hypergrid_modes,
            "n_modes": 4,
            "pretrain_steps": int(4000 * scale),
            "steps": int(1200 * scale),
            "distill": int(400 * scale),
        },
        {
            "name": "bitseq-n8-k2",
            "structure": BitSequence(8, 2, n_modes=2, seed=0),
            "rewards": bit_rewards,
            "labels": [f"modes seed {s}" for s in (1, 2, 3)],
            "modes_of": bitseq_modes,
            "n_modes": 2,
            "pretrain_steps": int(1200 * scale),
            "steps": int(600 * scale),
            "distill": int(300 * scale),
        },
    ]


def run(quick: bool, seeds: list[int]) -> dict:
    """Every task, reward and seed; the results as one JSON-ready dictionary."""
    cfg = dict(batch_size=32, lr=3e-3, lr_log_z=3e-2)
    settings = cfg | {"hidden": MODEL.hidden, "quick": quick, "seeds": seeds}
    results: dict[str, Any] = {"config": settings, "tasks": []}
    for task in task_list(quick):
        entry: dict[str, Any] = {"name": task["name"], "pretraining": {}, "rewards": []}
        models = {}
        for teleport in (False, True):
            policy, info = pretrain(task["structure"], task["pretrain_steps"], teleport, cfg, 0)
            models[info["objective"]] = policy
            entry["pretraining"][info["objective"]] = info
            print(task["name"], info["objective"], info["history"][-1], flush=True)
        pretrained = models["oc-db"]
        for env, label in zip(task["rewards"], task["labels"], strict=True):
            graph = state_graph(env)
            target, _ = target_distribution(graph, env)
            outcomes = terminal_objects(env)
            codes, log_r = env.featurize(outcomes), env.log_reward(outcomes)
            conversion = {
                name: distribution_errors(
                    conversion_distribution(graph, env, model, codes, log_r), target
                )["tv"]
                for name, model in models.items()
            }
            runs: dict[str, list] = {method: [] for method in METHODS}
            for seed in seeds:
                for method, samples in METHODS.items():
                    model = None if samples is None else pretrained
                    result = adapt(
                        env,
                        model,
                        samples or 0,
                        task["steps"],
                        task["distill"],
                        cfg,
                        seed,
                        task["modes_of"],
                    )
                    runs[method].append(result["history"])
                    print(task["name"], label, method, seed, result["history"][-1], flush=True)
            entry["rewards"].append(
                {"label": label, "conversion_tv": conversion, "distill_steps": task["distill"]}
                | runs
            )
        entry["n_modes"] = task["n_modes"]
        results["tasks"].append(entry)
    return results


def plot(results: dict, path: Path) -> None:
    """Exact TV and modes found over steps, fine-tuned (amortized or exact-sum marginal) vs
    scratch, one column per reward; the
    dashed line is the exact marginal of the pre-trained model (no training), the dotted line
    the end of the amortized phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [(t, r) for t in results["tasks"] for r in t["rewards"]]
    fig, axes = plt.subplots(2, len(columns), figsize=(3.2 * len(columns), 5.5), squeeze=False)
    for col, (task, reward) in enumerate(columns):
        colors = {"amortized": "tab:blue", "exact-sum": "tab:orange", "scratch": "tab:gray"}
        for method, color in colors.items():
            for i, history in enumerate(reward[method]):
                steps = [e["step"] for e in history]
                label = method if i == 0 else None
                axes[0, col].plot(steps, [e["exact_tv"] for e in history], color=color, label=label)
                axes[1, col].plot(steps, [e["modes"] for e in history], color=color)
        axes[0, col].axvline(reward["distill_steps"], color="tab:blue", ls=":", lw=0.8)
        conversion = reward["conversion_tv"]["oc-db"]
        axes[0, col].axhline(conversion, color="tab:green", ls="--", lw=0.8, label="conversion")
        axes[0, col].set_yscale("log")
        axes[0, col].set_title(f"{task['name']}\n{reward['label']}", fontsize=8)
        axes[1, col].set_ylim(0, task["n_modes"] + 0.5)
        axes[1, col].set_xlabel("training steps")
    axes[0, 0].set_ylabel("exact TV to R/Z")
    axes[1, 0].set_ylabel("modes found")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    """Run the benchmark and write the JSON (and optionally the figure)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5% of the steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "oc_gfn.json")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG figure here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = run(args.quick, args.seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()

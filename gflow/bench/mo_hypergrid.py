"""`gflow bench mo-hypergrid`: MOGFN-PC on the 32 x 32 multi-objective hypergrid (2 to 4 of
Branin, Currin, Shubert, Beale). The grid is small enough to know the exact Pareto front (for
the hypervolume ratio and IGD+) and, per grid preference, the exact distribution the sampler
should match at the evaluation beta (total variation, as MOGFN's hypergrid study measures)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import torch

from gflow.bench import mogfn_pc
from gflow.bench.common import registered_env
from gflow.conditioning import ConditionalEnv
from gflow.exact import exact_report, state_graph
from gflow.metrics import pareto_front
from gflow.policies.base import Policy

if TYPE_CHECKING:
    from gflow.envs.mo_hypergrid import MOHyperGrid

NAME = "mo-hypergrid"
ENV = NAME
"""The registered environment whose options `gflow bench` adds."""
HELP = "MOGFN-PC on the 32x32 hypergrid with 2-4 of Branin, Currin, Shubert, Beale"
SHORT = mogfn_pc.Preset(
    steps=2000,
    hidden=128,
    epsilon=0.05,
    beta_max=16.0,
    eval_every=250,
)
PAPER = replace(SHORT, steps=20000, batch_size=128, hidden=256, eval_every=1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """MOGFN-PC's options (the environment's come from its registry entry, `ENV`)."""
    mogfn_pc.add_arguments(parser, SHORT, PAPER)


def manhattan(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """L1 distance between two grid cells, the diversity distance of this benchmark."""
    return float(sum(abs(x - y) for x, y in zip(a, b, strict=True)))


def exact_errors(
    env: ConditionalEnv, policy: Policy, preferences: torch.Tensor, beta: float
) -> dict[str, Any]:
    """Per grid preference, the exact distance between the sampler's terminal distribution and
    R(x | w, beta) / Z, with their mean and worst case."""
    graph = state_graph(env.env)
    rows = []
    for w in preferences:
        cond = env.conditioning.condition(w.to(env.conditioning.device), beta)
        report = exact_report(env.at(cond), policy, graph, cond=cond)
        rows.append({"preference": w.tolist()} | report)
    tv = [r["exact_tv"] for r in rows]
    return {
        "exact_tv_mean": sum(tv) / len(tv),
        "exact_tv_max": max(tv),
        "exact_per_preference": rows,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate; writes results.json and plots under args.out."""
    base = cast("MOHyperGrid", registered_env(ENV, args))
    task = mogfn_pc.Task(
        name=NAME,
        base=base,
        objective_names=base.objective_names,
        describe=lambda states: [tuple(cell) for cell in states.tolist()],
        distance=manhattan,
        notes={
            "env": f"{base.height}x{base.height} grid, objectives normalized to [0, 1] over "
            "its cells (see envs/mo_hypergrid.py)",
            "policy": "MLP over one-hot coordinates",
            "diversity": "mean pairwise L1 (Manhattan) distance between top-K cells",
        },
        true_front=pareto_front(base.table.cpu().numpy()),
        extra=exact_errors,
    )
    return mogfn_pc.run_mogfn(args, task, SHORT, PAPER)

"""What the MOGFN-PC benchmarks on registered environments share: the environment built from the
parsed options, and MOGFN's presets and task for its sequence tasks (N-grams, DNA aptamers)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from gflow.bench import mogfn_pc
from gflow.envs.registry import ENVIRONMENTS


def registered_env(name: str, args: argparse.Namespace) -> Any:
    """The environment that registry entry `name` builds from the parsed options."""
    spec = ENVIRONMENTS[name]
    return spec(args.device, **spec.pick(vars(args)))


def sequence_presets(short_grid: int = 11) -> tuple[mogfn_pc.Preset, mogfn_pc.Preset]:
    """MOGFN's sequence-task settings (short, paper); the short one's simplex grid `short_grid`
    points per edge, the paper one's 11."""
    short = mogfn_pc.Preset(
        steps=1000,
        epsilon=0.01,
        beta_bins=50,
        grid=short_grid,
        samples=64,
        eval_every=250,
        curve_samples=16,
    )
    paper = replace(
        short,
        steps=10000,
        batch_size=128,
        layers=3,
        lr=1e-4,
        lr_log_z=1e-3,
        grid=11,
        samples=128,
        eval_every=1000,
        curve_samples=32,
    )
    return short, paper


def sequence_task(
    name: str, base: Any, objective_names: list[str], notes: dict[str, Any]
) -> mogfn_pc.Task:
    """The MOGFN-PC task on sequence environment `base` (with `to_strings`): Levenshtein
    diversity, and `notes` followed by the policy's and the diversity's."""
    return mogfn_pc.Task(
        name=name,
        base=base,
        objective_names=objective_names,
        describe=base.to_strings,
        distance="levenshtein",
        notes=notes
        | {
            "policy": "MLP over one-hot tokens (MOGFN used a 3-layer transformer)",
            "diversity": "mean pairwise Levenshtein distance between top-K sequences",
        },
    )

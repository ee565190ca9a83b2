"""`gflow bench ngrams`: MOGFN-PC on the N-grams task (MOGFN, Jain et al. 2023): sequences of
20 amino acids, lengths 32 to 36, one objective per n-gram count (default the bigrams AV, VC).
MOGFN's policy is a transformer; this benchmark uses an MLP over one-hot tokens."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from gflow.bench import mogfn_pc
from gflow.envs.registry import ENVIRONMENTS

if TYPE_CHECKING:
    from gflow.envs.ngrams import NGrams

NAME = "ngrams"
ENV = NAME
"""The registered environment whose options `gflow bench` adds."""
HELP = "MOGFN-PC on N-grams: amino-acid sequences scored by n-gram counts (default AV,VC)"
SHORT = mogfn_pc.Preset(
    steps=1000,
    epsilon=0.01,
    beta_bins=50,
    samples=64,
    eval_every=250,
    curve_samples=16,
)
PAPER = replace(
    SHORT,
    steps=10000,
    batch_size=128,
    layers=3,
    lr=1e-4,
    lr_log_z=1e-3,
    samples=128,
    eval_every=1000,
    curve_samples=32,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """MOGFN-PC's options (the environment's come from its registry entry, `ENV`)."""
    mogfn_pc.add_arguments(parser, SHORT, PAPER)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate; writes results.json and plots under args.out."""
    spec = ENVIRONMENTS[ENV]
    base = cast("NGrams", spec(args.device, **spec.pick(vars(args))))  # what the entry builds
    scale = "MOGFN's fixed divisor" if base.max_count is not None else "the largest possible count"
    task = mogfn_pc.Task(
        name=NAME,
        base=base,
        objective_names=[f"count {g}" for g in base.ngrams],
        describe=base.to_strings,
        distance="levenshtein",
        notes={
            "env": f"{len(base.alphabet)} tokens, lengths {base.min_length}-{base.max_length}, "
            f"n-grams {base.ngrams}, each count divided by {scale} "
            f"({base.scale.tolist()}) and clipped to [0, 1]",
            "policy": "MLP over one-hot tokens (MOGFN used a 3-layer transformer)",
            "diversity": "mean pairwise Levenshtein distance between top-K sequences",
        },
    )
    return mogfn_pc.run_mogfn(args, task, SHORT, PAPER)

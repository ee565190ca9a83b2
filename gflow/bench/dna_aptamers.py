"""`gflow bench dna-aptamers`: MOGFN-PC on DNA aptamers (MOGFN, Jain et al. 2023): sequences of
30 nucleotides scored by free energy, base pairs and hairpins of their MFE structure, here from
ViennaRNA's DNA parameters (MOGFN used NUPACK, which is not openly installable). MOGFN's policy
is a transformer; this benchmark uses an MLP over one-hot tokens."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from gflow.bench import mogfn_pc
from gflow.envs.registry import ENVIRONMENTS

if TYPE_CHECKING:
    from gflow.envs.aptamers import DNAAptamers

NAME = "dna-aptamers"
ENV = NAME
"""The registered environment whose options `gflow bench` adds."""
HELP = "MOGFN-PC on DNA aptamers: ViennaRNA free energy, base pairs, hairpins (length 30)"
SHORT = mogfn_pc.Preset(
    steps=1000,
    epsilon=0.01,
    beta_bins=50,
    grid=5,
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
    grid=11,
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
    base = cast("DNAAptamers", spec(args.device, **spec.pick(vars(args))))  # what the entry builds
    task = mogfn_pc.Task(
        name=NAME,
        base=base,
        objective_names=base.objective_names,
        describe=base.to_strings,
        distance="levenshtein",
        notes={
            "env": f"DNA, lengths {base.min_length}-{base.max_length}, objectives "
            f"{base.objective_names} divided by {base.scale.tolist()} and clipped to [0, 1]",
            "energy_model": "ViennaRNA DNA parameters (Mathews 2004); MOGFN used NUPACK, so "
            "values are not comparable one to one with the paper's",
            "policy": "MLP over one-hot tokens (MOGFN used a 3-layer transformer)",
            "diversity": "mean pairwise Levenshtein distance between top-K sequences",
        },
    )
    return mogfn_pc.run_mogfn(args, task, SHORT, PAPER)

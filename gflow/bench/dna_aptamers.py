"""`gflow bench dna-aptamers`: MOGFN-PC on DNA aptamers (MOGFN, Jain et al. 2023): sequences of
30 nucleotides scored by free energy, base pairs and hairpins of their MFE structure, here from
ViennaRNA's DNA parameters (MOGFN used NUPACK, which is not openly installable). MOGFN's policy
is a transformer; this benchmark uses an MLP over one-hot tokens."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, cast

from gflow.bench import mogfn_pc
from gflow.bench.common import registered_env, sequence_presets, sequence_task

if TYPE_CHECKING:
    from gflow.envs.aptamers import DNAAptamers

NAME = "dna-aptamers"
ENV = NAME
"""The registered environment whose options `gflow bench` adds."""
HELP = "MOGFN-PC on DNA aptamers: ViennaRNA free energy, base pairs, hairpins (length 30)"
SHORT, PAPER = sequence_presets(short_grid=5)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """MOGFN-PC's options (the environment's come from its registry entry, `ENV`)."""
    mogfn_pc.add_arguments(parser, SHORT, PAPER)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate; writes results.json and plots under args.out."""
    base = cast("DNAAptamers", registered_env(ENV, args))
    task = sequence_task(
        NAME,
        base,
        base.objective_names,
        {
            "env": f"DNA, lengths {base.min_length}-{base.max_length}, objectives "
            f"{base.objective_names} divided by {base.scale.tolist()} and clipped to [0, 1]",
            "energy_model": "ViennaRNA DNA parameters (Mathews 2004); MOGFN used NUPACK, so "
            "values are not comparable one to one with the paper's",
        },
    )
    return mogfn_pc.run_mogfn(args, task, SHORT, PAPER)

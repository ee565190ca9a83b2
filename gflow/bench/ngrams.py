"""`gflow bench ngrams`: MOGFN-PC on the N-grams task (MOGFN, Jain et al. 2023): sequences of
20 amino acids, lengths 32 to 36, one objective per n-gram count (default the bigrams AV, VC).
MOGFN's policy is a transformer; this benchmark uses an MLP over one-hot tokens."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, cast

from gflow.bench import mogfn_pc
from gflow.bench.common import registered_env, sequence_presets, sequence_task

if TYPE_CHECKING:
    from gflow.envs.ngrams import NGrams

NAME = "ngrams"
ENV = NAME
"""The registered environment whose options `gflow bench` adds."""
HELP = "MOGFN-PC on N-grams: amino-acid sequences scored by n-gram counts (default AV,VC)"
SHORT, PAPER = sequence_presets()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """MOGFN-PC's options (the environment's come from its registry entry, `ENV`)."""
    mogfn_pc.add_arguments(parser, SHORT, PAPER)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate; writes results.json and plots under args.out."""
    base = cast("NGrams", registered_env(ENV, args))
    scale = "MOGFN's fixed divisor" if base.max_count is not None else "the largest possible count"
    task = sequence_task(
        NAME,
        base,
        [f"count {g}" for g in base.ngrams],
        {
            "env": f"{len(base.alphabet)} tokens, lengths {base.min_length}-{base.max_length}, "
            f"n-grams {base.ngrams}, each count divided by {scale} "
            f"({base.scale.tolist()}) and clipped to [0, 1]",
        },
    )
    return mogfn_pc.run_mogfn(args, task, SHORT, PAPER)

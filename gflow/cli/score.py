"""`gflow score seh|qed|sa|mw FILE`: score one SMILES per line, write `smiles,score` CSV."""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from gflow.cli import UsageError

Scorer = Callable[[list], torch.Tensor]
"""Scores a list of valid RDKit molecules."""

OBJECTIVES = {
    "seh": "sEH binding proxy (Bengio et al. 2021); --normalized: clip(raw / 8, 1e-4, 100)",
    "qed": "RDKit QED in [0, 1]; --normalized changes nothing (QED is its own reward)",
    "sa": "SA score in [1, 10], lower is easier; --normalized: (10 - SA) / 9 in [0, 1]",
    "mw": "molecular weight in Da; --normalized: clip((300 - MW) / 700 + 1, 0, 1)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `score` subcommand."""
    p = subparsers.add_parser(
        "score",
        help="score SMILES with a molecule reward (sEH proxy, QED, SA, molecular weight)",
        description="Read one SMILES per line from FILE and write `smiles,score` CSV to stdout, "
        "each SMILES exactly as in the input. Raw scores by default, the reward scale with "
        "--normalized: "
        + "; ".join(f"{name}: {text}" for name, text in OBJECTIVES.items())
        + ". A line that does not parse gets an empty score and a warning on stderr.",
    )
    p.add_argument("objective", choices=tuple(OBJECTIVES), help="what to score")
    p.add_argument("file", type=Path, help="text file with one SMILES per line")
    p.add_argument("--normalized", action="store_true", help="write the reward scale, not raw")
    p.add_argument("--weights", default=None, help="sEH proxy weights (.npz or .pkl.gz)")
    p.add_argument("--batch-size", type=int, default=256, help="molecules scored at once (256)")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="seh: auto = cuda if any"
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.set_defaults(run=run)


def scorer(args: argparse.Namespace) -> Scorer:
    """The scoring function that `args` asks for (raw or normalized)."""
    from gflow.envs.rewards import chem

    if args.objective != "seh":
        if args.weights is not None:
            raise UsageError(f"--weights applies to seh only, not {args.objective}")
        raw, normalize = {
            "qed": (chem.qed, lambda values: values),
            "sa": (chem.sa_score, chem.normalize_sa),
            "mw": (chem.molecular_weight, chem.normalize_mw),
        }[args.objective]
        return (lambda mols: normalize(raw(mols))) if args.normalized else raw
    from gflow.envs.rewards.seh import SEHProxy, seh_reward

    device = None if args.device == "auto" else args.device
    proxy = SEHProxy.from_file(args.weights, device=device, batch_size=args.batch_size)
    return (lambda mols: seh_reward(proxy(mols))) if args.normalized else proxy


def _chunks(path: Path, size: int) -> Iterator[list[tuple[int, str]]]:
    """(line number, line without its newline) in chunks of `size` lines."""
    with path.open(encoding="utf-8", newline="") as handle:
        lines = ((n, line.rstrip("\r\n")) for n, line in enumerate(handle, start=1))
        while chunk := list(itertools.islice(lines, size)):
            yield chunk


def run(args: argparse.Namespace) -> int:
    """Score every line of the file; CSV on stdout, one warning per unparsable line."""
    from gflow.envs.rewards.molecules import to_mols

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.file.is_file():
        raise FileNotFoundError(f"input file {args.file} does not exist or is not a file")
    score = scorer(args)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["smiles", "score"])
    for chunk in _chunks(args.file, args.batch_size):
        mols = to_mols(text.strip() for _, text in chunk)
        for (number, text), mol in zip(chunk, mols, strict=True):
            if mol is None:
                sys.stderr.write(
                    f"gflow score: warning: line {number}: cannot parse SMILES {text!r}, "
                    "score left empty\n"
                )
        values = iter(score([mol for mol in mols if mol is not None]).tolist())
        writer.writerows(
            (text, "" if mol is None else format(next(values), ".7g"))
            for (_, text), mol in zip(chunk, mols, strict=True)
        )
        sys.stdout.flush()
    return 0

"""`gflow score seh|qed|sa|mw FILE`: score one SMILES per line, write `smiles,score` CSV."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from gflow.cli import UsageError, describe_error
from gflow.errors import GflowError

if TYPE_CHECKING:
    import torch

Scorer = Callable[[list], "torch.Tensor"]
"""Scores a list of valid RDKit molecules."""

STDIN = "-"

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
        description="Read one SMILES per line from FILE (- for standard input) and write "
        "`smiles,score` CSV to stdout or --out, each SMILES exactly as in the input. Raw scores "
        "by default, the reward scale with --normalized: "
        + "; ".join(f"{name}: {text}" for name, text in OBJECTIVES.items())
        + ". A line that does not parse, or is not valid UTF-8, gets an empty score and a "
        "warning on stderr. The qed, sa and mw scores of a molecule never depend on the rest of "
        "its batch; seh scores may, by float32 rounding only (relative difference below "
        "1e-5).",
    )
    p.add_argument("objective", choices=tuple(OBJECTIVES), help="what to score")
    p.add_argument("file", help="text file with one SMILES per line, or - for standard input")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the CSV to this file (atomically: complete or not at all) instead of stdout",
    )
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
    try:
        proxy = SEHProxy.from_file(args.weights, device=device, batch_size=args.batch_size)
    except (GflowError, ValueError, OSError) as err:
        if args.weights is None:
            raise
        raise UsageError(f"--weights {describe_error(err)}") from err
    return (lambda mols: seh_reward(proxy(mols))) if args.normalized else proxy


def _open_input(name: str) -> IO[bytes]:
    """The input as bytes: standard input for `-`, else the file (errors name the problem)."""
    if name == STDIN:
        return sys.stdin.buffer
    path = Path(name)
    if path.is_dir():
        raise UsageError(f"input {path} is a directory, expected a file of SMILES")
    if not path.exists():
        raise UsageError(f"input file {path} does not exist")
    return path.open("rb")


def _decoded(handle: IO[bytes]) -> Iterator[tuple[int, str, bool]]:
    """(line number, text without its line break, whether it is valid UTF-8) per input line;
    an invalid line's text shows its bad bytes as backslash escapes."""
    for number, raw in enumerate(handle, start=1):
        raw = raw.rstrip(b"\r\n")
        try:
            yield number, raw.decode("utf-8"), True
        except UnicodeDecodeError:
            yield number, raw.decode("utf-8", errors="backslashreplace"), False


def _warn(number: int, problem: str) -> None:
    sys.stderr.write(f"gflow score: warning: line {number}: {problem}, score left empty\n")


def write_scores(lines: Iterator[tuple[int, str, bool]], score: Scorer, size: int, out: IO) -> None:
    """Score `lines` in chunks of `size`, writing `smiles,score` rows to `out` (empty scores and a
    warning on stderr for lines that are not UTF-8 or not a molecule)."""
    from rdkit import rdBase

    from gflow.envs.rewards.molecules import to_mols

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["smiles", "score"])
    while chunk := list(itertools.islice(lines, size)):
        mols = to_mols(text.strip() if valid else None for _, text, valid in chunk)
        for (number, text, valid), mol in zip(chunk, mols, strict=True):
            if not valid:
                _warn(number, f"not valid UTF-8 ({text!r})")
            elif mol is None:
                _warn(number, f"cannot parse SMILES {text!r}")
        with rdBase.BlockLogs():
            values = iter(score([mol for mol in mols if mol is not None]).tolist())
        writer.writerows(
            (text, "" if mol is None else format(next(values), ".7g"))
            for (_, text, _), mol in zip(chunk, mols, strict=True)
        )
        out.flush()


def run(args: argparse.Namespace) -> int:
    """Score every line of the input; CSV on stdout or --out, one warning per unusable line."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    if args.out is not None and args.out.is_dir():
        raise UsageError(f"--out {args.out} is a directory, expected a file")
    handle = _open_input(args.file)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    score = scorer(args)
    with contextlib.nullcontext() if args.file == STDIN else handle:
        lines = _decoded(handle)
        if args.out is None:
            write_scores(lines, score, args.batch_size, sys.stdout)
            return 0
        from gflow.checkpoint import atomic_write

        def write(binary: IO[bytes]) -> None:
            text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
            write_scores(lines, score, args.batch_size, text)
            text.detach()

        atomic_write(args.out, write)
    return 0

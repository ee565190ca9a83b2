"""The `gflow` command: each subcommand lives in its own module with `register(subparsers)`.

Command modules import nothing heavy at module level (torch, rdkit, matplotlib load inside the
functions that run a command), and a subcommand with many options of its own fills its parser
only when it is parsed (`populate=`), so `gflow --help` and light commands start fast.

One handler in `main` turns every expected failure (GflowError, ValueError, OSError, a training
that diverged (FloatingPointError), running out of memory, an interrupt) into one line
`gflow COMMAND: error: ...` and an exit status: 2 for bad input or a failed run, 1 for a check
that ran and failed, 130 for Ctrl-C. `--debug` or GFLOW_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gflow.errors import GflowError, UsageError

__all__ = [
    "COMMANDS",
    "Parser",
    "UsageError",
    "build_parser",
    "describe_error",
    "main",
    "output_folder",
]

COMMANDS = (
    "gflow.cli.train",
    "gflow.cli.bench",
    "gflow.cli.hv",
    "gflow.cli.check_env",
    "gflow.cli.score",
    "gflow.cli.pretrain",
    "gflow.cli.finetune",
    "gflow.cli.export",
)

DEBUG_ENV_VAR = "GFLOW_DEBUG"
INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C

_OS_REASONS = {
    IsADirectoryError: "is a directory",
    NotADirectoryError: "is not a folder (or a part of its path is a file)",
    FileNotFoundError: "does not exist",
    FileExistsError: "already exists",
    PermissionError: "permission denied",
}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2) and whose options
    may be added on first use: `populate(parser)` runs before the parser first parses."""

    def __init__(
        self, *args: Any, populate: Callable[[Parser], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._populate = populate

    def populate(self) -> None:
        """Add the deferred options and subcommands, once."""
        fill, self._populate = self._populate, None
        if fill is not None:
            fill(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Fill the parser if it is deferred, then parse."""
        self.populate()
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print `PROG: error: MESSAGE` on one line and exit with status 2."""
        sys.stderr.write(f"{self.prog}: error: {one_line(message)}\n")
        raise SystemExit(2)


def build_parser() -> Parser:
    """The `gflow` parser with every subcommand registered (large ones fill in when parsed)."""
    parser = Parser(prog="gflow", description="GFlowNets: train, benchmark, score, check.")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an error (also: {DEBUG_ENV_VAR}=1)",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def one_line(text: str) -> str:
    """`text` with its line breaks and runs of spaces collapsed to single spaces."""
    return " ".join(text.split())


def describe_error(err: BaseException) -> str:
    """One line saying what went wrong; file-system errors name the path and the reason
    ("is a directory", "permission denied"), never a bare errno."""
    if isinstance(err, OSError) and err.filename is not None:
        reason = next(
            (text for kind, text in _OS_REASONS.items() if isinstance(err, kind)),
            (err.strerror or str(err)).lower(),
        )
        if err.errno == errno.ENOSPC:
            reason = "no space left on the device"
        elif isinstance(err, FileExistsError) and os.path.isfile(err.filename):
            reason = "is a file, not a folder"
        target = f"{err.filename} -> {err.filename2}" if err.filename2 else f"{err.filename}"
        return one_line(f"{target}: {reason}")
    if _out_of_memory(err):
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        detail = f" ({first[:200]})" if first else ""
        return one_line(f"out of memory{detail}; try smaller sizes or batches")
    text = str(err) or type(err).__name__
    if isinstance(err, KeyError):  # str(KeyError) is the quoted key alone
        text = f"missing {text}"
    return one_line(text)


def output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """`path` as a folder that exists, created if needed, before any work is done; the error
    names the option and the problem (a file is in the way, no permission)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder} is a file, expected a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"{option} {folder}: cannot create it: {describe_error(err)}") from None
    return folder


def _out_of_memory(err: BaseException) -> bool:
    """Whether `err` says memory ran out (torch raises RuntimeError, CUDA OutOfMemoryError)."""
    text = str(err).lower()
    return isinstance(err, MemoryError) or "out of memory" in text or "allocate memory" in text


def _debug_env() -> bool:
    """Whether GFLOW_DEBUG asks for tracebacks."""
    return os.environ.get(DEBUG_ENV_VAR, "").strip().lower() not in ("", "0", "false", "no")


def _command(argv: Sequence[str]) -> str:
    """The subcommand named in `argv` ('' when none), for error messages."""
    return next((word for word in argv if not word.startswith("-")), "")


def _quiet_broken_pipe() -> int:
    """Exit status after the reader of stdout went away (`gflow score ... | head`)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gflow` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or _debug_env()  # accepted anywhere on the line
    argv = [word for word in argv if word != "--debug"]
    prefix = f"gflow {_command(argv)}".rstrip()
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv  # what `gflow train --nproc N` hands to its N processes
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write(f"\n{prefix}: interrupted\n")
        return INTERRUPTED
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (GflowError, ValueError, OSError, FloatingPointError, MemoryError, RuntimeError) as err:
        if debug or (isinstance(err, RuntimeError) and not _out_of_memory(err)):
            raise
        sys.stdout.flush()
        sys.stderr.write(f"{prefix}: error: {describe_error(err)}\n")
        return err.exit_code if isinstance(err, GflowError) else 2


if __name__ == "__main__":
    raise SystemExit(main())

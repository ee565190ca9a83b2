"""`gflow bench NAME`: run a built-in benchmark and write its results under --out."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from gflow.cli import Parser, output_folder


def _common(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: short)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when available), cpu or cuda (default auto)"
    )
    parser.add_argument("--out", default=f"runs/bench-{name}", help="results folder")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: small batches run fastest on one)",
    )


def register(subparsers: Any) -> None:
    """Add `gflow bench` (its benchmarks fill in when it is parsed)."""
    subparsers.add_parser(
        "bench", help="run a built-in benchmark", description=__doc__, populate=_add_benchmarks
    )


def _add_benchmarks(parser: Parser) -> None:
    """One sub-command per built-in benchmark, with its own and the shared options."""
    from gflow.bench import BENCHMARKS
    from gflow.cli.envs import add_env_options
    from gflow.envs.registry import ENVIRONMENTS

    names = parser.add_subparsers(
        dest="benchmark", required=True, metavar="NAME", parser_class=Parser
    )
    for path in BENCHMARKS:
        module = importlib.import_module(path)
        sub = names.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        _common(sub, module.NAME)
        if module.ENV is not None:
            add_env_options(sub, ENVIRONMENTS[module.ENV])
        module.add_arguments(sub)
        sub.set_defaults(run=_runner(module))


def _runner(module: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from gflow.cli.train import setup_runtime

        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        setup_runtime(args)
        output_folder(args.out)
        module.run(args)
        return 0

    return run

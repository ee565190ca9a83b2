"""`gflow check-env module:Class`: build a user's environment and run the checker on it."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `check-env` subcommand."""
    p = subparsers.add_parser(
        "check-env",
        help="check that an environment keeps the Env contract",
        description="Import module:Class (a module on the path or a .py file; the current "
        "directory is searched first), build it with --arg values and check it on random "
        "trajectories (and every state when it is enumerable). Exit 0 when it passes, 1 when "
        "the check fails, 2 on bad usage.",
    )
    p.add_argument("target", metavar="module:Class", help="e.g. gflow.envs.hypergrid:HyperGrid")
    p.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constructor keyword argument (repeatable); values are Python literals, else strings",
    )
    p.add_argument("--trajectories", type=int, default=64, help="random trajectories (64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random trajectories (0)")
    p.add_argument("--max-steps", type=int, default=None, help="bound on trajectory length")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build the environment, check it, print OK and a summary or the failure; exit status."""
    from gflow.checker import EnvCheckError, check_env
    from gflow.plugins import load_env, parse_options

    env = load_env(args.target, parse_options(args.arg))
    try:
        report = check_env(
            env, n_trajectories=args.trajectories, seed=args.seed, max_steps=args.max_steps
        )
    except EnvCheckError as err:
        print(f"FAIL {err}")
        return 1
    print(f"OK {report.summary()}")
    return 0

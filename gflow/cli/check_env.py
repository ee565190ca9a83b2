"""`gflow check-env module:Class`: build a user's environment and run the checker on it."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from gflow.cli import UsageError


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

    cls = load_class(args.target)
    kwargs = parse_kwargs(args.arg)
    try:
        env = cls(**kwargs)
    except TypeError as err:
        raise UsageError(f"cannot build {args.target} with {kwargs}: {err}") from None
    try:
        report = check_env(
            env, n_trajectories=args.trajectories, seed=args.seed, max_steps=args.max_steps
        )
    except EnvCheckError as err:
        print(f"FAIL {err}")
        return 1
    print(f"OK {report.summary()}")
    return 0


def load_class(target: str) -> type:
    """The class named by `module:Class` or `path/to/file.py:Class`."""
    module_name, sep, class_name = target.rpartition(":")
    if not sep or not module_name or not class_name:
        raise UsageError(f"expected module:Class, got {target!r}")
    if module_name.endswith(".py"):
        module = _load_file(Path(module_name))
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except (ImportError, SyntaxError) as err:
            raise UsageError(f"cannot import {module_name}: {err}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise UsageError(f"{module_name} has no class {class_name}")
    return cls


def _load_file(path: Path) -> Any:
    """Import a Python file as a module."""
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except (ImportError, SyntaxError) as err:
        raise UsageError(f"cannot import {path}: {err}") from None
    return module


def parse_kwargs(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings to keyword arguments; values parse as Python literals, else strings."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--arg expects KEY=VALUE, got {pair!r}")
        try:
            kwargs[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            kwargs[key] = text
    return kwargs

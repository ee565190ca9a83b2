"""Plug-ins from the user's own code, resolved one way everywhere: ``module:name`` (a module on
the path; the current directory is searched first) or ``path/to/file.py:name``, with options
given as ``KEY=VALUE`` strings (values parse as Python literals, else stay strings)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from gflow.env import Env
from gflow.errors import UsageError
from gflow.objectives.base import OBJECTIVES, Objective, as_objective, get_objective, options_for


def is_target(text: str) -> bool:
    """Whether `text` names a plug-in (``module:name`` or ``file.py:name``), not a built-in."""
    module, sep, name = text.rpartition(":")
    return bool(sep and module and name)


def load(target: str, what: str = "object") -> Any:
    """The object named by ``module:name`` or ``path/to/file.py:name``; `what` it should be
    (class, function, ...) words the errors."""
    module_name, sep, name = target.rpartition(":")
    if not sep or not module_name or not name:
        label = what.capitalize()
        raise UsageError(f"expected module:{label} or path/to/file.py:{label}, got {target!r}")
    module = _load_file(Path(module_name)) if module_name.endswith(".py") else _import(module_name)
    if not hasattr(module, name):
        raise UsageError(f"{module_name} has no {what} {name}")
    return getattr(module, name)


def _import(module_name: str) -> Any:
    """Import a module by name, the current directory searched first."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except (ImportError, SyntaxError) as err:
        raise UsageError(f"cannot import {module_name}: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's module failed while importing
        raise UsageError(
            f"cannot import {module_name}: it raised {type(err).__name__}: {err}"
        ) from err


def _load_file(path: Path) -> Any:
    """Import a Python file as a module (once per file: the same path gives the same module),
    its folder searched first for the modules it imports, as when it runs as a script."""
    if path.is_dir():
        raise UsageError(f"{path} is a directory, expected a Python file")
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    key = f"gflow_plugin_{abs(hash(str(path.resolve())))}_{path.stem}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except (ImportError, SyntaxError) as err:
        del sys.modules[key]
        raise UsageError(f"cannot import {path}: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's file failed while importing
        del sys.modules[key]
        raise UsageError(f"cannot import {path}: it raised {type(err).__name__}: {err}") from err
    return module


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to keyword arguments; values parse as Python literals, else strings."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--arg expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return options


def load_env(target: str, options: Mapping[str, Any] | None = None) -> Env:
    """The environment built by the class or function `target` names, called with `options`."""
    factory = load(target, "class")
    if not callable(factory):
        raise UsageError(f"{target} is not a class or function")
    try:
        env = factory(**(options or {}))
    except Exception as err:  # noqa: BLE001 - whatever the user's constructor raises, named
        raise UsageError(
            f"cannot build {target} with {dict(options or {})}: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(env, Env):
        raise UsageError(f"{target} built a {type(env).__name__}, not a gflow.env.Env")
    return env


def load_objective(target: str) -> Objective:
    """The objective `target` names: an `Objective` (say, from the `gflow.objectives.objective`
    decorator) or a loss function of Trajectories that needs only the always-scored fields."""
    thing = load(target, "loss")
    if not callable(thing):
        raise UsageError(f"{target} is not a loss function or an Objective")
    return as_objective(thing, None if isinstance(thing, Objective) else target.rpartition(":")[2])


def resolve_objective(name: str, values: Mapping[str, Any] | None = None) -> Objective:
    """A registered objective by name, built with the entries of `values` that are its options
    (front ends pass every option they hold), or a plug-in objective by target."""
    if is_target(name) and name not in OBJECTIVES:
        return load_objective(name)
    return get_objective(name, **options_for(name, values or {}))


MoleculeReward = Callable[[Sequence[Any]], torch.Tensor]
"""A batched reward: RDKit molecules in, a (n,) tensor of non-negative rewards out."""


def checked_reward(fn: Callable[[Sequence[Any]], Any], name: str) -> MoleculeReward:
    """`fn` with its output checked: one finite, non-negative float per molecule, else a clear
    error naming `name`."""

    def reward(mols: Sequence[Any]) -> torch.Tensor:
        values = fn(mols)
        try:
            out = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"reward {name} returned {type(values).__name__}: {err}") from None
        if len(out) != len(mols):
            raise ValueError(f"reward {name} returned {len(out)} values for {len(mols)} molecules")
        bad = out.isnan() | (out < 0) | out.isinf()
        if bad.any():
            i = int(bad.nonzero()[0])
            value = float(out[i])
            what = "NaN" if math.isnan(value) else str(value)
            raise ValueError(
                f"reward {name} returned {what} for molecule {i}; rewards must be finite and >= 0"
            )
        return out

    reward.__name__ = f"checked_{getattr(fn, '__name__', 'reward')}"
    return reward


def load_reward(target: str) -> MoleculeReward:
    """The batched molecule reward `target` names, with its output checked."""
    fn = load(target, "function")
    if not callable(fn):
        raise UsageError(f"{target} is not a function")
    return checked_reward(fn, target)

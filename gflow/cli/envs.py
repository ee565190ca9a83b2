"""Command-line adapters of the environment registry: one sub-command per registered
environment with a flag per option, plus a user's environment named ``module:Class`` or
``path/to/file.py:Class`` (its constructor options as ``--arg KEY=VALUE``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gflow.env import Env
    from gflow.envs.registry import EnvSpec, Option

PLUGIN = "module:Class"
"""How the plug-in sub-command shows in help; any ``module:name`` or ``file.py:name`` uses it."""


class _WithPlugins(dict):
    """Sub-command parsers by name, where any plug-in target selects the plug-in parser."""

    def __contains__(self, key: object) -> bool:
        from gflow.plugins import is_target  # here: gflow.plugins imports torch

        return dict.__contains__(self, key) or (isinstance(key, str) and is_target(key))

    def __getitem__(self, key: str) -> argparse.ArgumentParser:
        from gflow.plugins import is_target

        if not dict.__contains__(self, key) and is_target(key):
            key = PLUGIN
        return dict.__getitem__(self, key)


def add_option(group: Any, option: Option) -> None:
    """One registry option as a --flag on an argparse parser or group."""
    flag = "--" + option.name.replace("_", "-")
    if option.default is False and option.type is None:
        group.add_argument(flag, action="store_true", help=option.help)
        return
    kind = option.type or (type(option.default) if option.default is not None else str)
    group.add_argument(
        flag, type=kind, default=option.default, choices=option.choices, help=option.help
    )


def add_env_options(parser: argparse.ArgumentParser, spec: EnvSpec) -> None:
    """The options of environment `spec` as flags, in their own group."""
    group = parser.add_argument_group(f"{spec.name} options")
    for option in spec.options:
        add_option(group, option)


def env_options(args: argparse.Namespace, spec: EnvSpec) -> dict[str, Any]:
    """The environment's options from parsed flags."""
    return spec.pick(vars(args))


def add_environment_parsers(
    parser: argparse.ArgumentParser,
    parents: list[argparse.ArgumentParser],
    parser_class: type[argparse.ArgumentParser],
    **defaults: Any,
) -> None:
    """Sub-commands ENV of `parser`: one per registered environment with its options and the
    `parents`' options, and one for a user's environment class; `defaults` on each."""
    from gflow.envs.registry import ENVIRONMENTS

    envs = parser.add_subparsers(
        dest="env", required=True, metavar="ENV", parser_class=parser_class
    )
    taken = {flag for p in parents for action in p._actions for flag in action.option_strings}
    for name, spec in ENVIRONMENTS.items():
        own = argparse.ArgumentParser(add_help=False)
        add_env_options(own, spec)
        clash = sorted(taken & {flag for action in own._actions for flag in action.option_strings})
        if clash:
            raise ValueError(
                f"gflow.envs.registry: environment {name!r} defines {', '.join(clash)}, which "
                f"`{parser.prog}` uses; give the environment option another name"
            )
        sub = envs.add_parser(name, help=spec.help, description=spec.help, parents=[own, *parents])
        sub.set_defaults(spec=spec, **defaults)
    text = "a user's environment: module:Class or path/to/file.py:Class (or a function)"
    plugin = envs.add_parser(PLUGIN, help=text, description=text, parents=parents)
    plugin.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constructor keyword argument (repeatable); values are Python literals, else strings",
    )
    plugin.set_defaults(spec=None, **defaults)
    envs.choices = envs._name_parser_map = _WithPlugins(envs._name_parser_map)


def env_from_args(args: argparse.Namespace) -> tuple[Env, dict[str, Any]]:
    """The environment the parsed sub-command and options describe, and how the run records it
    (name and options)."""
    from gflow.plugins import load_env, parse_options

    if args.spec is None:
        options = parse_options(args.arg)
        return load_env(args.env, options), {"name": args.env, "options": options}
    options = env_options(args, args.spec)
    return args.spec(device=args.device, **options), {"name": args.spec.name, "options": options}


def env_label(args: argparse.Namespace) -> str:
    """A short, file-name-safe name of the parsed environment: the registry name, or the class
    name of a plug-in."""
    return args.env.rpartition(":")[2]

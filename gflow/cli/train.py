"""`gflow train ENV [env options] [training options]`: train a GFlowNet, write OUT/metrics.json."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Any

import torch

from gflow.checkpoint import seed_everything
from gflow.cli import Parser
from gflow.device import resolve_device
from gflow.envs.registry import ENVIRONMENTS, EnvSpec
from gflow.objectives import OBJECTIVE_NAMES
from gflow.training import INCOMPLETE_OK, METRICS, TrainConfig, build_objective, build_policy, train


def _training_options() -> argparse.ArgumentParser:
    """The options every environment shares (added to each environment's parser)."""
    p = argparse.ArgumentParser(add_help=False)
    d = TrainConfig()
    g = p.add_argument_group("training options")
    g.add_argument(
        "--objective", choices=OBJECTIVE_NAMES, default=d.objective, help="loss (default tb)"
    )
    g.add_argument(
        "--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})"
    )
    g.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0)")
    g.add_argument("--out", help="output folder (default runs/ENV-OBJECTIVE-seedSEED)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="trajectories per step")
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate of the network")
    g.add_argument("--lr-log-z", type=float, default=d.lr_log_z, help="learning rate of log Z")
    g.add_argument("--epsilon", type=float, default=d.epsilon, help="uniform exploration share")
    g.add_argument("--temperature", type=float, default=d.temperature, help="sampling temperature")
    g.add_argument("--hidden", type=int, default=d.hidden, help="MLP width")
    g.add_argument("--layers", type=int, default=d.layers, help="MLP hidden layers")
    g.add_argument("--learn-pb", action="store_true", help="learn the backward policy")
    g.add_argument("--subtb-lambda", type=float, default=d.subtb_lambda, help="SubTB lambda")
    g.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help=f"cut rollouts after this many steps (objectives {', '.join(INCOMPLETE_OK)})",
    )
    g.add_argument(
        "--op-lambda", type=float, default=d.op_lambda, help="order-loss weight (op-db, op-subtb)"
    )
    g.add_argument("--op-pairwise", action="store_true", help="pairwise order loss (op-*)")
    g.add_argument(
        "--op-backward-kl", type=float, default=d.op_backward_kl, help="KL(uniform||P_B) weight"
    )
    g.add_argument(
        "--top-k", type=int, default=d.top_k, help="track the best K distinct objects (0: off)"
    )
    g.add_argument(
        "--replay-capacity", type=int, default=d.replay_capacity, help="replay buffer size (0: off)"
    )
    g.add_argument(
        "--replay-fraction", type=float, default=d.replay_fraction, help="replayed share"
    )
    g.add_argument(
        "--checkpoint-every", type=int, default=d.checkpoint_every, help="0: at end only"
    )
    g.add_argument("--eval-every", type=int, default=d.eval_every, help="exact evaluation period")
    g.add_argument("--log-every", type=int, default=d.log_every, help="loss logging period")
    g.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda if any"
    )
    g.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch's default)"
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.pt, which must exist "
        "(a run also continues by itself when that file exists and its configuration matches)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def register(subparsers: Any) -> None:
    """Add `train` with one sub-command per registered environment."""
    parser = subparsers.add_parser(
        "train",
        help="train a GFlowNet on an environment",
        description="Train a GFlowNet; writes OUT/metrics.json, OUT/checkpoint.pt and OUT/tb.",
    )
    envs = parser.add_subparsers(dest="env", required=True, metavar="ENV", parser_class=Parser)
    common = _training_options()
    taken = {flag for action in common._actions for flag in action.option_strings}
    for name, spec in ENVIRONMENTS.items():
        own = argparse.ArgumentParser(add_help=False)
        spec.add_arguments(own.add_argument_group(f"{name} options"))
        clash = sorted(taken & {flag for action in own._actions for flag in action.option_strings})
        if clash:
            raise ValueError(
                f"gflow.envs.registry: environment {name!r} defines {', '.join(clash)}, which "
                "`gflow train` uses for training; give the environment option another name"
            )
        env = envs.add_parser(name, help=spec.help, description=spec.help, parents=[own, common])
        env.set_defaults(run=run, spec=spec, env_options=[a.dest for a in own._actions])


def config_from_args(args: argparse.Namespace, **fixed: Any) -> TrainConfig:
    """A TrainConfig from parsed options: each field from the option of the same name (the
    default where there is none), then `fixed`."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig(**(values | fixed))


def run(args: argparse.Namespace) -> int:
    """Build the environment and policy, train, print a one-line summary."""
    spec: EnvSpec = args.spec
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = str(resolve_device(args.device))
    out = args.out or f"runs/{spec.name}-{args.objective}-seed{args.seed}"
    config = config_from_args(args, out=out)
    seed_everything(config.seed)
    env = spec.build(args)
    objective = build_objective(config)
    policy = build_policy(env, config)
    info = {"name": spec.name, "options": {k: getattr(args, k) for k in args.env_options}}
    try:
        resume = True if args.resume else None
        m = train(env, policy, objective, config, env_info=info, quiet=args.quiet, resume=resume)
    except FloatingPointError as err:
        print(f"gflow train: error: {err}", file=sys.stderr)
        return 1
    extra = f", exact TV {m['exact_tv']:.4g}" if "exact_tv" in m else ""
    if m.get("top_k_reward") is not None:
        extra += f", top-{config.top_k} mean reward {m['top_k_reward']:.4g}"
        extra += f" ({m['unique_objects']} distinct objects)"
    print(
        f"{spec.name} {objective.name}: {m['steps']} steps in {m['seconds']:.1f} s "
        f"({m['iterations_per_second']:.1f} it/s, {m['trajectories_per_second']:.0f} traj/s), "
        f"loss {m['final_loss']:.4g}{extra} -> {out}/{METRICS}"
    )
    return 0

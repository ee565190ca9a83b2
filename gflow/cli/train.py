"""`gflow train ENV [env options] [training options]`: train a GFlowNet, write OUT/metrics.json."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from gflow.cli import Parser
from gflow.cli.envs import add_environment_parsers, env_from_args, env_label
from gflow.cli.pool import Session, add_pool_options
from gflow.errors import UsageError

if TYPE_CHECKING:
    from gflow.objectives import Objective
    from gflow.training import ModelConfig, TrainConfig


def _training_options() -> argparse.ArgumentParser:
    """The options every environment shares (added to each environment's parser)."""
    from gflow.objectives import OBJECTIVES
    from gflow.training import ModelConfig, TrainConfig

    incomplete_ok = [name for name, spec in OBJECTIVES.items() if spec.incomplete_ok]

    p = argparse.ArgumentParser(add_help=False)
    d, m = TrainConfig(), ModelConfig()
    g = p.add_argument_group("training options")
    g.add_argument(
        "--objective",
        default="tb",
        help=f"loss: one of {', '.join(OBJECTIVES)}, or a user's loss as module:fn or "
        "path/to/file.py:fn (default tb)",
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
    g.add_argument("--hidden", type=int, default=m.hidden, help="network width")
    g.add_argument("--layers", type=int, default=m.layers, help="network hidden layers")
    g.add_argument("--learn-pb", action="store_true", help="learn the backward policy")
    g.add_argument("--subtb-lambda", type=float, default=0.9, help="SubTB lambda")
    g.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help=f"cut rollouts after this many steps (objectives {', '.join(incomplete_ok)})",
    )
    g.add_argument(
        "--op-lambda", type=float, default=0.1, help="order-loss weight (op-db, op-subtb)"
    )
    g.add_argument("--op-pairwise", action="store_true", help="pairwise order loss (op-*)")
    g.add_argument("--op-backward-kl", type=float, default=0.0, help="KL(uniform||P_B) weight")
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
    g.add_argument(
        "--restart",
        action="store_true",
        help="move an existing OUT aside to OUT.old-DATE-TIME (deleting nothing), start afresh",
    )
    g.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="train on N processes of this machine (data-parallel, torch.distributed; the "
        "batch is split across them); the same as torchrun --nproc-per-node N -m gflow train",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_pool_options(p)
    return p


def register(subparsers: Any) -> None:
    """Add `train` (its environments fill in when it is parsed)."""
    subparsers.add_parser(
        "train",
        help="train a GFlowNet on an environment",
        description="Train a GFlowNet; writes OUT/metrics.json, OUT/checkpoint.pt and OUT/tb.",
        populate=_add_environments,
    )


def _add_environments(parser: Parser) -> None:
    """One sub-command per registered environment, with its options and the training ones."""
    add_environment_parsers(parser, [_training_options()], Parser, run=run)


def setup_runtime(args: argparse.Namespace) -> None:
    """Torch's thread count and the device from --threads and --device
    (`gflow.device.setup_runtime`); `args.device` becomes the resolved device."""
    from gflow.device import setup_runtime as setup

    args.device = str(setup(args.device, args.threads))


def config_from_args(args: argparse.Namespace, **fixed: Any) -> TrainConfig:
    """A TrainConfig from parsed options: each field from the option of the same name (the
    default where there is none), then `fixed`."""
    from gflow.training import TrainConfig

    return TrainConfig(**(_fields_from(args, TrainConfig) | fixed))


def model_from_args(args: argparse.Namespace) -> ModelConfig:
    """The policy network's settings from the options of the same names."""
    from gflow.training import ModelConfig

    return ModelConfig(**_fields_from(args, ModelConfig))


def objective_from_args(args: argparse.Namespace) -> Objective:
    """The objective --objective names (registered, with its options from the command line,
    or a user's loss as module:fn or path/to/file.py:fn)."""
    from gflow.plugins import resolve_objective

    return resolve_objective(args.objective, vars(args))


def _fields_from(args: argparse.Namespace, kind: type) -> dict[str, Any]:
    """The dataclass `kind`'s fields that the options set (None: the field's default)."""
    names = (f.name for f in fields(kind))
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def run(args: argparse.Namespace) -> int:
    """Build the environment and policy, train, print a one-line summary; with --nproc N > 1
    (outside torchrun) launch N processes that do it together (`gflow.distributed`)."""
    from gflow import distributed

    if not distributed.launched():
        if args.nproc != 1:
            from gflow.device import resolve_device

            resolve_device(args.device)  # errors before any process starts
            distributed.batch_share(args.batch_size, 0, max(args.nproc, 1))
            distributed.launch(args.nproc, args.argv)
            return 0
        return _train(args, ranked=False)
    world = int(os.environ["WORLD_SIZE"])
    if args.nproc not in (1, world):
        raise UsageError(f"--nproc {args.nproc} under torchrun with {world} processes: give one")
    finished = False
    try:
        code = _train(args, ranked=True)
        finished = True
        return code
    finally:
        distributed.shutdown(finished)


def _train(args: argparse.Namespace, ranked: bool) -> int:
    """Train in this process: alone, or as one rank of a torchrun group (`ranked`)."""
    from gflow import distributed
    from gflow.checkpoint import seed_everything
    from gflow.training import METRICS, Trainer, build_policy, start_or_resume

    setup_runtime(args)
    if ranked:
        import torch

        args.device = str(distributed.init(torch.device(args.device)))
    objective = objective_from_args(args)
    name = env_label(args)
    out = args.out or f"runs/{name}-{objective.name}-seed{args.seed}"
    config = config_from_args(args, out=out)
    seed_everything(config.seed)
    env, info = env_from_args(args)
    policy = build_policy(env, model_from_args(args), config.device)
    resume = True if args.resume else None
    kind = distributed.DistributedTrainer if ranked else Trainer
    lead = not ranked or distributed.rank() == 0
    session = Session(args, env, out, ranked, info["name"])
    try:
        trainer = session.trainer(kind, env, policy, objective, config, info)
        quiet = args.quiet or not lead
        callbacks = session.callbacks
        m = start_or_resume(trainer, resume, quiet, callbacks=callbacks, restart=args.restart)
    finally:
        session.close()
    if not lead:
        return 0
    extra = f", exact TV {m['exact_tv']:.4g}" if "exact_tv" in m else ""
    if m.get("top_k_reward") is not None:
        extra += f", top-{config.top_k} mean reward {m['top_k_reward']:.4g}"
        extra += f" ({m['unique_objects']} distinct objects)"
    print(
        f"{name} {objective.name}: {m['steps']} steps in {m['seconds']:.1f} s "
        f"({m['iterations_per_second']:.1f} it/s, {m['trajectories_per_second']:.0f} traj/s), "
        f"loss {m['final_loss']:.4g}{extra} -> {out}/{METRICS}"
    )
    return 0

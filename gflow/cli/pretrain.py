"""`gflow pretrain ENV [env options] [training options] [outcome options]`: reward-free
pre-training of an outcome-conditioned GFlowNet (OC-GFN); writes OUT/checkpoint.pt, whose
`gflow finetune` turns into a sampler for a reward."""

from __future__ import annotations

import argparse
from typing import Any

from gflow.cli import Parser, UsageError
from gflow.cli.envs import add_environment_parsers, env_from_args, env_label
from gflow.cli.train import _training_options, config_from_args, model_from_args, setup_runtime


def _outcome_options() -> argparse.ArgumentParser:
    """Options of the outcome conditioning and of the contrastive batches."""
    from gflow.outcome import LOG_FLOOR
    from gflow.pretrain import PretrainOptions

    p = argparse.ArgumentParser(add_help=False)
    d = PretrainOptions()
    g = p.add_argument_group("outcome options (--objective picks the balance loss: db, subtb, tb)")
    g.add_argument("--teleport", action="store_true", help="outcome teleportation (Pan et al.)")
    g.add_argument("--no-positives", action="store_true", help="no backward-traced positives")
    g.add_argument("--no-swapped", action="store_true", help="no positives moved to other targets")
    g.add_argument("--hindsight", action="store_true", help="add hindsight-relabelled trajectories")
    g.add_argument(
        "--explore", type=int, default=d.explore, help="uniform exploration rollouts per step"
    )
    g.add_argument(
        "--log-floor", type=float, default=LOG_FLOOR, help=f"log R of a miss (default {LOG_FLOOR})"
    )
    g.add_argument("--pool-capacity", type=int, default=10_000, help="outcome pool size")
    g.add_argument(
        "--no-enumerate",
        action="store_true",
        help="draw targets from explored outcomes even when the environment is enumerable",
    )
    return p


def register(subparsers: Any) -> None:
    """Add `pretrain` (its environments fill in when it is parsed)."""
    subparsers.add_parser(
        "pretrain",
        help="reward-free pre-training of an outcome-conditioned GFlowNet",
        description="Pre-train an outcome-conditioned GFlowNet (OC-GFN) to reach any object; "
        "writes OUT/metrics.json, OUT/checkpoint.pt and OUT/tb.",
        populate=_add_environments,
    )


def _add_environments(parser: Parser) -> None:
    """One sub-command per registered environment, with its, training and outcome options."""
    parents = [_training_options(), _outcome_options()]
    add_environment_parsers(parser, parents, Parser, run=run, objective="db")


def prepare(args: argparse.Namespace) -> None:
    """Refuse options that do not apply; thread count and device from the shared options."""
    if args.replay_capacity or args.max_steps is not None:
        raise UsageError("--replay-capacity and --max-steps do not apply here")
    setup_runtime(args)


def run(args: argparse.Namespace) -> int:
    """Build the outcome environment and conditional policy, pre-train, print a summary."""
    from gflow.checkpoint import seed_everything
    from gflow.objectives.outcome import BASES, outcome_objective
    from gflow.outcome import outcome_env
    from gflow.pretrain import PretrainOptions, PretrainTrainer
    from gflow.training import METRICS, build_policy, start_or_resume

    prepare(args)
    if args.objective not in BASES:
        raise UsageError(f"--objective must be one of {', '.join(BASES)}, got {args.objective}")
    objective = outcome_objective(args.objective, args.teleport, args.subtb_lambda)
    options = PretrainOptions(
        positives=not args.no_positives,
        swapped=not (args.no_swapped or args.no_positives),
        hindsight=args.hindsight,
        explore=args.explore,
    )
    name = env_label(args)
    out = args.out or f"runs/{name}-{objective.name}-seed{args.seed}"
    config = config_from_args(args, out=out)
    seed_everything(config.seed)
    base, info = env_from_args(args)
    enumerate_outcomes = base.is_enumerable() and not args.no_enumerate
    env = outcome_env(
        base,
        log_floor=args.log_floor,
        capacity=args.pool_capacity,
        enumerate_outcomes=enumerate_outcomes,
    )
    policy = build_policy(env, model_from_args(args), config.device)
    info["outcome"] = {
        "log_floor": args.log_floor,
        "pool_capacity": args.pool_capacity,
        "enumerate": enumerate_outcomes,
    }
    trainer = PretrainTrainer(env, policy, objective, config, options, info)
    resume = True if args.resume else None
    m = start_or_resume(trainer, resume, args.quiet, restart=args.restart)
    extra = ""
    if "exact_success" in m:
        extra = f", exact success {m['exact_success']:.4g} (min {m['exact_success_min']:.4g})"
    print(
        f"{name} {objective.name}: {m['steps']} steps in {m['seconds']:.1f} s "
        f"({m['iterations_per_second']:.1f} it/s), loss {m['final_loss']:.4g}{extra} "
        f"-> {out}/{METRICS}"
    )
    return 0

"""`gflow finetune ENV --from CHECKPOINT --reward NAME [env options] [training options]`: turn a
pre-trained outcome-conditioned GFlowNet into a sampler for a reward, through the amortized
marginal over outcomes, then the ordinary objective (`--objective`, default tb)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gflow.cli import Parser, UsageError
from gflow.cli.envs import add_env_options, env_from_args
from gflow.cli.pretrain import prepare
from gflow.cli.train import _training_options, config_from_args, objective_from_args

if TYPE_CHECKING:
    from gflow.env import Env, States
    from gflow.envs.registry import EnvSpec
    from gflow.policies.base import Policy

REWARDS = {"env": "the environment's own reward, as its options set it"}
"""Downstream rewards by name, for environments without a --reward option of their own."""


def _finetune_options(reward: bool) -> argparse.ArgumentParser:
    """Where the pre-trained model comes from, the reward (unless the environment has its own
    --reward option, which then names the downstream reward), and the amortized predictor."""
    from gflow.finetune import FinetuneOptions

    p = argparse.ArgumentParser(add_help=False)
    d = FinetuneOptions()
    g = p.add_argument_group("fine-tuning options")
    g.add_argument(
        "--from", dest="source", required=True, help="pre-training checkpoint (file or folder)"
    )
    if reward:
        names = ", ".join(f"{k}: {v}" for k, v in REWARDS.items())
        g.add_argument("--reward", choices=tuple(REWARDS), default="env", help=names)
    g.add_argument(
        "--distill-steps",
        type=int,
        default=d.distill_steps,
        help=f"steps of the amortized loss before --objective (default {d.distill_steps})",
    )
    g.add_argument("--samples", type=int, default=d.samples, help="outcomes drawn per transition")
    g.add_argument("--q-temperature", type=float, default=d.q_temperature, help="Q temperature")
    g.add_argument("--q-epsilon", type=float, default=d.q_epsilon, help="uniform share of Q draws")
    g.add_argument("--q-hidden", type=int, default=d.q_hidden, help="width of the Q network")
    g.add_argument(
        "--candidates",
        type=int,
        default=1024,
        help="most candidate outcomes for Q: every object of an enumerable environment, else the "
        "pre-training's outcome pool, cut to a fixed random subset beyond this (default 1024)",
    )
    return p


def register(subparsers: Any) -> None:
    """Add `finetune` (its environments fill in when it is parsed)."""
    subparsers.add_parser(
        "finetune",
        help="fine-tune a pre-trained outcome-conditioned GFlowNet on a reward",
        description="Fine-tune a `gflow pretrain` checkpoint on a reward; writes "
        "OUT/metrics.json, OUT/checkpoint.pt and OUT/tb.",
        populate=_add_environments,
    )


def _add_environments(parser: Parser) -> None:
    """One sub-command per registered environment, with its, training and fine-tuning options."""
    from gflow.envs.registry import ENVIRONMENTS

    parser_class: type[argparse.ArgumentParser] = Parser  # parents below are plain parsers
    envs = parser.add_subparsers(
        dest="env", required=True, metavar="ENV", parser_class=parser_class
    )
    common = _training_options()
    for name, spec in ENVIRONMENTS.items():
        own = argparse.ArgumentParser(add_help=False)
        add_env_options(own, spec)
        tuning = _finetune_options(reward=all(o.name != "reward" for o in spec.options))
        env = envs.add_parser(
            name, help=spec.help, description=spec.help, parents=[own, common, tuning]
        )
        env.set_defaults(run=run, spec=spec, hidden=None, layers=None)


def load_pretrained(source: str, env: Env, env_name: str) -> tuple[Policy, dict[str, Any]]:
    """The pre-trained OC-GFN of a checkpoint (any policy class), checked against the
    environment."""
    from gflow.checkpoint import load_checkpoint
    from gflow.policies.registry import restore_policy
    from gflow.training import CHECKPOINT

    path = Path(source)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"--from: no checkpoint at {path}")
    state = load_checkpoint(path, hint="pass --from an intact `gflow pretrain` checkpoint")
    name = state.get("objective", {}).get("name", "")
    if not name.startswith("oc-"):
        raise UsageError(f"--from: {path} is not a `gflow pretrain` checkpoint ({name!r})")
    if name.startswith("oc-tb"):
        raise UsageError(f"--from: {path} was pre-trained with TB, which learns no state flows")
    if state["env"]["name"] != env_name:
        trained = state["env"]["name"]
        raise UsageError(f"--from: {path} was pre-trained on {trained}, not {env_name}")
    spec = state.get("policy_spec")
    if spec is None:
        raise UsageError(f"--from: {path} does not record how its policy was built")
    cond_dim = spec["options"].get("cond_dim", 0)
    if cond_dim != env.feature_dim:
        raise UsageError(
            f"--from: outcome codes of width {cond_dim} do not fit {env_name}'s features "
            f"({env.feature_dim}); use the environment options of the pre-training"
        )
    try:
        policy = restore_policy(state, env, env.device, str(path))
    except ValueError as err:
        raise UsageError(f"--from: {err}") from None
    return policy, state


def candidate_outcomes(env: Env, state: dict[str, Any], cap: int) -> States:
    """Every object (enumerable environments) or the checkpoint's outcome pool, cut to a fixed
    random subset of `cap` objects beyond that."""
    import torch

    from gflow.outcome import terminal_objects

    if cap < 1:
        raise UsageError(f"--candidates must be >= 1, got {cap}")
    if env.is_enumerable():
        candidates = terminal_objects(env)
    else:
        data = state["outcome_pool"]["states"]
        if data is None:
            raise UsageError("--from: the checkpoint's outcome pool is empty")
        candidates = env.states_from_data(data)
    n = env.size(candidates)
    if n <= cap:
        return candidates
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:cap]
    return env.select(candidates, pick.to(env.device))


def run(args: argparse.Namespace) -> int:
    """Load the pre-trained model, distill the marginal for the reward, fine-tune, summarize."""
    from gflow.checkpoint import seed_everything
    from gflow.finetune import FinetuneOptions, FinetuneTrainer, build_model
    from gflow.training import METRICS, ModelConfig, start_or_resume

    spec: EnvSpec = args.spec
    prepare(args)
    seed_everything(args.seed)
    env, info = env_from_args(args)
    pretrained, state = load_pretrained(args.source, env, spec.name)
    sizes = pretrained.spec.options
    for option in ("hidden", "layers"):
        given = getattr(args, option)
        if given is not None and given != sizes[option]:
            raise UsageError(
                f"--{option} {given} does not match the checkpoint {args.source}, whose network "
                f"has {option} {sizes[option]}; leave --{option} out to use the checkpoint's"
            )
    model = ModelConfig(
        hidden=args.hidden or sizes["hidden"],
        layers=args.layers or sizes["layers"],
        learn_pb=args.learn_pb,
        heads=sizes.get("heads", ModelConfig.heads),
    )
    options = FinetuneOptions(
        distill_steps=args.distill_steps,
        samples=args.samples,
        q_temperature=args.q_temperature,
        q_epsilon=args.q_epsilon,
        q_hidden=args.q_hidden,
    )
    if options.distill_steps > args.steps:
        raise UsageError(f"--distill-steps {options.distill_steps} exceeds --steps {args.steps}")
    out = args.out or f"runs/{spec.name}-finetune-{args.reward}-seed{args.seed}"
    config = config_from_args(args, out=out)
    candidates = candidate_outcomes(env, state, args.candidates)
    marginal = build_model(env, pretrained, options, model, config.device)
    info |= {"reward": str(args.reward), "pretrained": str(Path(args.source).resolve())}
    objective = objective_from_args(args)
    trainer = FinetuneTrainer(
        env, marginal, objective, config, options, env.featurize, candidates, info
    )
    resume = True if args.resume else None
    m = start_or_resume(trainer, resume, args.quiet, restart=args.restart)
    extra = f", exact TV {m['exact_tv']:.4g}" if "exact_tv" in m else ""
    if m.get("top_k_reward") is not None:
        extra += f", top-{config.top_k} mean reward {m['top_k_reward']:.4g}"
    print(
        f"{spec.name} finetune {args.reward} ({options.distill_steps} amortized + "
        f"{m['steps'] - options.distill_steps} {objective.name} steps) in {m['seconds']:.1f} s, "
        f"loss {m['final_loss']:.4g}{extra} -> {out}/{METRICS}"
    )
    return 0

"""Checks where numbers enter training: rewards (finite and positive, checked as they are
computed), policy logits (no NaN where an action is legal) and losses (an overflow caused by the
reward scale told apart from a diverging policy). Each failure is a one-line error naming the
culprit; `at_step` names the training step."""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch

from gflow.env import Env, States
from gflow.errors import GflowError

SCALE_SLACK = 1e3
"""A log reward beyond sqrt(largest float) / SCALE_SLACK overflows squared-error losses by
itself (its square, summed over up to a million terms, exceeds the largest float)."""

E = TypeVar("E", bound=Exception)


class RewardError(GflowError, ValueError):
    """A reward training cannot use (NaN, infinite, negative or zero), naming the reward and the
    object that got it."""


class LogitsError(FloatingPointError):
    """Policy logits that cannot define a distribution over the legal actions (NaN or +inf at a
    legal action, or no legal action at all), naming the policy output."""


def at_step(err: E, step: int) -> E:
    """The same kind of error, its message led by "at step N: "."""
    return type(err)(f"at step {step}: {err}")


def reward_name(env: Env) -> str:
    """The reward's name for messages: the environment classes from the outermost wrapper in,
    and the reward callable an environment holds (as molecule environments do)."""
    names, inner = [], env
    for _ in range(16):
        names.append(type(inner).__name__)
        wrapped = vars(inner).get("env") if hasattr(inner, "__dict__") else None
        if not isinstance(wrapped, Env):
            break
        inner = wrapped
    name = "(".join(names) + ")" * (len(names) - 1)
    reward = vars(inner).get("reward") if hasattr(inner, "__dict__") else None
    if callable(reward):
        name += f" reward {getattr(reward, '__name__', None) or type(reward).__name__}"
    return name


def describe_object(env: Env, states: States, i: int, device: torch.device | None = None) -> str:
    """State i of a batch as the environment describes it (`Env.describe`: values, SMILES), or
    by its key when the description fails."""
    one = env.select(states, torch.tensor([i], device=device))
    try:
        return str(env.describe(one)[0])
    except Exception:  # noqa: BLE001 - a message must not fail; the key is always there
        return str(env.keys(one)[0])


def check_log_reward(env: Env, states: States, log_reward: torch.Tensor) -> None:
    """RewardError unless every log R(x) is finite (one sum on the common path: it is finite
    unless an entry is not, or it overflows); the message names the reward, the first offending
    object and what is wrong."""
    if math.isfinite(float(log_reward.sum())):
        return
    bad = ~torch.isfinite(log_reward)
    if not bool(bad.any()):
        return
    i = int(bad.nonzero()[0, 0])
    value = float(log_reward[i])
    if math.isnan(value):
        problem = "log R is NaN (a NaN or negative reward)"
    elif value > 0:
        problem = "log R is +inf (an infinite reward)"
    else:
        problem = "log R is -inf (a zero reward; GFlowNets need R > 0)"
    obj = describe_object(env, states, i, log_reward.device)
    raise RewardError(f"bad reward from {reward_name(env)}: {problem} for object {obj}")


def check_reward(env: Env, states: States, reward: torch.Tensor) -> None:
    """RewardError unless every reward R(x) is finite and > 0 (for environments that compute R
    before its log); the message names the reward, the first offending object and the value."""
    good = torch.isfinite(reward) & (reward > 0)
    if bool(good.all()):
        return
    i = int((~good).nonzero()[0, 0])
    value = float(reward[i])
    if math.isnan(value) or math.isinf(value):
        problem = f"the reward is {value}"
    elif value < 0:
        problem = f"the reward is negative ({value:.6g})"
    else:
        problem = "the reward is 0"
    obj = describe_object(env, states, i, reward.device)
    raise RewardError(
        f"bad reward from {reward_name(env)}: {problem} for object {obj} "
        "(rewards must be finite and > 0)"
    )


def logits_error(logits: torch.Tensor, mask: torch.Tensor, output: str) -> LogitsError | None:
    """Why `logits` give no distribution over the legal actions of `mask` (NaN or +inf at a legal
    action, or a row without a legal action), as an error naming `output`; None if they do."""
    legal = mask.any(dim=-1)
    if not bool(legal.all()):
        row = int((~legal).nonzero()[0, 0])
        return LogitsError(f"cannot sample the {output}: row {row} has no legal action")
    for bad, what in ((logits.isnan(), "NaN"), (logits == math.inf, "+inf")):
        bad = bad & mask
        if bool(bad.any()):
            row, col = (int(v) for v in bad.nonzero()[0])
            return LogitsError(
                f"the policy's {output} are {what} at legal action {col} of row {row} "
                "(the network diverged; try a lower learning rate)"
            )
    dead = ~((logits > -math.inf) & mask).any(dim=-1)
    if bool(dead.any()):
        row = int(dead.nonzero()[0, 0])
        return LogitsError(f"the policy's {output} are -inf at every legal action of row {row}")
    return None


def loss_error(loss: torch.Tensor, log_reward: torch.Tensor, policy: Any, env: Env) -> Exception:
    """The error for a non-finite loss: a reward scale that overflows the loss by itself, a
    policy whose parameters stopped being finite, or else a loss that diverged; each says what
    to change."""
    value = float(loss.detach())
    scale = float(log_reward.abs().max()) if log_reward.numel() else 0.0
    limit = math.sqrt(torch.finfo(loss.dtype).max) / SCALE_SLACK
    if not math.isnan(value) and scale > limit:
        return FloatingPointError(
            f"the loss overflowed ({value}): log R reaches {scale:.3g} (reward {reward_name(env)}),"
            f" too large a reward scale for {loss.dtype}; scale the log reward down (a smaller "
            "exponent or temperature); no update was made"
        )
    broken = [n for n, p in policy.named_parameters() if not bool(torch.isfinite(p).all())]
    if broken:
        return FloatingPointError(
            f"non-finite loss ({value}): policy parameter {broken[0]} is no longer finite "
            "(training diverged); try a lower learning rate"
        )
    return FloatingPointError(
        f"non-finite loss ({value}) with finite rewards (|log R| <= {scale:.3g}) and parameters: "
        "no update was made; try a lower learning rate (an objective that reads state flows "
        "must name 'log_flows' in its needs)"
    )

"""Balance objectives: trajectory balance, detailed balance, sub-trajectory balance; and the
sub-trajectory machinery (anchors, weighted pair sums) the other SubTB forms share."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch

from gflow.objectives.base import ObjectiveOptions, ObjectiveSpec, register_objective
from gflow.trajectories import Trajectories

STATE_FLOWS = frozenset({"log_flows"})
"""The need of the objectives that read state flows."""


@dataclass(frozen=True)
class SubTBOptions(ObjectiveOptions):
    """Options of the sub-trajectory objectives."""

    subtb_lambda: float = field(default=0.9, metadata={"record": "lambda"})
    """Weight lambda^L of a sub-trajectory of L transitions."""

    def __post_init__(self) -> None:
        if not self.subtb_lambda > 0:
            raise ValueError(f"subtb_lambda must be > 0, got {self.subtb_lambda}")


def transition_residuals(traj: Trajectories) -> torch.Tensor:
    """(B, T) DB residuals log F(s_t) + log P_F(s_{t+1}|s_t) - log F(s_{t+1}) - log P_B(s_t|s_{t+1})
    of every transition position (padding included)."""
    flow = traj.log_flow
    return flow[:, :-1] + traj.log_pf - flow[:, 1:] - traj.log_pb


def flow_anchors(traj: Trajectories) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T+1) anchors log F(s_t) - prefix_t and prefix sums prefix_t of log P_F - log P_B over
    the first t transitions: a sub-trajectory s_i..s_j balances when anchor_i = anchor_j."""
    steps = traj.log_pf - traj.log_pb
    prefix = torch.nn.functional.pad(steps.cumsum(1), (1, 0))
    return traj.log_flow - prefix, prefix


def weighted_pair_sums(
    start: torch.Tensor,
    end: torch.Tensor,
    start_mask: torch.Tensor,
    end_mask: torch.Tensor,
    lam: float,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per trajectory, sum of lam^span (start_i - end_j)^2 and sum of lam^span over the pairs
    (i, j) of masked positions with span = j - i + offset >= 1; inputs are (B, P)."""
    idx = torch.arange(start.shape[1], device=start.device)
    span = idx[None, :] - idx[:, None] + offset
    pair = (span > 0) & start_mask[:, :, None] & end_mask[:, None, :]
    weight = torch.where(pair, lam ** span.clamp(min=0).to(start.dtype), 0.0)
    residual = start[:, :, None] - end[:, None, :]
    return (weight * residual.pow(2)).sum((1, 2)), weight.sum((1, 2))


def trajectory_balance(traj: Trajectories) -> torch.Tensor:
    """TB (Malkin et al. 2022): (log Z + sum log P_F - log R(x) - sum log P_B)^2 over complete
    trajectories."""
    residual = traj.log_r_theta - traj.log_reward
    return residual[traj.done].pow(2).mean()


def detailed_balance(traj: Trajectories) -> torch.Tensor:
    """DB (Bengio et al. 2023): (log F(s) + log P_F(s'|s) - log F(s') - log P_B(s|s'))^2 per
    transition, the stop transition matching F(x) P_F(stop|x) = R(x)."""
    return transition_residuals(traj)[traj.transition_mask].pow(2).mean()


def subtrajectory_balance(traj: Trajectories, lam: float = 0.9) -> torch.Tensor:
    """SubTB(lambda) (Madan et al. 2023): balance over every sub-trajectory s_i..s_j, weighted by
    lambda^(j-i) and normalized per trajectory."""
    anchor, _ = flow_anchors(traj)
    valid = traj.flow_mask
    total, weight = weighted_pair_sums(anchor, anchor, valid, valid, lam)
    return (total / weight).mean()


register_objective(
    ObjectiveSpec(
        "tb",
        lambda _: trajectory_balance,
        help="trajectory balance",
    )
)
register_objective(
    ObjectiveSpec(
        "db",
        lambda _: detailed_balance,
        needs=STATE_FLOWS,
        incomplete_ok=True,
        help="detailed balance",
    )
)
register_objective(
    ObjectiveSpec(
        "subtb",
        lambda o: partial(subtrajectory_balance, lam=o.subtb_lambda),
        SubTBOptions,
        needs=STATE_FLOWS,
        incomplete_ok=True,
        help="sub-trajectory balance (lambda: --subtb-lambda)",
    )
)

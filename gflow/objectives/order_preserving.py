"""Order-preserving objectives (Chen & Mauch 2024): learn a reward r_theta consistent with a given
(partial) order of the objects instead of matching a given reward.

The order comes from each complete trajectory's reward components
(`Trajectories.reward_components`, larger is better) through a strict comparison: Pareto
dominance by default (the total order by value for one component), or any user function. On a
batch X the target is the uniform distribution on the maximal (non-dominated) objects of X and
the model distribution is softmax(log r_theta) over X; the loss is KL(target || model), the
cross-entropy less the target's entropy (same gradients, and 0 exactly when the batch's order is
matched). The pairwise variant compares each object with each other one (target 1, 0, or 1/2 on
ties and incomparable pairs), again as a KL divergence.

log r_theta(x) is log Z + sum log P_F - sum log P_B for TB, log F(x) + log P_F(stop | x) for DB,
and for SubTB the estimate of every sub-trajectory ending with x's stop (one order loss per
sub-trajectory length, weighted by lambda^(length - 1)). OP-DB and OP-SubTB add the balance loss of
the non-terminal transitions, to which the order loss is added with weight lambda_OP."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from gflow.objectives.balance import SubTBOptions, flow_anchors, weighted_pair_sums
from gflow.objectives.base import ObjectiveOptions, ObjectiveSpec, register_objective
from gflow.objectives.forward_looking import move_residuals
from gflow.trajectories import Trajectories

Prefer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""prefer(a, b): bool, True where reward-component vectors a are strictly better than b; a and
b broadcast against each other over leading dimensions, the last one holds the k components."""


def pareto_dominates(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Where a Pareto-dominates b (no worse everywhere, better somewhere; larger is better); for
    one component this is a > b."""
    return (a >= b).all(-1) & (a > b).any(-1)


def preference_matrix(
    components: torch.Tensor, prefer: Prefer = pareto_dominates, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, B) bool: beats[i, j] when object i is strictly preferred to object j, both valid."""
    if components.dim() != 2:
        raise ValueError(
            f"reward components must be (B, k), got shape {tuple(components.shape)}"
        )
    n = len(components)
    valid = torch.ones(n, dtype=torch.bool, device=components.device) if valid is None else valid
    if torch.isnan(components[valid]).any():
        raise ValueError("reward components of complete trajectories contain NaN")
    beats = prefer(components[:, None, :], components[None, :, :])
    if beats.shape != (n, n) or beats.dtype != torch.bool:
        raise ValueError(
            f"the comparison must return a ({n}, {n}) bool tensor, got {beats.dtype} "
            f"{tuple(beats.shape)}"
        )
    beats = beats & valid[:, None] & valid[None, :]
    if beats.diagonal().any() or (beats & beats.T).any():
        raise ValueError("the comparison is not a strict order: some object beats itself or a "
                         "pair beats each other")
    return beats


def maximal_targets(beats: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, G): per group of valid objects (a column of `valid`), the uniform distribution on
    those no other valid object of the group beats."""
    dominated = (beats.T.float() @ valid.float()) > 0
    maximal = (valid & ~dominated).float()
    return maximal / maximal.sum(0).clamp(min=1)


def set_order_loss(log_r: torch.Tensor, valid: torch.Tensor, beats: torch.Tensor) -> torch.Tensor:
    """(G,) per group: KL from the uniform distribution on its maximal objects to softmax(log r)
    over its objects; log_r and valid are (B, G), groups must not be empty."""
    log_q = log_r.masked_fill(~valid, float("-inf")).log_softmax(0)
    target = maximal_targets(beats, valid)
    return (torch.special.xlogy(target, target) - target * torch.where(valid, log_q, 0.0)).sum(0)


def pairwise_order_loss(
    log_r: torch.Tensor, valid: torch.Tensor, beats: torch.Tensor
) -> torch.Tensor:
    """(G,) per group: mean over ordered pairs of distinct objects of the KL divergence from the
    target 1 (i preferred), 0 (j preferred) or 1/2 (neither) to sigmoid(log r_i - log r_j);
    the paper's random-partner loss, averaged exactly over all partners."""
    target = (0.5 + 0.5 * (beats.float() - beats.T.float()))[:, :, None]
    diff = log_r[:, None, :] - log_r[None, :, :]
    entropy = torch.where(target == 0.5, math.log(2.0), 0.0)
    kl = target * F.softplus(-diff) + (1 - target) * F.softplus(diff) - entropy
    distinct = ~torch.eye(len(log_r), dtype=torch.bool, device=log_r.device)[:, :, None]
    pair = valid[:, None, :] & valid[None, :, :] & distinct
    return torch.where(pair, kl, 0.0).sum((0, 1)) / pair.sum((0, 1)).clamp(min=1)


def terminal_log_rewards(traj: Trajectories) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) estimates of log r_theta(x) and their mask: column L-1 is log F(s_{n-L}) plus the
    sum of log P_F - log P_B over the last L transitions (the stop included) of a complete
    trajectory of n transitions, for L <= n. Column 0 is the DB form log F(x) + log P_F(stop|x);
    column n-1 is the TB form."""
    anchor, prefix = flow_anchors(traj)
    n = traj.lengths
    span = torch.arange(1, traj.log_pf.shape[1] + 1, device=n.device)
    start = (n[:, None] - span[None, :]).clamp(min=0)
    estimate = anchor.gather(1, start) + prefix.gather(1, n[:, None])
    return estimate, traj.done[:, None] & (span[None, :] <= n[:, None])


def _order_losses(
    traj: Trajectories, log_r: torch.Tensor, valid: torch.Tensor, prefer: Prefer, pairwise: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Order loss of each non-empty group (column) and the indices of those groups."""
    (components,) = traj.require("reward_components", "an order-preserving objective")
    if not traj.done.any():
        raise ValueError("order-preserving objectives need a complete trajectory in the batch")
    beats = preference_matrix(components, prefer, traj.done)
    groups = valid.any(0).nonzero(as_tuple=True)[0]
    loss = pairwise_order_loss if pairwise else set_order_loss
    return loss(log_r[:, groups], valid[:, groups], beats), groups


def _backward_kl(traj: Trajectories) -> torch.Tensor:
    """Mean KL(uniform || P_B) over the real states after s0."""
    (backward_kl,) = traj.require("backward_kl", "the backward KL term")
    after = traj.state_mask[:, 1:]
    return backward_kl[:, 1:][after].sum() / after.sum().clamp(min=1)


def _regularized(loss: torch.Tensor, traj: Trajectories, backward_kl: float) -> torch.Tensor:
    """`loss` plus `backward_kl` times the mean KL(uniform || P_B) when that weight is set."""
    return loss + backward_kl * _backward_kl(traj) if backward_kl else loss


def order_preserving_trajectory_balance(
    traj: Trajectories,
    prefer: Prefer = pareto_dominates,
    pairwise: bool = False,
    backward_kl: float = 0.0,
) -> torch.Tensor:
    """OP-TB: the order loss on log r_theta = log Z + sum log P_F - sum log P_B alone, plus
    `backward_kl` times the mean KL(uniform || P_B)."""
    losses, _ = _order_losses(traj, traj.log_r_theta[:, None], traj.done[:, None], prefer, pairwise)
    return _regularized(losses[0], traj, backward_kl)


def order_preserving_detailed_balance(
    traj: Trajectories,
    lam_op: float = 0.1,
    prefer: Prefer = pareto_dominates,
    pairwise: bool = False,
    backward_kl: float = 0.0,
) -> torch.Tensor:
    """OP-DB: mean squared DB residual over non-terminal transitions plus `lam_op` times the
    order loss on log r_theta(x) = log F(x) + log P_F(stop | x)."""
    estimate, valid = terminal_log_rewards(traj)
    losses, _ = _order_losses(traj, estimate[:, :1], valid[:, :1], prefer, pairwise)
    residual, moves = move_residuals(traj)
    balance = residual[moves].pow(2).sum() / moves.sum().clamp(min=1)
    return _regularized(balance + lam_op * losses[0], traj, backward_kl)


def order_preserving_subtrajectory_balance(
    traj: Trajectories,
    lam: float = 0.9,
    lam_op: float = 0.1,
    prefer: Prefer = pareto_dominates,
    pairwise: bool = False,
    backward_kl: float = 0.0,
) -> torch.Tensor:
    """OP-SubTB(lambda): SubTB over the sub-trajectories between real states (normalized per
    trajectory) plus `lam_op` times the order losses of the sub-trajectories ending with each
    object's stop, one per length L, weighted by lambda^(L-1)."""
    estimate, valid = terminal_log_rewards(traj)
    losses, groups = _order_losses(traj, estimate, valid, prefer, pairwise)
    weights = lam ** groups.to(losses.dtype)
    order = (weights * losses).sum() / weights.sum()
    anchor, _ = flow_anchors(traj)
    states = traj.state_mask
    total, weight = weighted_pair_sums(anchor, anchor, states, states, lam)
    some = weight > 0
    balance = (total[some] / weight[some]).sum() / some.sum().clamp(min=1)
    return _regularized(balance + lam_op * order, traj, backward_kl)


@dataclass(frozen=True)
class OrderOptions(ObjectiveOptions):
    """Options of OP-TB: the comparison, the pairwise loss and the backward KL weight."""

    prefer: Prefer | None = field(default=None, metadata={"record": "order"})
    """Strict comparison of reward-component vectors; None: Pareto dominance."""
    op_pairwise: bool = field(default=False, metadata={"record": "pairwise"})
    """Use the pairwise order loss instead of the set one."""
    op_backward_kl: float = field(default=0.0, metadata={"record": "backward_kl"})
    """Weight of KL(uniform || P_B) (with a learned P_B)."""

    def __post_init__(self) -> None:
        if not self.op_backward_kl >= 0:
            raise ValueError(f"op_backward_kl must be >= 0, got {self.op_backward_kl}")

    def record(self) -> dict[str, Any]:
        """The options as recorded, the comparison as ``pareto`` or ``custom``."""
        return super().record() | {"order": "pareto" if self.prefer is None else "custom"}

    def order(self) -> dict[str, Any]:
        """Keyword arguments of the order-preserving losses."""
        prefer = self.prefer or pareto_dominates
        return {"prefer": prefer, "pairwise": self.op_pairwise, "backward_kl": self.op_backward_kl}


@dataclass(frozen=True)
class OrderBalanceOptions(OrderOptions):
    """Options of OP-DB: those of OP-TB and the weight of the order loss."""

    op_lambda: float = 0.1
    """Weight of the order loss next to the balance loss."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.op_lambda >= 0:
            raise ValueError(f"op_lambda must be >= 0, got {self.op_lambda}")


@dataclass(frozen=True)
class OrderSubTBOptions(OrderBalanceOptions, SubTBOptions):
    """Options of OP-SubTB: those of OP-DB and SubTB's lambda."""

    def __post_init__(self) -> None:
        OrderBalanceOptions.__post_init__(self)
        SubTBOptions.__post_init__(self)


ORDER = frozenset({"reward_components", "backward_kl"})
register_objective(
    ObjectiveSpec(
        "op-tb",
        lambda o: partial(order_preserving_trajectory_balance, **o.order()),
        OrderOptions,
        needs=ORDER,
        help="order-preserving trajectory balance",
    )
)
register_objective(
    ObjectiveSpec(
        "op-db",
        lambda o: partial(order_preserving_detailed_balance, lam_op=o.op_lambda, **o.order()),
        OrderBalanceOptions,
        needs=ORDER,
        help="order-preserving detailed balance",
    )
)
register_objective(
    ObjectiveSpec(
        "op-subtb",
        lambda o: partial(
            order_preserving_subtrajectory_balance,
            lam=o.subtb_lambda,
            lam_op=o.op_lambda,
            **o.order(),
        ),
        OrderSubTBOptions,
        needs=ORDER,
        help="order-preserving sub-trajectory balance",
    )
)

"""Forward-looking objectives (Pan et al. 2023): DB and SubTB(lambda) on the state flows
log F(s) = log F~(s) - E(s) that scoring builds for the need ``forward_looking_flows``.

Every state carries its energy, so each transition's balance needs no terminal reward and
incomplete trajectories (rollouts cut after k steps) train as well as complete ones. Where stop
is legal at a visited state s, E(s) = -log R(s) (the environment contract), so the stop edge's
balance F(s) P_F(stop | s) = R(s), i.e. F~(s) P_F(stop | s) = 1, is checked at every such state,
not only where the trajectory stopped. Without it, trajectories that never stop would carry no
information about R. On an environment where stop is legal only at the object a trajectory
ends with, the two objectives are exactly DB and SubTB on the reparametrized flows.
"""

from __future__ import annotations

from functools import partial

import torch

from gflow.objectives.balance import (
    SubTBOptions,
    flow_anchors,
    transition_residuals,
    weighted_pair_sums,
)
from gflow.objectives.base import ObjectiveSpec, register_objective
from gflow.trajectories import Trajectories


def _require_forward_looking(traj: Trajectories) -> tuple[torch.Tensor, ...]:
    """The batch's energy, log_pf_stop and can_stop (a clear error when not scored)."""
    return traj.require("forward_looking_flows", "a forward-looking objective")


def move_residuals(traj: Trajectories) -> tuple[torch.Tensor, torch.Tensor]:
    """DB residuals of every transition position (B, T), and the bool mask of real transitions
    that are not stop (both ends real states)."""
    states = traj.state_mask
    return transition_residuals(traj), states[:, :-1] & states[:, 1:]


def stop_residuals(traj: Trajectories) -> torch.Tensor:
    """(B, T+1) log F(s) + log P_F(stop | s) - log R(s), with log R(s) = -E(s), at every real
    state where stop is legal; 0 elsewhere."""
    energy, log_pf_stop, can_stop = _require_forward_looking(traj)
    residual = traj.log_flow + log_pf_stop + energy
    return torch.where(can_stop, residual, 0.0)


def forward_looking_detailed_balance(traj: Trajectories) -> torch.Tensor:
    """FL-DB: mean squared DB residual of log F~(s) + log P_F(s'|s) - log F~(s') - log P_B(s|s')
    + E(s') - E(s) over every non-stop transition, and of log F~(s) + log P_F(stop|s) over every
    visited state where stop is legal."""
    residual, moves = move_residuals(traj)
    terms = torch.cat([residual[moves], stop_residuals(traj)[traj.can_stop]])
    if terms.numel() == 0:
        raise ValueError("FL-DB: the batch has no transition and no state where stop is legal")
    return terms.pow(2).mean()


def forward_looking_subtrajectory_balance(traj: Trajectories, lam: float = 0.9) -> torch.Tensor:
    """FL-SubTB(lambda): SubTB over every sub-trajectory s_i..s_j of real states and every
    s_i..s_t -> stop with stop legal at s_t (weight lambda^transitions), normalized per
    trajectory, on the forward-looking flows."""
    energy, log_pf_stop, can_stop = _require_forward_looking(traj)
    anchor, prefix = flow_anchors(traj)
    sink = -energy - prefix - log_pf_stop
    states = traj.state_mask
    inner, inner_weight = weighted_pair_sums(anchor, anchor, states, states, lam)
    ends, ends_weight = weighted_pair_sums(anchor, sink, states, can_stop, lam, offset=1)
    total, weight = inner + ends, inner_weight + ends_weight
    some = weight > 0
    if not some.any():
        raise ValueError("FL-SubTB: the batch has no transition and no state where stop is legal")
    return (total[some] / weight[some]).mean()


FORWARD_LOOKING = frozenset({"forward_looking_flows"})
register_objective(
    ObjectiveSpec(
        "fl-db",
        lambda _: forward_looking_detailed_balance,
        needs=FORWARD_LOOKING,
        incomplete_ok=True,
        help="forward-looking detailed balance (needs env.energy)",
    )
)
register_objective(
    ObjectiveSpec(
        "fl-subtb",
        lambda o: partial(forward_looking_subtrajectory_balance, lam=o.subtb_lambda),
        SubTBOptions,
        needs=FORWARD_LOOKING,
        incomplete_ok=True,
        help="forward-looking sub-trajectory balance (needs env.energy)",
    )
)

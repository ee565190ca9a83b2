"""Flow matching (Bengio et al. 2021): in-flow equals out-flow at every visited state."""

from __future__ import annotations

import torch

from gflow.objectives.base import ObjectiveSpec, register_objective
from gflow.trajectories import Trajectories


def flow_matching(traj: Trajectories) -> torch.Tensor:
    """Mean of (log in-flow - log out-flow)^2 over visited states after s0, plus
    (log F(x -> sink) - log R(x))^2 over terminal states."""
    log_inflow, log_outflow, log_stop_flow = traj.require("edge_flows", "flow matching")
    steps = torch.arange(log_inflow.shape[1], device=traj.lengths.device)
    last_state = traj.lengths - traj.done.long()
    visited = (steps >= 1) & (steps <= last_state[:, None])
    balance = (log_inflow - log_outflow)[visited].pow(2)
    terminal = (log_stop_flow - traj.log_reward)[traj.done].pow(2)
    return torch.cat([balance, terminal]).mean()


register_objective(
    ObjectiveSpec(
        "fm",
        lambda _: flow_matching,
        needs=frozenset({"edge_flows"}),
        log_z="out_flow",
        help="flow matching (forward logits are log edge flows)",
    )
)

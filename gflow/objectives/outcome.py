"""The OC-GFN pre-training loss (Pan et al. 2024): balance objectives on outcome-conditioned
trajectories, with outcome teleportation.

Outcome teleportation puts the terminal outcome reward into every transition's constraint,

    F(s | y) P_F(s' | s, y) = F(s' | y) P_B(s | s', y) R(x | y),

with x the object the trajectory reached, so a miss lowers the flow of every edge it took at
once instead of waiting for the terminal signal to travel back edge by edge. Here the last move
(into x) is teleported and the stop transition keeps the plain terminal condition
F(x | y) P_F(stop | x, y) = R(x | y), so a trajectory of L transitions (the stop included) carries
R(x | y)^L in total. For a 0/1 outcome reward R^L = R: the target is unchanged. With the floored
reward used here (a miss scores exp(log_floor)), a miss is pushed down to floor^L.

Teleportation is implemented as a reparametrization of the scored batch: position t of the flow
gets min(t, L-1) log R(x | y) added and the trajectory's log reward is multiplied by L, after
which the ordinary DB, SubTB and TB losses give exactly the teleported constraints. For TB this
is a consistent target (reward R(x | y)^L); for DB and SubTB an edge shared by hits and misses
gets conflicting targets, and its flow settles between them, weighted by how often on-policy
trajectories through it miss (the paper's heuristic; hits dominate as the policy improves).

Teleportation is off by default. Measured (benchmarks/oc_gfn.py): it reaches outcomes faster
(hypergrid 8x8, 600 steps: exact success 0.98 against 0.73 without), but the state flows it
learns are biased, and fine-tuning reads them: the exact marginal over outcomes of the
teleported model is 0.74 in TV from R/Z, against 0.06 without. Off-policy misses (which make
those flows right where the sampler no longer goes) conflict with teleportation outright.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch

from gflow.objectives.balance import (
    STATE_FLOWS,
    SubTBOptions,
    detailed_balance,
    subtrajectory_balance,
    trajectory_balance,
)
from gflow.objectives.base import (
    Objective,
    ObjectiveOptions,
    ObjectiveSpec,
    get_objective,
    register_objective,
)
from gflow.trajectories import Trajectories

BASES = ("db", "subtb", "tb")


@dataclass(frozen=True)
class OutcomeOptions(ObjectiveOptions):
    """Options of the OC-GFN pre-training losses."""

    teleportation: bool = False
    """Outcome teleportation; the objective is then named ``oc-<base>-ot``."""

    def name_suffix(self) -> str:
        """``-ot`` with teleportation."""
        return "-ot" if self.teleportation else ""


@dataclass(frozen=True)
class OutcomeSubTBOptions(OutcomeOptions, SubTBOptions):
    """Options of ``oc-subtb``: teleportation and SubTB's lambda."""


def teleport(traj: Trajectories) -> Trajectories:
    """The batch with the outcome reward teleported to every move: flows shifted by
    min(t, L-1) log R(x | y) and log R(x | y) raised to the power L."""
    steps = torch.arange(traj.log_flow.shape[1], device=traj.lengths.device)
    last = (traj.lengths - 1).clamp(min=0)[:, None]
    log_r = torch.where(traj.done, traj.log_reward, 0.0)
    shift = torch.minimum(steps, last) * log_r[:, None] * traj.flow_mask
    return replace(
        traj,
        log_flow=traj.log_flow + shift,
        log_reward=log_r * traj.lengths,
    )


def outcome_loss(
    traj: Trajectories, base: str = "db", teleportation: bool = True, lam: float = 0.9
) -> torch.Tensor:
    """The balance loss `base` (db, subtb or tb) on outcome-conditioned trajectories, with
    outcome teleportation unless `teleportation` is false."""
    if teleportation:
        traj = teleport(traj)
    if base == "db":
        return detailed_balance(traj)
    if base == "subtb":
        return subtrajectory_balance(traj, lam)
    if base == "tb":
        return trajectory_balance(traj)
    raise ValueError(f"outcome loss base must be one of {BASES}, got {base!r}")


def _outcome_spec(base: str) -> ObjectiveSpec:
    """The registry entry ``oc-<base>``."""

    def build(o: OutcomeOptions) -> partial[torch.Tensor]:
        lam = o.subtb_lambda if isinstance(o, SubTBOptions) else 0.9
        return partial(outcome_loss, base=base, teleportation=o.teleportation, lam=lam)

    return ObjectiveSpec(
        f"oc-{base}",
        build,
        OutcomeSubTBOptions if base == "subtb" else OutcomeOptions,
        needs=frozenset() if base == "tb" else STATE_FLOWS,
        help=f"OC-GFN pre-training on {base} (outcome-conditioned environments)",
    )


for _base in BASES:
    register_objective(_outcome_spec(_base))


def outcome_objective(
    base: str = "db", teleportation: bool = False, subtb_lambda: float = 0.9
) -> Objective:
    """The pre-training objective ``oc-<base>`` (``oc-<base>-ot`` with teleportation); state
    flows F(s | y) come only from db and subtb, and fine-tuning needs them."""
    if base not in BASES:
        raise ValueError(f"outcome loss base must be one of {BASES}, got {base!r}")
    lam = {"subtb_lambda": subtb_lambda} if base == "subtb" else {}
    return get_objective(f"oc-{base}", teleportation=teleportation, **lam)

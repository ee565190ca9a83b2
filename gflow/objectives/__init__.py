"""Training objectives (losses), each a short function of one Trajectories batch that declares
what it needs from scoring; every one is registered by name in `OBJECTIVES`."""

from __future__ import annotations

from gflow.objectives.balance import (
    SubTBOptions,
    detailed_balance,
    subtrajectory_balance,
    trajectory_balance,
)
from gflow.objectives.base import (
    LOG_Z_SOURCES,
    OBJECTIVES,
    Loss,
    Objective,
    ObjectiveOptions,
    ObjectiveSpec,
    as_objective,
    get_objective,
    objective,
    options_for,
    register_objective,
)
from gflow.objectives.flow_matching import flow_matching
from gflow.objectives.forward_looking import (
    forward_looking_detailed_balance,
    forward_looking_subtrajectory_balance,
)
from gflow.objectives.order_preserving import (
    OrderBalanceOptions,
    OrderOptions,
    OrderSubTBOptions,
    Prefer,
    order_preserving_detailed_balance,
    order_preserving_subtrajectory_balance,
    order_preserving_trajectory_balance,
    pareto_dominates,
)
from gflow.objectives.outcome import OutcomeOptions, outcome_objective

__all__ = [
    "LOG_Z_SOURCES",
    "OBJECTIVES",
    "Loss",
    "Objective",
    "ObjectiveOptions",
    "ObjectiveSpec",
    "OrderBalanceOptions",
    "OrderOptions",
    "OrderSubTBOptions",
    "OutcomeOptions",
    "Prefer",
    "SubTBOptions",
    "as_objective",
    "detailed_balance",
    "flow_matching",
    "forward_looking_detailed_balance",
    "forward_looking_subtrajectory_balance",
    "get_objective",
    "objective",
    "options_for",
    "order_preserving_detailed_balance",
    "order_preserving_subtrajectory_balance",
    "order_preserving_trajectory_balance",
    "outcome_objective",
    "pareto_dominates",
    "register_objective",
    "subtrajectory_balance",
    "trajectory_balance",
]

"""Metrics for multi-objective samplers: Pareto-front indicators, top-K reward and diversity."""

from gflow.metrics.diversity import (
    levenshtein,
    mean_pairwise_distance,
    morgan_fingerprints,
    pairwise_levenshtein,
    pairwise_tanimoto,
    tanimoto_distance,
    top_k_diversity,
    top_k_reward,
)
from gflow.metrics.pareto import (
    as_points,
    dominates_reference,
    hypervolume,
    hypervolume_mc,
    hypervolume_seconds,
    igd_plus,
    is_non_dominated,
    maximize_mask,
    pareto_front,
    r2_indicator,
    simplex_lattice,
)

__all__ = [
    "as_points",
    "dominates_reference",
    "hypervolume",
    "hypervolume_mc",
    "hypervolume_seconds",
    "igd_plus",
    "is_non_dominated",
    "levenshtein",
    "maximize_mask",
    "mean_pairwise_distance",
    "morgan_fingerprints",
    "pairwise_levenshtein",
    "pairwise_tanimoto",
    "pareto_front",
    "r2_indicator",
    "simplex_lattice",
    "tanimoto_distance",
    "top_k_diversity",
    "top_k_reward",
]

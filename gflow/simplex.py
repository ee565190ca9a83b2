"""The simplex lattice (Das-Dennis): every weight vector with entries in {0, 1/H, ..., 1} that
sums to 1; preference grids (`gflow.conditioning.simplex_grid`) and the R2 indicator's weights
(`gflow.metrics.pareto`) both come from here. Numpy only, so light front ends can import it."""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np


def simplex_lattice(n_components: int, n_divisions: int) -> np.ndarray:
    """All weight vectors with entries in {0, 1/H, ..., 1} summing to 1 (H = n_divisions):
    comb(H + k - 1, k - 1) rows of k = n_components columns, the first [0, ..., 0, 1]."""
    if n_components < 1 or n_divisions < 1:
        raise ValueError(
            f"simplex_lattice needs n_components >= 1 and n_divisions >= 1, "
            f"got {n_components} and {n_divisions}"
        )
    slots = n_divisions + n_components - 1
    bars = np.array(list(combinations(range(slots), n_components - 1)), dtype=np.int64).reshape(
        comb(slots, n_components - 1), n_components - 1
    )
    edges = np.concatenate(
        [np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), slots)], axis=1
    )
    return (np.diff(edges, axis=1) - 1) / n_divisions

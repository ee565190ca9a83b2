"""Pareto-front metrics: non-dominated filtering, exact hypervolume (moocore engine), R2, IGD+."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from math import comb
from statistics import NormalDist
from typing import Any

import moocore
import numpy as np

from gflow.simplex import simplex_lattice

Maximize = bool | Sequence[bool]

# Largest (weights x points x objectives) block R2 evaluates at once, to bound memory.
_R2_BLOCK = 1 << 22
# Largest (samples x points) block of comparisons the Monte-Carlo hypervolume holds at once.
_MC_BLOCK = 1 << 22
# Timings shorter than this (seconds) are too noisy to measure how the hypervolume's cost grows.
_TIMING_RESOLUTION = 2e-3


def as_points(points: Any, name: str = "points") -> np.ndarray:
    """`points` as a finite float64 array of shape (n_points, n_objectives); errors name the row."""
    if hasattr(points, "detach"):
        points = points.detach().cpu().numpy()
    try:
        array = np.asarray(points, dtype=np.float64)
    except (ValueError, TypeError):
        _raise_bad_rows(points, name)
        raise
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_points, n_objectives), got shape {array.shape}"
        )
    if array.shape[1] == 0:
        raise ValueError(f"{name} must have at least one objective (column)")
    _check_finite(array, name)
    return array


def _raise_bad_rows(points: Any, name: str) -> None:
    """Raise a ValueError naming the first ragged row or non-numeric cell of a nested sequence."""
    rows = list(points)
    width = len(rows[0]) if rows and hasattr(rows[0], "__len__") else None
    for i, row in enumerate(rows):
        if not hasattr(row, "__len__") or isinstance(row, str | bytes):
            raise ValueError(f"{name} row {i} is {row!r}, expected a sequence of numbers")
        if len(row) != width:
            raise ValueError(f"{name} row {i} has {len(row)} values, expected {width}")
        for j, value in enumerate(row):
            try:
                float(value)
            except (ValueError, TypeError):
                raise ValueError(
                    f"{name} row {i}, objective {j}: {value!r} is not a number"
                ) from None


def _check_finite(array: np.ndarray, name: str) -> None:
    """Raise a ValueError naming the first NaN or infinite entry of a 2-D array."""
    bad = ~np.isfinite(array)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name} row {i}, objective {j} is {array[i, j]} (must be finite)")


def _as_vector(value: Any, n_objectives: int, name: str) -> np.ndarray:
    """`value` (a number or one per objective) as a finite float64 vector of n_objectives."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        vector = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must be numbers, got {value!r}") from None
    if vector.ndim == 0:
        vector = np.full(n_objectives, float(vector))
    if vector.shape != (n_objectives,):
        raise ValueError(
            f"{name} has {vector.size} values, expected {n_objectives} (one per objective)"
        )
    if not np.isfinite(vector).all():
        j = int(np.flatnonzero(~np.isfinite(vector))[0])
        raise ValueError(f"{name} objective {j} is {vector[j]} (must be finite)")
    return vector


def maximize_mask(maximize: Maximize, n_objectives: int) -> np.ndarray:
    """`maximize` (one bool, or one per objective) as a bool vector of n_objectives."""
    if isinstance(maximize, bool | np.bool_):
        return np.full(n_objectives, bool(maximize))
    mask = np.asarray(maximize)
    if mask.shape != (n_objectives,) or mask.dtype != np.bool_:
        raise ValueError(
            f"maximize must be a bool or {n_objectives} bools (one per objective), "
            f"got {maximize!r}"
        )
    return mask


def _signs(maximize: Maximize, n_objectives: int) -> np.ndarray:
    """Per-objective factors that turn the problem into minimization (-1 where maximized)."""
    return np.where(maximize_mask(maximize, n_objectives), -1.0, 1.0)


def is_non_dominated(
    points: Any, maximize: Maximize = True, keep_duplicates: bool = True
) -> np.ndarray:
    """Bool mask of the points no other point dominates; with keep_duplicates=False only the
    first copy of a repeated non-dominated point is marked."""
    array = as_points(points)
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    return moocore.is_nondominated(
        array, maximise=maximize_mask(maximize, array.shape[1]), keep_weakly=keep_duplicates
    )


def pareto_front(points: Any, maximize: Maximize = True) -> np.ndarray:
    """The distinct non-dominated rows of `points`, in their original order."""
    array = as_points(points)
    return array[is_non_dominated(array, maximize, keep_duplicates=False)]


def dominates_reference(points: Any, ref: Any, maximize: Maximize = True) -> np.ndarray:
    """Bool mask of the points strictly better than `ref` in every objective."""
    array = as_points(points)
    signs = _signs(maximize, array.shape[1])
    return (array * signs < _as_vector(ref, array.shape[1], "ref") * signs).all(axis=1)


def _minimized_inside(points: Any, ref: Any, maximize: Maximize) -> tuple[np.ndarray, np.ndarray]:
    """(points strictly better than `ref` in every objective, ref), both turned into a
    minimization problem."""
    array = as_points(points)
    signs = _signs(maximize, array.shape[1])
    minimized = array * signs
    ref_min = _as_vector(ref, array.shape[1], "ref") * signs
    return minimized[(minimized < ref_min).all(axis=1)], ref_min


def hypervolume(points: Any, ref: Any, maximize: Maximize = True) -> float:
    """Exact hypervolume of the region `points` dominate and that dominates `ref`; points not
    strictly better than `ref` in every objective contribute nothing."""
    inside, ref_min = _minimized_inside(points, ref, maximize)
    if len(inside) == 0:
        return 0.0
    return float(moocore.hypervolume(inside, ref=ref_min))


def hypervolume_seconds(
    points: Any, ref: Any, maximize: Maximize = True, budget: float = 0.25, seed: int = 0
) -> float:
    """Estimated seconds `hypervolume` takes on these points, measured within about `budget`
    seconds: the exact computation is timed on random subsets of the Pareto front of doubling
    size (32, 64, ...) and extrapolated to the whole front with the growth rate seen between
    the last two sizes (the worst-case rate n^(d-2) while timings are too short to tell). An
    order of magnitude, meant to warn before a computation that may not finish."""
    inside, ref_min = _minimized_inside(points, ref, maximize)
    front = np.unique(inside[moocore.is_nondominated(inside)], axis=0)
    n, d = front.shape
    order = np.random.default_rng(seed).permutation(n)
    timings: list[tuple[int, float]] = []
    spent, size = 0.0, 32
    while size < n:
        if len(timings) >= 2 and spent + timings[-1][1] * _growth(timings, d) > budget:
            break
        start = time.perf_counter()
        moocore.hypervolume(front[order[:size]], ref=ref_min)
        timings.append((size, time.perf_counter() - start))
        spent += timings[-1][1]
        if spent > budget:
            break
        size *= 2
    if not timings:
        return 0.0
    measured, seconds = timings[-1]
    return seconds * _growth(timings, d) ** math.log2(n / measured)


def _growth(timings: list[tuple[int, float]], n_objectives: int) -> float:
    """Factor by which the exact hypervolume's time grows when the points double: measured
    between the last two timings when they are long enough to tell (at least 2), else the
    worst case 2^(d-2)."""
    worst = 2.0 ** max(1, n_objectives - 2)
    if len(timings) < 2 or timings[-2][1] < _TIMING_RESOLUTION:
        return worst
    return min(worst, max(2.0, timings[-1][1] / timings[-2][1]))


def hypervolume_mc(
    points: Any,
    ref: Any,
    samples: int = 100_000,
    seed: int = 0,
    maximize: Maximize = True,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Monte-Carlo estimate of the hypervolume with a confidence interval: (estimate, low, high).

    The dominated region is the union of the boxes [p, ref] of the Pareto points p. Karp and
    Luby's union estimator draws a box with probability proportional to its volume and a point
    x uniformly inside it; with c(x) the number of boxes that hold x, the hypervolume is the
    total box volume times the mean of 1 / c(x), unbiased. The interval is the normal one at
    level `confidence` (the values 1 / c lie in [1 / n, 1]), kept within the exact bounds
    [largest box, total box volume]. The standard error shrinks like 1 / sqrt(samples) whatever
    the number of objectives; the cost is samples x front size x objectives comparisons."""
    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    inside, ref_min = _minimized_inside(points, ref, maximize)
    if len(inside) == 0:
        return 0.0, 0.0, 0.0
    front = inside[moocore.is_nondominated(inside, keep_weakly=False)]
    sides = ref_min - front
    volumes = np.prod(sides, axis=1)
    total = float(volumes.sum())
    rng = np.random.default_rng(seed)
    block = max(1, _MC_BLOCK // len(front))
    inverse_counts = np.empty(samples)
    for start in range(0, samples, block):
        size = min(block, samples - start)
        box = rng.choice(len(front), size=size, p=volumes / total)
        draws = front[box] + rng.random((size, front.shape[1])) * sides[box]
        held = np.ones((size, len(front)), dtype=bool)
        for objective in range(front.shape[1]):
            held &= front[:, objective] <= draws[:, objective, None]
        inverse_counts[start : start + size] = 1.0 / held.sum(axis=1)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    estimate = total * float(inverse_counts.mean())
    half = z * total * float(inverse_counts.std(ddof=1)) / math.sqrt(samples)
    low = max(float(volumes.max()), estimate - half)
    return estimate, min(low, estimate), min(total, estimate + half)


def _lattice_of_size(n_weights: int, n_objectives: int) -> np.ndarray:
    """The simplex lattice with exactly n_weights vectors; the error lists the nearest sizes."""
    if n_objectives == 1:
        if n_weights != 1:
            raise ValueError(f"one objective has a single weight vector, not {n_weights}")
        return np.ones((1, 1))
    divisions, size = 1, n_objectives
    while size < n_weights:
        divisions += 1
        size = comb(divisions + n_objectives - 1, n_objectives - 1)
    if size != n_weights:
        smaller = comb(divisions + n_objectives - 2, n_objectives - 1)
        raise ValueError(
            f"n_weights={n_weights} is not a simplex-lattice size for {n_objectives} "
            f"objectives; nearest sizes are {smaller} ({divisions - 1} divisions) and "
            f"{size} ({divisions} divisions)"
        )
    return simplex_lattice(n_objectives, divisions)


def r2_indicator(
    points: Any, weights: Any, utopian: Any, maximize: Maximize = True
) -> float:
    """R2 indicator (lower is better): the mean over weight vectors w of
    min over points p of max_i w_i |utopian_i - p_i|. `weights` is an array (n_weights,
    n_objectives) or an int n_weights for the simplex lattice of that size; `utopian` must be
    at least as good as every point in every objective."""
    array = as_points(points)
    n_objectives = array.shape[1]
    if len(array) == 0:
        raise ValueError("R2 of an empty set of points is undefined")
    if isinstance(weights, int | np.integer):
        weight_matrix = _lattice_of_size(int(weights), n_objectives)
    else:
        weight_matrix = as_points(weights, "weights")
        if weight_matrix.shape[1] != n_objectives:
            raise ValueError(
                f"weights have {weight_matrix.shape[1]} columns, expected {n_objectives}"
            )
        if (weight_matrix < 0).any() or len(weight_matrix) == 0:
            raise ValueError("weights must be a non-empty array of non-negative numbers")
    signs = _signs(maximize, n_objectives)
    gaps = array * signs - _as_vector(utopian, n_objectives, "utopian") * signs
    if (gaps < 0).any():
        i, j = np.argwhere(gaps < 0)[0]
        raise ValueError(
            f"points row {i}, objective {j} ({array[i, j]}) is better than the utopian point"
        )
    gaps = gaps[is_non_dominated(gaps, maximize=False, keep_duplicates=False)]
    block = max(1, _R2_BLOCK // gaps.size)
    best = [
        (chunk[:, None, :] * gaps[None, :, :]).max(axis=2).min(axis=1)
        for chunk in np.split(weight_matrix, range(block, len(weight_matrix), block))
    ]
    return float(np.concatenate(best).mean())


def igd_plus(points: Any, reference_front: Any, maximize: Maximize = True) -> float:
    """IGD+ (lower is better): the mean over reference points z of the smallest distance
    sqrt(sum_i max(0, z_i - p_i)^2) (maximization) to a point p of `points`."""
    array = as_points(points)
    reference = as_points(reference_front, "reference_front")
    if reference.shape[1] != array.shape[1]:
        raise ValueError(
            f"reference_front has {reference.shape[1]} objectives, points have {array.shape[1]}"
        )
    if len(array) == 0 or len(reference) == 0:
        raise ValueError("IGD+ needs at least one point and one reference point")
    return float(
        moocore.igd_plus(array, ref=reference, maximise=maximize_mask(maximize, array.shape[1]))
    )

"""Monte-Carlo hypervolume (`hypervolume_mc`) against the exact value where both run, and the
cost estimate of the exact computation (`hypervolume_seconds`)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gflow.metrics.pareto import hypervolume, hypervolume_mc, hypervolume_seconds


def sphere_front(n: int, k: int, seed: int) -> np.ndarray:
    """n mutually non-dominated points on the positive unit sphere in k objectives."""
    points = np.abs(np.random.default_rng(seed).standard_normal((n, k)))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (1, 3), (30, 2), (50, 3), (60, 5), (40, 7)])
def test_interval_holds_the_exact_value(n, k):
    points = sphere_front(n, k, seed=k)
    exact = hypervolume(points, np.zeros(k))
    estimate, low, high = hypervolume_mc(points, np.zeros(k), 50_000, seed=1, confidence=0.999)
    assert low <= exact <= high
    assert low <= estimate <= high and high - low <= 0.05 * exact


def test_single_box_is_exact():
    estimate, low, high = hypervolume_mc([[1.0, 2.0, 3.0]], [0, 0, 0], samples=10)
    assert estimate == low == high == pytest.approx(6.0)


def test_coverage_of_the_95_percent_interval():
    points = sphere_front(20, 4, seed=0)
    exact = hypervolume(points, np.zeros(4))
    inside = [
        low <= exact <= high
        for low, high in (hypervolume_mc(points, 0, 500, seed)[1:] for seed in range(200))
    ]
    assert 0.9 <= np.mean(inside) <= 0.99


def test_error_shrinks_with_samples_and_seed_reproduces():
    points = sphere_front(50, 4, seed=3)
    widths = [np.subtract(*hypervolume_mc(points, 0, s)[2:0:-1]) for s in (1_000, 100_000)]
    assert widths[1] < widths[0] / 5
    assert hypervolume_mc(points, 0, 2000, seed=7) == hypervolume_mc(points, 0, 2000, seed=7)


def test_minimization_and_points_outside_the_reference():
    points = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [5.0, 5.0]])
    exact = hypervolume(points, [4, 4], maximize=False)
    estimate, low, high = hypervolume_mc(points, [4, 4], 100_000, maximize=False)
    assert exact == 6.0 and low <= exact <= high and abs(estimate - exact) < 0.05
    assert hypervolume_mc(points, [0, 0], 100, maximize=False) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"samples": 1}, "samples must be >= 2"), ({"confidence": 1.0}, "confidence must be")],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hypervolume_mc([[1.0, 1.0]], [0, 0], **kwargs)


def test_many_objectives_estimate_is_fast_and_tight():
    points = sphere_front(200, 10, seed=0)
    start = time.perf_counter()
    estimate, low, high = hypervolume_mc(points, np.zeros(10), samples=20_000)
    assert time.perf_counter() - start < 30
    assert 0 < low < estimate < high and (high - low) / estimate < 0.05


def test_cost_estimate_orders_small_and_exploding_cases():
    cheap = hypervolume_seconds(sphere_front(100, 3, seed=0), np.zeros(3))
    exploding = hypervolume_seconds(sphere_front(200, 10, seed=0), np.zeros(10), budget=0.2)
    assert cheap < 1 and exploding > 3600

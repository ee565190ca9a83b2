"""Multi-objective hypergrid: test functions at known points, the [0, 1] normalization over the
grid, objective selection, the equal-weight scalar reward and the registry entry."""

import argparse
import math

import pytest
import torch
from gflow.envs.hypergrid import HyperGrid
from gflow.envs.mo_hypergrid import OBJECTIVES, MOHyperGrid, beale, branin, currin, shubert
from gflow.envs.registry import ENVIRONMENTS

from gflow.cli.envs import add_env_options, env_options


def at(x1: float, x2: float, low: float, high: float) -> torch.Tensor:
    """The unit-square point that maps onto (x1, x2) in the box [low, high]^2."""
    return (torch.tensor([[x1, x2]], dtype=torch.float64) - low) / (high - low)


def test_functions_at_known_points():
    u = torch.tensor([[(math.pi + 5) / 15, 2.275 / 15]], dtype=torch.float64)
    assert branin(u).item() == pytest.approx(0.397887, abs=1e-5)
    expected = (1 - math.exp(-1)) * 1868.5 / 159.5
    assert currin(torch.tensor([[0.5, 0.5]], dtype=torch.float64)).item() == pytest.approx(expected)
    assert currin(torch.tensor([[0.5, 0.0]])).isfinite().all()  # the x2 -> 0 limit
    assert shubert(at(-7.0835, 4.8580, -10, 10)).item() == pytest.approx(-186.7309, abs=1e-3)
    assert beale(at(3.0, 0.5, -4.5, 4.5)).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "names", [("branin", "currin"), ("shubert", "beale", "currin"), tuple(OBJECTIVES)]
)
def test_objectives_are_min_max_normalized_over_the_grid(names):
    env = MOHyperGrid(16, names)
    assert isinstance(env, HyperGrid) and env.n_reward_components == len(names)
    cells = env.enumerate_states()
    r = env.reward_components(cells)
    assert r.shape == (256, len(names))
    assert torch.allclose(r.min(0).values, torch.zeros(len(names)))
    assert torch.allclose(r.max(0).values, torch.ones(len(names)))
    for i, name in enumerate(names):
        f = OBJECTIVES[name](cells.double() / 15)
        assert torch.allclose(r[:, i].double(), (f.max() - f) / (f.max() - f.min()), atol=1e-6)


def test_objectives_follow_the_cell_not_the_batch_order():
    env = MOHyperGrid(8, ("branin", "currin"))
    cells = env.enumerate_states()
    perm = torch.randperm(len(cells), generator=torch.Generator().manual_seed(0))
    assert torch.equal(env.reward_components(cells[perm]), env.reward_components(cells)[perm])
    corner = torch.tensor([[0, 7]])
    assert env.reward_components(corner)[0, 1] == 1.0  # Currin is least at u = (0, 1)


def test_objectives_conflict():
    env = MOHyperGrid(32, ("branin", "currin"))
    r = env.reward_components(env.enumerate_states())
    assert r[:, 0].argmax() != r[:, 1].argmax()
    assert r.sum(1).max() < 2 - 1e-3  # no cell is best at both


def test_scalar_reward_is_the_equal_weight_sum():
    env = MOHyperGrid(8, ("branin", "currin", "beale"))
    cells = env.enumerate_states()
    expected = env.reward_components(cells).mean(1).clamp(min=env.floor).log()
    assert torch.allclose(env.log_reward(cells), expected)
    assert torch.allclose(env.energy(cells), -expected)


@pytest.mark.parametrize("names", [("branin",), ("branin", "nope"), ("currin", "currin"), ()])
def test_bad_objective_lists_are_rejected(names):
    with pytest.raises(ValueError, match="2 to 4 distinct objectives"):
        MOHyperGrid(8, names)


def test_registry_builds_it():
    spec = ENVIRONMENTS["mo-hypergrid"]
    parser = argparse.ArgumentParser()
    add_env_options(parser, spec)
    args = parser.parse_args(["--height", "8", "--objectives", "branin, shubert,beale"])
    env = spec(**env_options(args, spec))
    assert isinstance(env, MOHyperGrid) and env.height == 8
    assert env.objective_names == ["branin", "shubert", "beale"]

"""Conditioning: temperatures, preferences, encodings, scalarizations by hand, conditional rewards
in rollouts, and a conditional TB run matching the scalarized target at fixed preferences."""

import math

import pytest
import torch
from gflow.envs.hypergrid import HyperGrid
from gflow.envs.mo_hypergrid import MOHyperGrid

from gflow.conditioning import (
    ConditionalEnv,
    Conditioning,
    TemperatureDistribution,
    fourier,
    log_scalarize,
    sample_preferences,
    simplex_grid,
    thermometer,
)
from gflow.exact import distribution_errors, state_graph, target_distribution, terminal_distribution
from gflow.objectives import get_objective
from gflow.policies.mlp import MLPPolicy
from gflow.sampling import sample_backward, sample_forward
from gflow.scoring import score

R = torch.tensor([[0.5, 0.2]])
W = torch.tensor([[0.25, 0.75]])


def test_weighted_sum_by_hand():
    assert log_scalarize(R, W, "weighted_sum").item() == pytest.approx(math.log(0.275))


def test_log_convex_by_hand():
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(0.2)
    assert log_scalarize(R, W, "log_convex").item() == pytest.approx(expected)


def test_tchebycheff_by_hand():
    # 1 - max(0.25 * |1 - 0.5|, 0.75 * |1 - 0.2|) = 1 - 0.6
    assert log_scalarize(R, W, "tchebycheff").item() == pytest.approx(math.log(0.4))
    utopia = torch.tensor([0.5, 0.6])  # 1 - max(0.25 * 0, 0.75 * 0.4) = 0.7
    assert log_scalarize(R, W, "tchebycheff", utopia).item() == pytest.approx(math.log(0.7))


def test_tchebycheff_rewards_closeness_to_utopia():
    w = torch.tensor([[0.5, 0.5]] * 3)
    points = torch.tensor([[0.9, 0.8], [0.2, 0.1], [1.0, 1.0]])
    near, far, utopia = log_scalarize(points, w, "tchebycheff").tolist()
    assert utopia == 0.0 and utopia > near > far
    assert near == pytest.approx(math.log(0.9)) and far == pytest.approx(math.log(0.55))


def test_floor_keeps_log_rewards_finite():
    zeros = torch.zeros(1, 2)
    for method in ("weighted_sum", "log_convex", "tchebycheff"):
        out = log_scalarize(zeros, torch.tensor([[1.0, 0.0]]), method, floor=1e-4)
        assert out.item() == pytest.approx(math.log(1e-4))
    # a zero weight meeting a zero objective contributes nothing, not NaN
    mixed = log_scalarize(torch.tensor([[0.5, 0.0]]), torch.tensor([[1.0, 0.0]]), "log_convex")
    assert mixed.item() == pytest.approx(math.log(0.5))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        log_scalarize(torch.tensor([[0.5, float("nan")]]), W)
    with pytest.raises(ValueError, match=r"row 1 .*1\.5"):
        log_scalarize(torch.tensor([[0.5, 0.5], [1.5, 0.2]]), W.expand(2, -1))
    with pytest.raises(ValueError, match="sum to 1"):
        log_scalarize(R, torch.tensor([[0.5, 0.6]]))
    with pytest.raises(ValueError, match="scalarization"):
        log_scalarize(R, W, "chebyshev")
    cond = Conditioning(2)
    with pytest.raises(ValueError, match="beta"):
        cond.condition([0.5, 0.5], beta=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        TemperatureDistribution("uniform", (3.0, 1.0))
    with pytest.raises(ValueError, match="alpha"):
        Conditioning(2, alpha=[1.0, 0.0])
    with pytest.raises(ValueError, match="beta_max"):
        Conditioning(2, TemperatureDistribution("gamma", (2.0, 1.0)))


def test_reward_is_scalarized_to_the_power_beta():
    cond = Conditioning(
        2, TemperatureDistribution("uniform", (1.0, 8.0)), scalarization="tchebycheff"
    )
    rows = cond.condition([0.25, 0.75], beta=torch.tensor([1.0, 3.0, 8.0]))
    log_r = cond.log_reward(rows, R.expand(3, -1))
    assert torch.allclose(log_r.exp(), torch.tensor([0.4, 0.4**3, 0.4**8]))


@pytest.mark.parametrize(
    ("kind", "params", "low", "high", "mean"),
    [
        ("constant", (4.0,), 4.0, 4.0, 4.0),
        ("uniform", (1.0, 3.0), 1.0, 3.0, 2.0),
        ("loguniform", (1.0, 100.0), 1.0, 100.0, 99 / math.log(100)),
        ("gamma", (2.0, 1.5), 0.0, math.inf, 3.0),
    ],
)
def test_temperature_support_mean_and_reproducibility(kind, params, low, high, mean):
    dist = TemperatureDistribution(kind, params)
    torch.manual_seed(0)
    beta = dist.sample(20000)
    assert beta.shape == (20000,) and (beta >= low).all() and (beta <= high).all()
    assert beta.mean().item() == pytest.approx(mean, rel=0.02)
    if kind != "constant":
        assert beta.std() > 0.1
    torch.manual_seed(0)
    assert torch.equal(dist.sample(20000), beta)


def test_dirichlet_preferences_lie_on_the_simplex():
    torch.manual_seed(0)
    alpha = [1.0, 2.0, 3.0, 4.0]
    w = sample_preferences(20000, alpha)
    assert w.shape == (20000, 4) and (w >= 0).all()
    assert torch.allclose(w.sum(1), torch.ones(20000))
    assert torch.allclose(w.mean(0), torch.tensor(alpha) / 10, atol=0.01)
    torch.manual_seed(0)
    assert torch.equal(sample_preferences(20000, alpha), w)
    with pytest.raises(ValueError, match="alpha"):
        sample_preferences(3, [1.0, -1.0])


@pytest.mark.parametrize(("k", "n", "count"), [(4, 5, 35), (3, 5, 15), (2, 11, 11), (1, 3, 1)])
def test_simplex_grid_counts_and_resolution(k, n, count):
    grid = simplex_grid(k, n)
    assert grid.shape == (count, k) and count == math.comb(n + k - 2, k - 1)
    assert torch.allclose(grid.sum(1), torch.ones(count)) and (grid >= 0).all()
    steps = grid * (n - 1)
    assert torch.allclose(steps, steps.round())
    assert len({tuple(row) for row in grid.tolist()}) == count


def test_thermometer_is_monotone_and_saturates():
    beta = torch.linspace(0, 12, 200)
    enc = thermometer(beta, 16, 10.0)
    assert enc.shape == (200, 16) and (enc >= 0).all() and (enc <= 1).all()
    assert (enc.diff(dim=0) >= 0).all()
    inside = beta <= 10
    assert (enc[inside].sum(1).diff() > 0).all()
    assert (enc[0] == 0).all() and (enc[-1] == 1).all()


def test_fourier_shapes_and_injectivity():
    x = torch.linspace(0, 1, 50)[:, None].expand(50, 3)
    enc = fourier(x, 4)
    assert enc.shape == (50, 2 * 3 * 4)
    assert (enc[:, 0].diff() < 0).all()  # cos(pi x) is one-to-one on [0, 1]


@pytest.mark.parametrize(
    ("beta_enc", "pref_enc", "dim"),
    [("thermometer", "raw", 1 + 4 + 32), ("fourier", "fourier", 1 + 4 + 8 + 32), ("raw", "raw", 5)],
)
def test_encoding_layout_and_round_trip(beta_enc, pref_enc, dim):
    torch.manual_seed(0)
    temp = TemperatureDistribution("loguniform", (1.0, 64.0))
    cond = Conditioning(4, temp, beta_encoding=beta_enc, preference_encoding=pref_enc)
    info = cond.sample_info(7)
    rows = cond.encode(info)
    assert cond.cond_dim == dim and rows.shape == (7, dim)
    back = cond.decode(rows)
    assert torch.allclose(back.beta, info.beta) and torch.allclose(
        back.preferences, info.preferences
    )
    assert cond.sample(5).shape == (5, dim)


def test_building_a_conditioning_draws_nothing():
    torch.manual_seed(3)
    Conditioning(3, TemperatureDistribution("gamma", (2.0, 1.0)), beta_max=8.0)
    after = torch.rand(4)
    torch.manual_seed(3)
    assert torch.equal(torch.rand(4), after)


def test_condition_builds_rows_for_given_values():
    cond = Conditioning(2, TemperatureDistribution("uniform", (1.0, 16.0)))
    one = cond.condition([0.3, 0.7])
    assert one.shape == (1, cond.cond_dim)
    assert cond.decode(one).beta.item() == pytest.approx(16.0)  # default: beta_max
    many = cond.condition(simplex_grid(2, 5), beta=2.0)
    info = cond.decode(many)
    assert torch.allclose(info.preferences, simplex_grid(2, 5)) and (info.beta == 2.0).all()
    with pytest.raises(ValueError, match="needs preferences"):
        cond.condition()


def test_rollouts_carry_conditional_rewards():
    torch.manual_seed(0)
    base = MOHyperGrid(6, ("branin", "currin", "beale"))
    cond = Conditioning(
        3, TemperatureDistribution("uniform", (1.0, 4.0)), scalarization="tchebycheff"
    )
    env = ConditionalEnv(base, cond)
    policy = MLPPolicy(
        env.feature_dim, env.n_actions, env.n_backward, hidden=16, cond_dim=cond.cond_dim
    )
    rows = cond.sample(32)
    rollout = sample_forward(env, policy, 32, rows, epsilon=0.2)
    expected = cond.log_reward(rows, base.reward_components(rollout.terminal))
    assert torch.allclose(rollout.log_reward, expected)
    assert not torch.allclose(rollout.log_reward, base.log_reward(rollout.terminal))
    back = sample_backward(env, policy, rollout.terminal, rows)
    assert torch.allclose(back.log_reward, expected)
    assert torch.isfinite(score(env, policy, back).log_r_theta).all()
    fixed = env.at(rows[:1])
    assert torch.allclose(fixed.log_reward(rollout.terminal[:1]), expected[:1])
    terminal = rollout.terminal
    assert torch.equal(env.reward_components(terminal), base.reward_components(terminal))
    with pytest.raises(ValueError, match="conditional"):
        sample_forward(env, policy, 4)


def test_temperature_conditioning_of_a_single_objective():
    torch.manual_seed(0)
    base = HyperGrid(2, 5, r0=0.1)
    cond = Conditioning(0, TemperatureDistribution("gamma", (2.0, 1.0)), beta_max=8.0)
    env = ConditionalEnv(base, cond)
    policy = MLPPolicy(
        env.feature_dim, env.n_actions, env.n_backward, hidden=16, cond_dim=cond.cond_dim
    )
    rows = cond.sample(16)
    rollout = sample_forward(env, policy, 16, rows)
    expected = cond.decode(rows).beta * base.log_reward(rollout.terminal)
    assert torch.allclose(rollout.log_reward, expected)
    with pytest.raises(ValueError, match="objectives"):
        ConditionalEnv(base, Conditioning(2))


def test_conditional_tb_matches_scalarized_targets_at_fixed_preferences():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: thread overhead dominates on a shared CPU
    try:
        base = MOHyperGrid(8, ("branin", "currin"))
        cond = Conditioning(2, TemperatureDistribution("constant", (2.0,)), beta_encoding="raw")
        env = ConditionalEnv(base, cond)
        policy = MLPPolicy(
            env.feature_dim, env.n_actions, env.n_backward, hidden=64, cond_dim=cond.cond_dim
        )
        log_z = policy.log_z_parameters()
        rest = [p for p in policy.parameters() if all(p is not q for q in log_z)]
        opt = torch.optim.Adam([{"params": rest, "lr": 3e-3}, {"params": log_z, "lr": 3e-2}])
        tb = get_objective("tb")
        for _ in range(300):
            rows = cond.sample(64)
            loss = tb.loss(score(env, policy, sample_forward(env, policy, 64, rows, epsilon=0.05)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    graph = state_graph(env)
    targets = []
    for w in ([0.2, 0.8], [0.8, 0.2]):
        c = cond.condition(w)
        target, true_log_z = target_distribution(graph, env.at(c))
        learned = terminal_distribution(graph, env, policy, c)
        assert distribution_errors(learned, target)["tv"] < 0.1
        assert abs(policy.log_z(c, 1).item() - true_log_z) < 0.25
        targets.append(target)
    # TV(a, b) > 0.2 puts any single distribution >= 0.1 from a or b (triangle inequality):
    # an unconditional sampler cannot pass both checks
    assert distribution_errors(*targets)["tv"] > 0.2

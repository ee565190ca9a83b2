"""The throughput paths give what the plain ones give: rollouts pinned to the draws they made
before the speed-ups, scoring from recorded sampling outputs equal to scoring with a second
forward pass, and the fixed-horizon (GPU) sampler drawing from the same distribution."""

import pytest
import torch
from gflow.envs.hypergrid import HyperGrid
from test_sampling import check_chains

from gflow.checker import EnvCheckError, check_env
from gflow.exact import state_graph, terminal_distribution
from gflow.guards import LogitsError
from gflow.objectives import get_objective
from gflow.objectives.balance import trajectory_balance
from gflow.policies.mlp import MLPPolicy
from gflow.sampling import recorded_outputs, sample_forward, sample_forward_fixed
from gflow.scoring import score
from gflow.tabular import state_table
from gflow.training import TrainConfig, Trainer


def small_policy(env: HyperGrid, seed: int = 0, **kwargs) -> MLPPolicy:
    torch.manual_seed(seed)
    return MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=32, **kwargs)


@pytest.mark.parametrize("keep_outputs", [False, True])
@pytest.mark.parametrize("tabular", [False, True])
def test_rollouts_keep_the_draws_made_before_the_speed_ups(keep_outputs, tabular):
    # actions recorded with the sampler of commit cf80590 (before issue 11's changes)
    env = HyperGrid(3, 4)
    policy = small_policy(env)
    table = state_table(env) if tabular else None
    torch.manual_seed(1)
    r = sample_forward(env, policy, 6, keep_outputs=keep_outputs, table=table)
    if tabular:
        check_chains(env, r)
    pad = [-1] * 6
    assert r.actions.tolist() == [
        [0, 1, 1, 2, 0, 2, 0, 1, 3],
        [1, 1, 3, *pad],
        [3, -1, -1, *pad],
        [2, 3, -1, *pad],
        [1, 1, 3, *pad],
        [2, 0, 3, *pad],
    ]
    torch.manual_seed(2)
    r = sample_forward(env, policy, 5, epsilon=0.3, temperature=2.0, max_steps=4,
                       keep_outputs=keep_outputs, table=table)
    assert r.actions.tolist() == [
        [1, 1, 1, 0], [2, 3, -1, -1], [2, 2, 3, -1], [3, -1, -1, -1], [3, -1, -1, -1]
    ]
    assert r.done.tolist() == [False, True, True, True, True]


def grads(policy: MLPPolicy) -> list[torch.Tensor]:
    return [p.grad.clone() for p in policy.parameters() if p.grad is not None]


@pytest.mark.parametrize("options", [{}, {"learn_pb": True}, {"cond_dim": 3}, {"layers": 3}])
@pytest.mark.parametrize("max_steps", [None, 3])
@pytest.mark.parametrize("dedupe", [False, True])
def test_scoring_from_recorded_outputs_equals_a_second_forward_pass(options, max_steps, dedupe):
    env = HyperGrid(3, 4)
    policy = small_policy(env, **options)
    cond = torch.randn(12, 3) if options.get("cond_dim") else None
    torch.manual_seed(3)
    rollout = sample_forward(env, policy, 12, cond, epsilon=0.2, max_steps=max_steps,
                             keep_outputs=True, dedupe=dedupe)
    assert rollout.recorded is not None
    # distinct states are evaluated once when deduplicating (never with conditioning)
    shared = dedupe and cond is None
    assert (rollout.recorded.index is not None) == shared
    if shared:
        assert int(rollout.recorded.index.max()) + 1 < len(rollout.states)
    if max_steps is None:
        check_chains(env, rollout)
    rollout_plain = type(rollout)(**{**rollout.__dict__, "recorded": None})
    calls = []
    policy.register_forward_hook(lambda *_: calls.append(1))
    reused = score(env, policy, rollout)
    assert not calls  # no second forward pass
    fresh = score(env, policy, rollout_plain)
    assert calls
    for name in ("log_pf", "log_pb", "log_flow", "log_z"):
        assert torch.allclose(getattr(reused, name), getattr(fresh, name), atol=1e-5), name
    # gradients of a loss built on every output (TB plus the flows) agree
    def loss(traj):
        return trajectory_balance(traj) + (traj.log_flow * traj.flow_mask).pow(2).mean() if (
            max_steps is None) else ((traj.log_pf + traj.log_pb).sum() + traj.log_flow.sum())

    policy.zero_grad()
    loss(reused).backward()
    g_reused = grads(policy)
    policy.zero_grad()
    loss(fresh).backward()
    g_fresh = grads(policy)
    assert len(g_reused) == len(g_fresh) == len(list(policy.parameters()))
    for a, b in zip(g_reused, g_fresh, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_deduplicated_sampling_draws_from_the_same_logits():
    env = HyperGrid(2, 4)
    policy = small_policy(env, seed=7)
    for seed in range(3):
        torch.manual_seed(seed)
        plain = sample_forward(env, policy, 300)
        torch.manual_seed(seed)
        shared = sample_forward(env, policy, 300, dedupe=True)
        # the same logits up to float rounding: the same draws, bar a near-tie
        assert (plain.actions == shared.actions).float().mean() > 0.99


def test_recorded_outputs_are_used_once_and_only_while_the_parameters_are_unchanged():
    env = HyperGrid(2, 4)
    policy = small_policy(env)
    rollout = sample_forward(env, policy, 8, keep_outputs=True)
    record = rollout.recorded
    assert recorded_outputs(small_policy(env), rollout) is None  # another policy
    rollout.recorded = record
    with torch.no_grad():
        policy.flow_head.bias.add_(1.0)  # an in-place change bumps the version counters
    assert recorded_outputs(policy, rollout) is None
    rollout = sample_forward(env, policy, 8, keep_outputs=True)
    plain = type(rollout)(**{**rollout.__dict__, "recorded": None})
    optimizer = torch.optim.Adam(policy.parameters(), fused=True)
    trajectory_balance(score(env, policy, rollout)).backward()
    assert rollout.recorded is None  # used by that score
    optimizer.step()
    # scored again after the step: a fresh pass, as for a rollout that never recorded
    assert torch.equal(score(env, policy, rollout).log_pf, score(env, policy, plain).log_pf)


def test_subclasses_computing_outputs_differently_record_nothing():
    class Doubled(MLPPolicy):
        def forward_logits(self, features, cond=None):
            return 2 * super().forward_logits(features, cond)

    env = HyperGrid(2, 4)
    assert small_policy(env).recorder() is not None
    assert Doubled(env.feature_dim, env.n_actions, env.n_backward, hidden=8).recorder() is None


def test_hypergrid_stop_leaves_a_state_unchanged_within_the_horizon():
    env = HyperGrid(3, 4)
    states = env.enumerate_states()
    stop = torch.full((len(states),), env.stop)
    assert torch.equal(env.step(states, stop), states)
    assert env.horizon == 3 * 3 + 1


def test_fixed_horizon_rollouts_are_chains_of_the_same_distribution():
    env = HyperGrid(2, 4)
    policy = small_policy(env, seed=4)
    torch.manual_seed(5)
    small = sample_forward_fixed(env, policy, 64, epsilon=0.5)
    check_chains(env, small)
    assert small.actions.shape[1] == int(small.lengths.max())
    rollout = sample_forward_fixed(env, policy, 20_000)
    torch.manual_seed(6)
    chosen = sample_forward(env, policy, 50, fixed_horizon=True)  # what training on a GPU runs
    torch.manual_seed(6)
    assert torch.equal(chosen.actions, sample_forward_fixed(env, policy, 50).actions)
    graph = state_graph(env)
    exact = terminal_distribution(graph, env, policy)
    index = {key: i for i, key in enumerate(env.keys(graph.states))}
    hits = torch.tensor([index[k] for k in env.keys(rollout.terminal)])
    empirical = torch.bincount(hits, minlength=graph.n).double() / len(hits)
    assert 0.5 * (empirical - exact).abs().sum() < 0.02
    # scoring works on it as on any rollout
    assert torch.isfinite(trajectory_balance(score(env, policy, rollout)))


def test_fixed_horizon_rollouts_flag_bad_logits_and_short_horizons():
    env = HyperGrid(2, 4)
    policy = small_policy(env)
    with torch.no_grad():
        policy.forward_head.bias[0] = float("nan")
    with pytest.raises(LogitsError, match="NaN or \\+inf"):
        sample_forward_fixed(env, policy, 8)
    env.horizon = 2
    with pytest.raises(ValueError, match="horizon = 2 is too small"):
        sample_forward_fixed(env, small_policy(env, seed=1), 64)
    with pytest.raises(ValueError, match="declares no horizon"):
        env.horizon = None
        sample_forward_fixed(env, policy, 4)


class CoordinateSumIds(HyperGrid):
    def state_ids(self, states):
        return states.sum(dim=1)

    def keys(self, states):
        return [tuple(row) for row in states.tolist()]


class StopMoves(HyperGrid):
    def step(self, states, actions):
        return states + self._unit[actions.clamp(max=self.ndim - 1)]  # stop acts as the last move


def test_check_env_verifies_state_ids_and_the_horizon_contract():
    check_env(HyperGrid(2, 4))
    with pytest.raises(EnvCheckError, match="state_ids gives 1 to two states"):
        check_env(CoordinateSumIds(2, 4))
    with pytest.raises(EnvCheckError, match="step with the stop action changes state"):
        check_env(StopMoves(2, 4))
    short = HyperGrid(2, 4)
    short.horizon = 3
    with pytest.raises(EnvCheckError, match="did not stop within 3 steps"):
        check_env(short)
    short.horizon = 0
    with pytest.raises(EnvCheckError, match="horizon must be None or an int >= 1"):
        check_env(short)


@pytest.mark.parametrize("dedupe", [False, True])
def test_tabular_rollouts_are_the_plain_ones_and_score_alike(dedupe):
    env = HyperGrid(2, 5)
    policy = small_policy(env, seed=8)
    table = state_table(env)
    torch.manual_seed(9)
    plain = sample_forward(env, policy, 40, keep_outputs=True, dedupe=dedupe)
    torch.manual_seed(9)
    walked = sample_forward(env, policy, 40, keep_outputs=True, dedupe=dedupe, table=table)
    for name in ("states", "state_mask", "actions", "backward_actions", "lengths", "terminal",
                 "log_reward"):
        assert torch.equal(getattr(plain, name), getattr(walked, name)), name
    assert torch.equal(score(env, policy, plain).log_pf, score(env, policy, walked).log_pf)


def test_state_tables_hold_the_environments_own_features_masks_and_steps():
    env = HyperGrid(3, 4)
    table = state_table(env)
    assert table is not None and table.initial == 0
    states = env.enumerate_states()
    ids = env.state_ids(states)
    assert torch.equal(table.states[ids], states)
    assert torch.equal(table.features[ids], env.featurize(states))
    assert torch.equal(table.forward_mask[ids], env.forward_mask(states))
    for action in range(env.n_actions):
        legal = env.forward_mask(states)[:, action]
        if action == env.stop:
            assert torch.equal(table.children[ids, action], ids)
            continue
        moved = env.step(states[legal], torch.full((int(legal.sum()),), action))
        assert torch.equal(table.children[ids[legal], action], env.state_ids(moved))
        assert torch.equal(table.children[ids[~legal], action], ids[~legal])  # never taken
    # the trainer walks it; environments without ids or enumeration have none
    config = TrainConfig(steps=1, eval_every=0)
    trainer = Trainer(env, small_policy(env), get_objective("tb"), config)
    assert trainer.table is not None
    assert state_table(NotEnumerable(2, 3)) is None


class NotEnumerable(HyperGrid):
    def is_enumerable(self):
        return False


class LeavesTheGrid(HyperGrid):
    def step(self, states, actions):
        return states + 2 * self._unit[actions]


def test_state_tables_refuse_ids_that_collide_or_steps_that_leave_the_listed_states():
    with pytest.raises(ValueError, match="one id to two listed states"):
        state_table(CoordinateSumIds(2, 4))
    with pytest.raises(ValueError, match="missing from enumerate_states"):
        state_table(LeavesTheGrid(2, 4))


def test_the_trainer_records_the_sampling_pass_only_when_no_replayed_rows_join_the_batch(
    monkeypatch,
):
    import gflow.training

    env = HyperGrid(2, 4)
    kept = []

    def sample(*args, **kwargs):
        kept.append(kwargs["keep_outputs"])
        return sample_forward(*args, **kwargs)

    monkeypatch.setattr(gflow.training, "sample_forward", sample)
    config = TrainConfig(batch_size=8, replay_capacity=50, replay_fraction=0.5, seed=0)
    trainer = Trainer(env, small_policy(env), get_objective("tb"), config)
    batches = [trainer.batch() for _ in range(3)]
    # the buffer is empty at the first step: no replay, so that rollout is recorded
    assert kept == [True, False, False]
    assert batches[0].recorded is not None
    assert [int(b.done.shape[0]) for b in batches] == [8, 8, 8]
    trainer.loss(batches[-1]).backward()  # the unrecorded batch is scored by a second pass
    assert trainer.policy.forward_head.weight.grad.abs().sum() > 0

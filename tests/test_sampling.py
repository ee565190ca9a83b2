"""Rollouts are consistent trajectories, and scoring matches a per-state reference."""

import torch
from gflow.envs.hypergrid import HyperGrid

from gflow.policies.mlp import MLPPolicy
from gflow.sampling import (
    Rollout,
    masked_log_softmax,
    sample_backward,
    sample_forward,
    taken_log_probs,
)
from gflow.scoring import score


def unpack(rollout: Rollout) -> list[list[torch.Tensor]]:
    """Each trajectory's list of real states, from the step-major flat layout."""
    mask = rollout.state_mask
    owner = torch.arange(mask.shape[0]).expand(mask.shape[1], -1)[mask.T]
    return [list(rollout.states[owner == b]) for b in range(mask.shape[0])]


def check_chains(env: HyperGrid, rollout: Rollout) -> None:
    for b, states in enumerate(unpack(rollout)):
        n = int(rollout.lengths[b])
        assert torch.equal(states[0], env.initial(1)[0])
        assert torch.equal(states[-1], rollout.terminal[b])
        assert rollout.actions[b, n - 1] == env.stop and bool(rollout.done[b])
        assert (rollout.actions[b, n:] == -1).all()
        for t in range(n - 1):
            action = rollout.actions[b, t : t + 1]
            assert env.forward_mask(states[t][None])[0, action]
            assert torch.equal(env.step(states[t][None], action)[0], states[t + 1])
            assert rollout.backward_actions[b, t] == env.backward_action(states[t][None], action)


def test_forward_rollouts_are_chains():
    torch.manual_seed(0)
    env = HyperGrid(3, 4)
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=16)
    check_chains(env, sample_forward(env, policy, 32, epsilon=0.3))


def test_backward_rollouts_are_chains_from_s0():
    torch.manual_seed(1)
    env = HyperGrid(3, 4)
    terminal = torch.randint(0, 4, (20, 3))
    rollout = sample_backward(env, None, terminal)
    assert torch.equal(rollout.terminal, terminal)
    assert torch.equal(rollout.lengths, terminal.sum(1) + 1)
    check_chains(env, rollout)


def test_truncated_rollouts_are_incomplete():
    torch.manual_seed(2)
    env = HyperGrid(2, 8)
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=16)
    rollout = sample_forward(env, policy, 64, max_steps=3)
    assert (rollout.lengths <= 3).all()
    assert (~rollout.done).any()
    open_ = ~rollout.done
    assert torch.equal(rollout.state_mask[open_].sum(1), rollout.lengths[open_] + 1)


def test_score_matches_per_state_reference():
    torch.manual_seed(3)
    env = HyperGrid(2, 5, r0=0.1)
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=16, learn_pb=True)
    rollout = sample_forward(env, policy, 8, epsilon=0.2)
    traj = score(env, policy, rollout)
    for b, states in enumerate(unpack(rollout)):
        log_pf, log_pb = torch.tensor(0.0), torch.tensor(0.0)
        for t, s in enumerate(states):
            out = policy(env.featurize(s[None]))
            logits = out.forward_logits.masked_fill(~env.forward_mask(s[None]), -torch.inf)
            log_pf += logits.log_softmax(1)[0, rollout.actions[b, t]]
            if t > 0:
                back = out.backward_logits.masked_fill(~env.backward_mask(s[None]), -torch.inf)
                log_pb += back.log_softmax(1)[0, rollout.backward_actions[b, t - 1]]
            if t > 0:
                assert torch.allclose(traj.log_flow[b, t], out.log_flow[0], atol=1e-5)
        assert torch.allclose(traj.log_pf[b].sum(), log_pf, atol=1e-5)
        assert torch.allclose(traj.log_pb[b].sum(), log_pb, atol=1e-5)
        assert traj.log_flow[b, len(states)] == env.log_reward(rollout.terminal[b][None])[0]


def test_taken_log_probs_reads_several_actions_a_row_from_one_softmax():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=g)
    mask = torch.rand(6, 5, generator=g) < 0.6
    mask[:, 2] = True
    actions = torch.stack([mask.long().argmax(1), torch.full((6,), 2), torch.full((6,), -1)], 1)
    log_p = taken_log_probs(logits, mask, actions)
    expected = masked_log_softmax(logits, mask).gather(1, actions.clamp(min=0))
    torch.testing.assert_close(log_p[:, :2], expected[:, :2])
    assert torch.equal(log_p[:, 2], torch.zeros(6))
    torch.testing.assert_close(log_p[:, 1], taken_log_probs(logits, mask, actions[:, 1]))

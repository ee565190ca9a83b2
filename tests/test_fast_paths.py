"""The hot-path shortcuts give what the plain definitions give."""

import torch
from gflow.envs.hypergrid import HyperGrid

from gflow.policies.mlp import MLPPolicy
from gflow.sampling import sample_actions


def test_forward_logits_match_the_full_forward_pass():
    torch.manual_seed(0)
    features = torch.randn(7, 12)
    for cond_dim, learn_pb in [(0, False), (0, True), (3, False)]:
        policy = MLPPolicy(12, 5, 4, hidden=16, cond_dim=cond_dim, learn_pb=learn_pb)
        cond = torch.randn(7, cond_dim) if cond_dim else None
        expected = policy(features, cond).forward_logits
        assert torch.equal(policy.forward_logits(features, cond), expected)
        inputs = features if cond is None else torch.cat([features, cond], 1)
        assert torch.equal(expected, policy.forward_head(policy.trunk(inputs)))


def test_sample_actions_draw_from_the_masked_epsilon_mixture():
    torch.manual_seed(1)
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0], [3.0, 0.0, 0.0, 0.5]])
    mask = torch.tensor([[True, False, True, True], [False, True, True, True]])
    n = 40_000
    for temperature, epsilon in [(1.0, 0.0), (2.0, 0.3)]:
        rows = sample_actions(logits.repeat(n, 1), mask.repeat(n, 1), temperature, epsilon)
        freq = torch.stack([torch.bincount(rows[i::2], minlength=4) / n for i in range(2)])
        probs = torch.where(mask, logits / temperature, -torch.inf).softmax(1)
        probs = (1 - epsilon) * probs + epsilon * mask / mask.sum(1, keepdim=True)
        assert (freq[~mask] == 0).all()
        assert torch.allclose(freq, probs, atol=0.01)


def test_sample_actions_make_the_draw_of_torch_multinomial():
    probs = torch.rand(50, 6) * (torch.rand(50, 6) > 0.4)
    probs[:, -1] += 0.1
    logits, mask = probs.log(), probs > 0
    torch.manual_seed(2)
    expected = torch.multinomial(logits.masked_fill(~mask, -torch.inf).softmax(1), 1).squeeze(1)
    torch.manual_seed(2)
    assert torch.equal(sample_actions(logits, mask), expected)


def test_hypergrid_tables_match_one_hot_definitions():
    env = HyperGrid(3, 4)
    states = env.enumerate_states()
    one_hot = torch.nn.functional.one_hot
    assert torch.equal(env.featurize(states), one_hot(states, 4).flatten(1).float())
    parent, action = env.forward_mask(states)[:, :-1].nonzero(as_tuple=True)
    child = env.step(states[parent], action)
    assert torch.equal(child, states[parent] + one_hot(action, 3))
    assert torch.equal(env.backward_step(child, action), states[parent])
    assert torch.equal(env.forward_mask(states)[:, :-1], states < 3)
    assert env.forward_mask(states)[:, -1].all()

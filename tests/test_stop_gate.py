"""The graph transformer's stop gate: the stop probability is exactly sigmoid(stop output), the
rest is the softmax of the other legal actions, and training with it still reaches the target
over isomorphism classes (the symmetry-corrected exact check)."""

import pytest
import torch
from gflow.envs.graph_symmetry import SymmetryCorrected
from gflow.envs.graphs import GraphEnv
from gflow.envs.molecules.fragments import FragmentEnv
from test_graphs import edge_reward, train_tb

from gflow.exact import exact_report, state_graph
from gflow.policies.graph_transformer import GraphTransformerPolicy
from gflow.policies.registry import build_policy, policy_spec
from gflow.run_config import ModelConfig
from gflow.sampling import masked_log_softmax, sample_forward


def stop_outputs(policy: GraphTransformerPolicy, batch) -> torch.Tensor:
    """The forward head's raw stop output (before the gate) for each graph of `batch`."""
    heads = policy.forward_heads
    gate, heads.stop_gate = heads.stop_gate, False
    try:
        return policy(batch).forward_logits[:, heads.layout.stop_index]
    finally:
        heads.stop_gate = gate


@pytest.mark.parametrize("env", [GraphEnv(node_types=2, max_nodes=3), FragmentEnv(max_fragments=2)])
def test_gate_stops_with_probability_sigmoid_of_its_output(env):
    torch.manual_seed(0)
    policy = GraphTransformerPolicy.for_env(env, hidden=16, layers=1, heads=2, stop_gate=True)
    states = sample_forward(env, policy, 16).states
    batch = env.featurize(states)
    mask = env.forward_mask(states)
    logits = policy(batch).forward_logits
    probs = masked_log_softmax(logits.double(), mask).exp()
    torch.testing.assert_close(probs.sum(1), torch.ones(len(probs), dtype=torch.double))
    stop = env.forward_layout.stop_index
    others = mask.clone()
    others[:, stop] = False
    both = mask[:, stop] & others.any(1)
    assert both.any() and (~mask[:, stop]).any()
    expected = torch.sigmoid(stop_outputs(policy, batch).double())
    torch.testing.assert_close(probs[both, stop], expected[both])
    alone = mask[:, stop] & ~others.any(1)  # stop the only legal action: probability one
    torch.testing.assert_close(probs[alone, stop], torch.ones(int(alone.sum()), dtype=torch.double))
    # the continuing actions keep their softmax among themselves
    rest = masked_log_softmax(logits.double(), others).exp()[both, :stop]
    going = probs[both, :stop] / (1 - probs[both, stop : stop + 1])
    torch.testing.assert_close(going, rest, atol=1e-9, rtol=0)


def test_gate_has_finite_gradients_where_stop_is_the_only_legal_action():
    env = GraphEnv(node_types=1, max_nodes=2)
    policy = GraphTransformerPolicy.for_env(env, hidden=8, layers=1, heads=2, stop_gate=True)
    states = env.enumerate_states()
    logits = policy(env.featurize(states)).forward_logits
    masked_log_softmax(logits, env.forward_mask(states)).logsumexp(1).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in policy.parameters() if p.grad is not None)


def test_gated_training_reaches_the_exact_target_over_isomorphism_classes():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    env = GraphEnv(node_types=2, max_nodes=3, log_reward_fn=edge_reward)
    policy = GraphTransformerPolicy.for_env(env, hidden=32, layers=2, heads=2, stop_gate=True)
    graph = state_graph(env)
    before = exact_report(env, policy, graph)["exact_tv"]
    train_tb(SymmetryCorrected(env), policy, 100, 3e-3, 5e-2)
    assert exact_report(env, policy, graph)["exact_tv"] < 0.5 * before


def test_model_config_turns_the_gate_on_for_graph_policies_only():
    env = GraphEnv(node_types=2, max_nodes=3)
    gated = build_policy(env, ModelConfig(hidden=8, heads=2, stop_gate=True))
    assert gated.spec.options["stop_gate"] and gated.forward_heads.stop_gate
    assert "stop_gate" not in policy_spec(env, ModelConfig(hidden=8, heads=2)).options
    from gflow.envs.hypergrid import HyperGrid

    with pytest.raises(ValueError, match="stop_gate applies to the graph transformer"):
        policy_spec(HyperGrid(ndim=2, height=4), ModelConfig(stop_gate=True))

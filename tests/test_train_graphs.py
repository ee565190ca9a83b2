"""Training on graph environments: the trainer builds a graph transformer for them (through
wrappers), evaluates a symmetry-corrected env against the uncorrected target, and `gflow train`
runs on graphs and fragments."""

import json

import pytest
from gflow.envs.graph_symmetry import SymmetryCorrected
from gflow.envs.graphs import GraphEnv

from gflow.checkpoint import seed_everything
from gflow.cli import main
from gflow.conditioning import ConditionalEnv, Conditioning, TemperatureDistribution
from gflow.exact import exact_report, state_graph, target_distribution
from gflow.objectives import get_objective
from gflow.policies.graph_transformer import GraphTransformerPolicy
from gflow.training import ModelConfig, TrainConfig, Trainer, build_policy, train

QUIET = ["--quiet", "--device", "cpu", "--threads", "1"]


def edge_reward(states):
    """log R = number of edges."""
    return (states.edges >= 0).sum((1, 2)) / 2.0


def test_build_policy_picks_the_graph_transformer_through_wrappers():
    env = GraphEnv(node_types=2, max_nodes=3)
    config = ModelConfig(hidden=16, layers=1, learn_pb=True)
    conditioning = Conditioning(temperature=TemperatureDistribution("uniform", (1.0, 4.0)))
    wrapped = SymmetryCorrected(ConditionalEnv(env, conditioning))
    policy = build_policy(wrapped, config)
    assert isinstance(policy, GraphTransformerPolicy)
    assert policy.cond_dim == conditioning.cond_dim and policy.backward_head is not None
    assert len(policy.blocks) == 1 and policy.norm.normalized_shape == (16,)
    assert isinstance(build_policy(SymmetryCorrected(env), config), GraphTransformerPolicy)


def test_symmetry_corrected_run_is_evaluated_against_the_uncorrected_target():
    env = GraphEnv(node_types=1, max_nodes=3, log_reward_fn=edge_reward)
    corrected = SymmetryCorrected(env)
    config = TrainConfig(steps=3, batch_size=4, eval_every=0, top_k=0)
    seed_everything(0)
    policy = build_policy(corrected, ModelConfig(hidden=16, layers=1))
    metrics = train(corrected, policy, get_objective("tb"), config, quiet=True)
    graph = state_graph(env)
    _, true_log_z = target_distribution(graph, env)
    _, corrected_log_z = target_distribution(graph, corrected)
    assert abs(true_log_z - corrected_log_z) > 0.1
    assert metrics["true_log_z"] == pytest.approx(true_log_z)
    assert metrics["exact_tv"] == pytest.approx(exact_report(env, policy, graph)["exact_tv"])
    assert Trainer(corrected, policy, get_objective("tb"), config).target is env


def call(argv, capsys):
    """Run `gflow ARGV` in-process: exit status and stdout."""
    code = main(argv)
    return code, capsys.readouterr().out


def test_cli_trains_on_graphs_with_exact_evaluation(tmp_path, capsys):
    argv = ["train", "graphs", "--max-nodes", "3", "--node-types", "1", "--steps", "3"]
    argv += ["--batch-size", "4", "--hidden", "16", "--layers", "1", "--out", str(tmp_path)]
    code, out = call([*argv, *QUIET], capsys)
    assert code == 0 and "exact TV" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 <= metrics["exact_tv"] <= 1 and metrics["steps"] == 3


def test_cli_trains_on_fragments(tmp_path, capsys):
    argv = ["train", "frags", "--steps", "2", "--batch-size", "4", "--hidden", "32"]
    argv += ["--layers", "1", "--out", str(tmp_path)]
    code, out = call([*argv, *QUIET], capsys)
    assert code == 0 and "frags tb: 2 steps" in out and "exact TV" not in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["unique_objects"] >= 1

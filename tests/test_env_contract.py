"""The written environment contract: what `Env` declares by default, what wrappers pass on or
say themselves, and the checker's verification of the declarations."""

import pytest
import torch
from gflow.envs.graph_symmetry import SymmetryCorrected
from gflow.envs.graphs import GraphEnv
from gflow.envs.hypergrid import HyperGrid
from gflow.envs.mo_hypergrid import MOHyperGrid

from gflow.checker import EnvCheckError, check_env
from gflow.conditioning import ConditionalEnv, Conditioning
from gflow.env import Env, EnvWrapper
from gflow.policies.registry import build_policy
from gflow.run_config import ModelConfig


def test_defaults_describe_a_plain_environment():
    env = HyperGrid(2, 4)
    assert (env.conditional, env.conditioning, env.cond_dim) == (False, None, 0)
    assert env.n_reward_components == 0 and env.policy_kind == "mlp"
    assert env.exact_target() is env
    assert check_env(env, n_trajectories=4).states > 0


def test_wrappers_pass_declarations_on_and_say_their_own():
    base = MOHyperGrid(5, ["branin", "currin"])
    cond = Conditioning(n_reward_components=2)
    env = ConditionalEnv(base, cond)
    assert env.conditional and env.conditioning is cond and env.cond_dim == cond.cond_dim
    assert env.n_reward_components == 2 and env.policy_kind == "mlp" and env.exact_target() is env
    fixed = env.at(cond.condition([0.5, 0.5]))
    assert not fixed.conditional and fixed.cond_dim == 0
    assert EnvWrapper(env).conditional and EnvWrapper(env).cond_dim == cond.cond_dim
    graphs = GraphEnv(node_types=2, max_nodes=3)
    corrected = SymmetryCorrected(graphs)
    assert corrected.policy_kind == "graph-transformer" and corrected.exact_target() is graphs
    assert not corrected.conditional and corrected.n_reward_components == 0


def test_the_policy_kind_picks_the_policy():
    graphs = SymmetryCorrected(GraphEnv(node_types=2, max_nodes=3))
    assert build_policy(graphs, ModelConfig(hidden=8, heads=2)).spec.name == "graph-transformer"
    env = ConditionalEnv(HyperGrid(2, 4), Conditioning())
    policy = build_policy(env, ModelConfig(hidden=8))
    assert policy.spec.name == "mlp" and policy.spec.options["cond_dim"] == env.cond_dim


class UnknownPolicy(HyperGrid):
    policy_kind = "crystal-ball"


class WrongComponentCount(HyperGrid):
    n_reward_components = 2  # objectives() keeps the default single component


class FineGrid(HyperGrid):
    fine_actions = 2  # a split of graph node actions, on a grid


class OtherTarget(HyperGrid):
    def exact_target(self) -> Env:
        return HyperGrid(3, 4)


class WideRows(Conditioning):
    def sample(self, n: int) -> torch.Tensor:
        return torch.zeros(n, self.cond_dim + 1)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (UnknownPolicy(2, 4), "policy_kind 'crystal-ball' is not a registered policy"),
        (WrongComponentCount(2, 4), ", 2) (n_reward_components)"),
        (FineGrid(2, 4), "fine_actions = 2 splits graph node actions; policy_kind is 'mlp'"),
        (OtherTarget(2, 4), "exact_target() has 4 forward"),
        (ConditionalEnv(HyperGrid(2, 4), WideRows()), "conditioning.sample(3) must give"),
    ],
    ids=["policy-kind", "components", "fine-actions", "exact-target", "conditioning"],
)
def test_the_checker_verifies_the_declarations(env, message):
    with pytest.raises(EnvCheckError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_env(env, n_trajectories=4)


def test_a_well_declared_conditional_env_is_checked_at_a_condition():
    env = ConditionalEnv(HyperGrid(2, 4), Conditioning())
    with pytest.raises(ValueError, match="check env.at"):
        check_env(env, n_trajectories=4)
    assert check_env(env.at(env.conditioning.condition(beta=1.0)), n_trajectories=4).states > 0

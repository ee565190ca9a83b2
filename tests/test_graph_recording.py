"""The graph transformer's sampling passes, recorded, replace the scoring pass: the same draws,
and scores and gradients equal to a second forward pass over every visited state."""

import pytest
import torch
from gflow.envs.graphs import GraphEnv
from gflow.envs.molecules.fragments import FragmentEnv

from gflow.conditioning import ConditionalEnv, Conditioning, TemperatureDistribution
from gflow.objectives import get_objective
from gflow.policies.graph_transformer import GraphTransformerPolicy
from gflow.sampling import sample_forward
from gflow.scoring import score
from gflow.training import TrainConfig, Trainer


def edge_reward(states):
    return states.edges.flatten(1).sum(1).float() * 0.5


def heavy_atoms(mols):
    return torch.tensor([1.0 + 0.1 * mol.GetNumHeavyAtoms() for mol in mols])


def conditional(env):
    conditioning = Conditioning(
        temperature=TemperatureDistribution("uniform", (1.0, 4.0)),
        beta_encoding="thermometer",
        beta_bins=4,
        beta_max=4.0,
    )
    return ConditionalEnv(env, conditioning)


CASES = {
    "graphs-learned-pb": lambda: (GraphEnv(node_types=2, max_nodes=4, log_reward_fn=edge_reward),
                                  {"learn_pb": True}),
    "fragments-conditional": lambda: (conditional(FragmentEnv(max_fragments=3,
                                                              reward=heavy_atoms)), {}),
}


def grads(policy):
    return [p.grad.clone() for p in policy.parameters() if p.grad is not None]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("max_steps", [None, 2])
def test_recorded_sampling_passes_score_like_a_second_pass(case, max_steps):
    env, options = CASES[case]()
    torch.manual_seed(0)
    cond_dim = env.cond_dim if env.conditional else 0
    policy = GraphTransformerPolicy.for_env(env, hidden=32, layers=2, cond_dim=cond_dim,
                                            **options)
    cond = env.conditioning.sample(10) if env.conditional else None
    torch.manual_seed(1)
    plain = sample_forward(env, policy, 10, cond, epsilon=0.1, max_steps=max_steps)
    torch.manual_seed(1)
    rollout = sample_forward(env, policy, 10, cond, epsilon=0.1, max_steps=max_steps,
                             keep_outputs=True)
    assert torch.equal(rollout.actions, plain.actions)  # the same draws
    assert rollout.recorded is not None
    calls = []
    policy.register_forward_hook(lambda *_: calls.append(1))
    reused = score(env, policy, rollout)
    assert not calls  # no second pass
    fresh = score(env, policy, plain)
    assert calls
    for name in ("log_pf", "log_pb", "log_flow", "log_z"):
        torch.testing.assert_close(getattr(reused, name), getattr(fresh, name),
                                   atol=1e-5, rtol=1e-5, msg=name)
    objective = get_objective("db" if max_steps else "tb")

    def gradients(traj):
        policy.zero_grad()
        (objective.loss(traj) + traj.log_flow.sum()).backward()
        return grads(policy)

    g_reused, g_fresh = gradients(reused), gradients(fresh)
    assert len(g_reused) == len(g_fresh) > 0.9 * len(list(policy.parameters()))
    for a, b in zip(g_reused, g_fresh, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_subclasses_computing_outputs_differently_record_nothing():
    class Doubled(GraphTransformerPolicy):
        def forward_logits(self, features, cond=None):
            return 2 * super().forward_logits(features, cond)

    env = GraphEnv(node_types=2, max_nodes=3)
    assert GraphTransformerPolicy.for_env(env, hidden=16, layers=1).recorder() is not None
    assert Doubled.for_env(env, hidden=16, layers=1).recorder() is None


def test_trainer_scores_graph_batches_from_the_sampling_passes():
    env = GraphEnv(node_types=2, max_nodes=3, log_reward_fn=edge_reward)
    torch.manual_seed(0)
    policy = GraphTransformerPolicy.for_env(env, hidden=16, layers=1)
    trainer = Trainer(env, policy, get_objective("tb"), TrainConfig(steps=2, batch_size=8))
    calls = []
    policy.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    trainer.train_step()
    assert calls and all(calls)  # every pass ran while sampling, with autograd on
    assert all(p.grad is not None for p in policy.parameters() if p.requires_grad)

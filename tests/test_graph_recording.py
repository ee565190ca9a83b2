"""The graph transformer's sampling passes, recorded, replace the scoring pass: the same draws,
and scores and gradients equal to a second forward pass over every visited state."""

import pytest
import torch
from gflow.envs.graphs import GraphEnv
from gflow.envs.molecules.fragments import FragmentEnv

from gflow.conditioning import ConditionalEnv, Conditioning, TemperatureDistribution
from gflow.objectives import get_objective, objective
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


def seeded(case, n):
    """The case's environment and policy options, a seeded small policy, n conditioning rows."""
    env, options = case()
    torch.manual_seed(0)
    cond_dim = env.cond_dim if env.conditional else 0
    policy = GraphTransformerPolicy.for_env(env, hidden=32, layers=2, cond_dim=cond_dim,
                                            **options)
    return env, options, policy, env.conditioning.sample(n) if env.conditional else None


def grads(policy):
    return [p.grad.clone() for p in policy.parameters() if p.grad is not None]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("max_steps", [None, 2])
def test_recorded_sampling_passes_score_like_a_second_pass(case, max_steps):
    env, _, policy, cond = seeded(CASES[case], 10)
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


def forced_stops(env, states):
    """Rows of `states` whose only legal action is stop."""
    mask = env.forward_mask(states)
    return mask[:, env.stop] & (mask.sum(1) == 1)


FORCED_STOP_CASES = {
    "fragments-conditional": CASES["fragments-conditional"],
    "fragments-learned-pb": lambda: (FragmentEnv(max_fragments=2, reward=heavy_atoms),
                                     {"learn_pb": True}),
}


@pytest.mark.parametrize("case", sorted(FORCED_STOP_CASES))
def test_forced_stops_left_out_of_the_record_score_tb_exactly(case):
    env, options, policy, cond = seeded(FORCED_STOP_CASES[case], 12)
    torch.manual_seed(1)
    plain = sample_forward(env, policy, 12, cond, epsilon=0.1)
    rows = []
    hook = policy.register_forward_hook(lambda _, args, __: rows.append(args[0].num_graphs))
    torch.manual_seed(1)
    rollout = sample_forward(env, policy, 12, cond, epsilon=0.1, keep_outputs=True,
                             record_forced_stops=False)
    hook.remove()
    assert torch.equal(rollout.actions, plain.actions)  # the same draws
    forced = int(forced_stops(env, rollout.states).sum())
    uniform_pb = "learn_pb" not in options
    assert forced > 0
    # a learned P_B reads the terminal state, so its recorder keeps every state
    assert sum(rows) == len(rollout.state_mask.nonzero()) - (forced if uniform_pb else 0)
    reused, fresh = score(env, policy, rollout), score(env, policy, plain)
    skipped = reused.log_flow.isnan()
    assert int(skipped.sum()) == (forced if uniform_pb else 0)
    torch.testing.assert_close(reused.log_flow[~skipped], fresh.log_flow[~skipped])
    for name in ("log_pf", "log_pb", "log_z"):
        torch.testing.assert_close(getattr(reused, name), getattr(fresh, name),
                                   atol=1e-5, rtol=1e-5, msg=name)
    tb = get_objective("tb")

    def gradients(traj):
        policy.zero_grad()
        tb.loss(traj).backward()
        return grads(policy)

    for a, b in zip(gradients(reused), gradients(fresh), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_training_skips_forced_stops_only_for_objectives_that_read_no_flow():
    env = FragmentEnv(max_fragments=2, reward=heavy_atoms)

    def trainer(objective):
        torch.manual_seed(0)
        policy = GraphTransformerPolicy.for_env(env, hidden=16, layers=1)
        rows = []
        policy.register_forward_hook(lambda _, args, __: rows.append(args[0].num_graphs))
        return Trainer(env, policy, objective, TrainConfig(steps=1, batch_size=16)), rows

    for name, skips in (("tb", True), ("db", False), ("subtb", False)):
        run, rows = trainer(get_objective(name))
        assert torch.isfinite(run.train_step())
        visited = int(run.last_batch.state_mask.sum())
        forced = int(forced_stops(env, run.last_batch.states).sum())
        assert forced > 0
        assert sum(rows) == visited - (forced if skips else 0), name

    @objective
    def undeclared_flows(traj):  # reads state flows without naming log_flows in its needs
        return (traj.log_flow * traj.flow_mask).pow(2).mean()

    run, _ = trainer(undeclared_flows)
    with pytest.raises(FloatingPointError, match="must name 'log_flows' in its needs"):
        run.train_step()

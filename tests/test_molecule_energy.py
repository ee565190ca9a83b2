"""Partial molecules have an intermediate energy, so forward-looking objectives train on them."""

import torch
from gflow.envs.molecules.fragments import FragmentEnv

from gflow.checker import check_env
from gflow.objectives import get_objective
from gflow.policies.graph_transformer import GraphTransformerPolicy
from gflow.sampling import sample_forward
from gflow.scoring import score


def heavy_atoms(mols):
    """A cheap positive reward: grows with molecule size."""
    return torch.tensor([1.0 + 0.1 * mol.GetNumHeavyAtoms() for mol in mols])


def test_fragment_energy_is_minus_log_reward_of_the_partial_molecule():
    env = FragmentEnv(max_fragments=3, reward=heavy_atoms)
    torch.manual_seed(0)
    policy = GraphTransformerPolicy.for_env(env, hidden=32, layers=1)
    rollout = sample_forward(env, policy, 8, max_steps=2)
    energy = env.energy(rollout.states)
    built = rollout.states.n_nodes > 0
    expected = -torch.log(heavy_atoms(env.to_mol(env.select(rollout.states, built))))
    assert torch.allclose(energy[built], expected)
    assert (energy[~built] == 0).all()
    check_env(env, n_trajectories=4)


def test_fl_db_scores_incomplete_fragment_trajectories():
    env = FragmentEnv(max_fragments=3, reward=heavy_atoms)
    torch.manual_seed(1)
    policy = GraphTransformerPolicy.for_env(env, hidden=32, layers=1)
    objective = get_objective("fl-db")
    rollout = sample_forward(env, policy, 8, max_steps=2)
    traj = score(env, policy, rollout, objective.needs)
    loss = objective.loss(traj)
    assert torch.isfinite(loss)
    loss.backward()

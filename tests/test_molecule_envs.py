"""Atom and fragment molecule environments: every state up to 2 atoms / 2 fragments, valid
molecules at every terminal state, fragment bonds at attachment atoms, rewards and errors."""

import json
import math

import pytest
import torch
from gflow.envs.graph_symmetry import SymmetryCorrected, automorphism_count
from gflow.envs.molecules.atoms import AtomEnv
from gflow.envs.molecules.fragments import Fragment, FragmentEnv, load_fragments
from rdkit import Chem
from test_graphs import assert_chains, assert_consistent

from gflow.policies.base import Policy, PolicyOutput
from gflow.policies.graph_transformer import GraphTransformerPolicy
from gflow.sampling import sample_backward, sample_forward
from gflow.scoring import score


class Uniform(Policy):
    """Equal logits for every action."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.n_actions = n_actions

    def forward(self, features, cond=None) -> PolicyOutput:
        n = features.num_graphs
        return PolicyOutput(torch.zeros(n, self.n_actions), None, torch.zeros(n))


def random_terminals(env, n: int, seed: int):
    torch.manual_seed(seed)
    return sample_forward(env, Uniform(env.n_actions), n).terminal


def canonical(smiles: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


# --- atoms ---------------------------------------------------------------------------------


def test_atom_env_enumerates_every_molecule_up_to_two_atoms():
    env = AtomEnv(max_atoms=2)
    states = env.enumerate_states()
    assert assert_consistent(env, states) > 0
    terminal = env.select(states, env.forward_mask(states)[:, env.stop])
    valence = {"C": 4, "N": 3, "O": 2, "F": 1}
    expected = set(valence)
    for a in valence:
        for b in valence:
            for order, symbol in enumerate("-=#", start=1):
                if order <= min(valence[a], valence[b]):
                    expected.add(canonical(a + symbol + b))
    smiles = env.to_smiles(terminal)
    assert len(smiles) == len(set(smiles)) == len(expected)
    assert set(smiles) == expected


def test_atom_env_states_up_to_three_atoms_are_consistent_molecules():
    env = AtomEnv(max_atoms=3)
    states = env.enumerate_states()
    assert len(states) > 100
    assert_consistent(env, states)
    assert all(
        Chem.MolFromSmiles(s) is not None
        for s in env.to_smiles(env.select(states, states.n_nodes > 0))
    )


def test_atom_env_random_molecules_are_valid_and_connected():
    env = AtomEnv(elements=("C", "N", "O", "F", "S", "Cl"), max_atoms=12)
    terminal = random_terminals(env, 64, seed=0)
    assert (env.free_valence(terminal) >= 0).all()
    for mol, count in zip(env.to_mol(terminal), terminal.n_nodes.tolist(), strict=True):
        assert mol.GetNumAtoms() == count >= 1
        assert len(Chem.GetMolFrags(mol)) == 1
        assert Chem.MolFromSmiles(Chem.MolToSmiles(mol)) is not None
    assert terminal.n_nodes.float().mean() > 3


def test_atom_env_rejects_bad_elements():
    with pytest.raises(ValueError, match="unknown element"):
        AtomEnv(elements=("C", "Xx"))
    with pytest.raises(ValueError, match="no usable default valence"):
        AtomEnv(elements=("C", "He"))
    with pytest.raises(ValueError, match="distinct"):
        AtomEnv(elements=("C", "C"))


def test_reward_callable_gives_log_reward_and_bad_rewards_raise():
    env = AtomEnv(max_atoms=2, reward=lambda mols: [m.GetNumAtoms() for m in mols])
    states = env.select(env.enumerate_states(), torch.arange(1, 6))
    torch.testing.assert_close(env.log_reward(states), states.n_nodes.float().log())
    assert (AtomEnv(max_atoms=2).log_reward(states) == 0).all()
    broken = AtomEnv(max_atoms=2, reward=lambda mols: [0.0] * len(mols))
    with pytest.raises(ValueError, match="finite and > 0"):
        broken.log_reward(states)
    wrong = AtomEnv(max_atoms=2, reward=lambda mols: [1.0])
    with pytest.raises(ValueError, match="shape"):
        wrong.log_reward(states)


# --- fragments -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_fragments() -> tuple[FragmentEnv, object]:
    env = FragmentEnv(max_fragments=2)
    return env, env.enumerate_states()


def test_fragment_vocabulary_is_the_72_fragments():
    fragments = load_fragments()
    assert len(fragments) == 72
    assert sum(len(f.attach) for f in fragments) == 127
    env = FragmentEnv(fragments, max_fragments=9)
    assert env.n_actions == 72 + 9 * 6 * 127 + 1


def test_fragment_env_enumerates_every_state_up_to_two_fragments(two_fragments):
    env, states = two_fragments
    slots = env.n_pairs
    assert len(states) == 1 + len(env.fragments) + slots * (slots + 1) // 2
    assert len(set(env.keys(states))) == len(states)
    assert assert_consistent(env, states) == 2 * int((states.n_nodes == 2).sum()) + len(
        env.fragments
    )


def test_fragment_molecules_bond_only_at_attachment_atoms(two_fragments):
    env, states = two_fragments
    pairs = env.select(states, states.n_nodes == 2)
    mols = env.to_mol(pairs)
    nodes, edges = pairs.nodes.tolist(), pairs.edges.tolist()
    for b, mol in enumerate(mols):
        first, second = (env.mols[t] for t in nodes[b])
        assert mol.GetNumAtoms() == first.GetNumAtoms() + second.GetNumAtoms()
        assert mol.GetNumBonds() == first.GetNumBonds() + second.GetNumBonds() + 1
        u = env.fragments[nodes[b][0]].attach[edges[b][0][1]]
        v = first.GetNumAtoms() + env.fragments[nodes[b][1]].attach[edges[b][1][0]]
        bond = mol.GetBondBetweenAtoms(u, v)
        assert bond is not None and bond.GetBondType() == Chem.BondType.SINGLE
        assert Chem.MolFromSmiles(Chem.MolToSmiles(mol)) is not None


def test_fragment_random_molecules_are_valid_trees_of_fragments():
    env = FragmentEnv(max_fragments=9)
    terminal = random_terminals(env, 64, seed=1)
    assert terminal.n_nodes.max() > 3
    mols = env.to_mol(terminal)
    nodes = terminal.nodes.tolist()
    for b, mol in enumerate(mols):
        types = [t for t in nodes[b] if t >= 0]
        parts = [env.mols[t] for t in types]
        assert mol.GetNumAtoms() == sum(p.GetNumAtoms() for p in parts)
        assert mol.GetNumBonds() == sum(p.GetNumBonds() for p in parts) + len(types) - 1
        assert len(Chem.GetMolFrags(mol)) == 1
        assert Chem.MolFromSmiles(Chem.MolToSmiles(mol)) is not None
    assert assert_consistent(env, terminal) > 0


def test_custom_fragment_lists_and_errors(tmp_path):
    custom = [Fragment("C", (0,)), Fragment("c1ccccc1", (0, 3))]
    env = FragmentEnv(custom, max_fragments=3)
    assert env.n_actions == 2 + 3 * 2 * 3 + 1
    path = tmp_path / "frags.json"
    path.write_text(
        json.dumps([{"smiles": "C", "attach": [0]}, {"smiles": "CO", "attach": [0, 1]}])
    )
    assert [f.smiles for f in FragmentEnv(path).fragments] == ["C", "CO"]
    with pytest.raises(ValueError, match="attachment atoms"):
        FragmentEnv([Fragment("C", (3,))])
    with pytest.raises(ValueError, match="does not parse"):
        FragmentEnv([Fragment("C1CC", (0,))])
    path.write_text(json.dumps({"smiles": "C"}))
    with pytest.raises(ValueError, match="expected a JSON list"):
        FragmentEnv(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FragmentEnv(tmp_path / "missing.json")


def test_graph_transformer_samples_and_scores_fragment_molecules():
    torch.manual_seed(0)
    env = FragmentEnv(max_fragments=4)
    policy = GraphTransformerPolicy.for_env(env, hidden=32, layers=2, heads=4, learn_pb=True)
    rollout = sample_forward(env, policy, 8)
    traj = score(env, policy, rollout)
    assert torch.isfinite(traj.log_pf).all() and torch.isfinite(traj.log_pb).all()
    assert (traj.log_pf[traj.transition_mask] < 0).any()
    assert len(env.to_smiles(rollout.terminal)) == 8


def test_symmetry_correction_on_fragment_graphs():
    env = FragmentEnv(max_fragments=3, reward=lambda mols: [1.0 + m.GetNumAtoms() for m in mols])
    terminal = random_terminals(env, 16, seed=2)
    corrected = SymmetryCorrected(env).log_reward(terminal)
    aut = [math.log(automorphism_count(*g)) for g in env.labeled_graphs(terminal)]
    torch.testing.assert_close(corrected, env.log_reward(terminal) + torch.tensor(aut))


def test_fragment_rollouts_are_chains_of_molecules():
    env = FragmentEnv(max_fragments=6)
    torch.manual_seed(4)
    forward = sample_forward(env, Uniform(env.n_actions), 32)
    assert_chains(env, forward)
    assert_chains(env, sample_backward(env, None, forward.terminal))

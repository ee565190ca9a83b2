"""Molecule rewards: sEH proxy golden values, featurization, safe weight loading, QED/SA/MW."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch
from gflow.envs.molecules.fragments import FragmentEnv
from gflow.envs.rewards import (
    SEHProxy,
    molecular_weight,
    mw_reward,
    normalize_mw,
    normalize_sa,
    qed,
    sa_reward,
    sa_score,
    seh_reward,
    to_mols,
)
from gflow.envs.rewards.restricted_pickle import RefusedGlobal
from gflow.envs.rewards.seh import PARAMS_FILE, featurize, load_params
from rdkit import Chem
from test_molecule_envs import random_terminals

import gflow.config
from gflow.config import find_data

# molecules covering every featurization rule: bond-less ones get a self edge, dative and
# unspecified bonds get all-zero edge features, Z = 56 is the last atomic-number column
ODD_SMILES = [
    "C",
    "[Na+].[Cl-]",
    "OCC.[Na]",
    "[NH3]->[Cu+2]",
    "C~C",
    "[2H]C",
    "[Ba+2].[O-2]",
    "[La]",
    "CC#N",
    "C=CC=O",
    "c1ccncc1",
    "c1cc[nH]c1",
    "ICBr",
    "[*]CC",
    "C[Se]C",
    "[NH4+]",
    "O=S(=O)(O)c1ccc(C#CC=C)cc1",
]


@pytest.fixture(scope="module")
def params_path():
    return find_data(PARAMS_FILE)


@pytest.fixture(scope="module")
def reference(seh_reference) -> list[dict]:
    return seh_reference


@pytest.fixture(scope="module")
def proxy(params_path) -> SEHProxy:
    return SEHProxy.from_file(params_path, device="cpu")


def test_seh_reproduces_reference_values(proxy, reference):
    raw = proxy([entry["smiles"] for entry in reference])
    expected = torch.tensor([entry["seh_proxy_raw"] for entry in reference])
    assert len(reference) == 160
    error = (raw - expected).abs()
    worst = int(error.argmax())
    assert error.max() < 1e-3, f"{reference[worst]['smiles']}: {raw[worst]} vs {expected[worst]}"


@pytest.mark.parametrize(
    ("key", "score", "tolerance"),
    # the file rounds QED and SA to 6 decimals and the weight to 3; float32 adds < 3e-7
    [("qed", qed, 1e-6), ("sa", sa_score, 1e-6), ("mw", molecular_weight, 1e-3)],
)
def test_chem_reproduces_reference_values(reference, key, score, tolerance):
    values = score([entry["smiles"] for entry in reference]).double()
    expected = torch.tensor([entry[key] for entry in reference], dtype=torch.float64)
    assert torch.allclose(values, expected, rtol=0, atol=tolerance)


def _readme_features(mol: Chem.Mol) -> tuple[np.ndarray, list[tuple[int, int, tuple]]]:
    """The README's node and edge features, one atom and one bond at a time."""
    elements = {1: 0, 6: 1, 7: 2, 8: 3, 9: 4}
    hybrid = {Chem.HybridizationType.SP: 10, Chem.HybridizationType.SP2: 11}
    hybrid[Chem.HybridizationType.SP3] = 12
    x = np.zeros((mol.GetNumAtoms(), 71), dtype=np.float32)
    for atom in mol.GetAtoms():
        row, z = x[atom.GetIdx()], atom.GetAtomicNum()
        row[elements.get(z, 5)] = 1
        row[9] = atom.GetIsAromatic()
        if atom.GetHybridization() in hybrid:
            row[hybrid[atom.GetHybridization()]] = 1
        row[13] = atom.GetTotalNumHs(includeNeighbors=True)
        if 1 <= z <= 56:
            row[13 + z] = 1
    types = [Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE]
    types.append(Chem.BondType.AROMATIC)
    edges = []
    for bond in mol.GetBonds():
        feature = tuple(float(bond.GetBondType() == t) for t in types)
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        edges += [(i, j, feature), (j, i, feature)]
    return x, edges or [(0, 0, (0.0, 0.0, 0.0, 0.0))]


def test_featurize_matches_readme_rules():
    mols = to_mols(ODD_SMILES)
    assert all(mol is not None for mol in mols)
    batch = featurize(mols)
    assert batch.num_graphs == len(mols)
    for g, mol in enumerate(mols):
        x, edges = _readme_features(mol)
        start, stop = int(batch.ptr[g]), int(batch.ptr[g + 1])
        np.testing.assert_array_equal(batch.x[start:stop].numpy(), x, err_msg=ODD_SMILES[g])
        mine = [
            (int(i) - start, int(j) - start, tuple(batch.edge_attr[e].tolist()))
            for e, (i, j) in enumerate(batch.edge_index.T)
            if start <= int(i) < stop
        ]
        assert sorted(mine) == sorted(edges), ODD_SMILES[g]
    assert torch.equal(
        batch.batch, torch.repeat_interleave(torch.arange(len(mols)), batch.ptr.diff())
    )


def test_invalid_molecules_get_minimum_reward(proxy):
    pentavalent = Chem.RWMol(Chem.MolFromSmiles("CC"))
    for _ in range(4):
        pentavalent.AddBond(0, pentavalent.AddAtom(Chem.Atom(9)), Chem.BondType.SINGLE)
    items = [None, "not a smiles", "C1CC", "", Chem.Mol(), pentavalent, "CCO"]
    raw = proxy(items)
    assert torch.isneginf(raw[:-1]).all() and torch.isfinite(raw[-1])
    reward = seh_reward(raw)
    assert torch.equal(reward[:-1], torch.full((6,), 1e-4)) and reward[-1] >= 1e-4
    for score in (qed, sa_reward, mw_reward):
        values = score(items)
        assert torch.equal(values[:-1], torch.zeros(6)) and values[-1] > 0
    assert sa_score(items)[0] == 10 and torch.isposinf(molecular_weight(items)[0])
    with pytest.raises(TypeError, match="got int"):
        proxy([3])
    assert proxy([]).shape == (0,) and qed([]).shape == (0,)
    with pytest.raises(ValueError, match="at least one molecule"):
        featurize([])


def test_scores_do_not_depend_on_batch(params_path, proxy, reference):
    smiles = [entry["smiles"] for entry in reference[:24]] + ODD_SMILES
    whole = proxy(smiles)
    chunked = SEHProxy.from_file(params_path, device="cpu", batch_size=5)(smiles[::-1]).flip(0)
    alone = torch.cat([proxy([s]) for s in smiles[:3]])
    assert torch.allclose(whole, chunked, atol=1e-5)
    assert torch.allclose(whole[:3], alone, atol=1e-5)


def test_molecule_inputs_match_smiles_and_are_not_modified(proxy):
    smiles = ["c1ccc2ccccc2c1CC(=O)N", "O=C(O)c1ccncc1"]
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    for mol in mols:
        Chem.Kekulize(mol, clearAromaticFlags=True)
    assert torch.allclose(proxy(mols), proxy(smiles), atol=1e-5)
    assert torch.allclose(qed(mols), qed(smiles))
    assert not any(atom.GetIsAromatic() for mol in mols for atom in mol.GetAtoms())


def test_score_sanitized_reads_environment_molecules_as_they_are(proxy):
    env = FragmentEnv(max_fragments=4)
    mols = env.to_mol(random_terminals(env, 6, seed=0))
    assert all(mol.GetNumAtoms() for mol in mols)
    before = [Chem.MolToSmiles(mol) for mol in mols]
    raw = proxy.score_sanitized([*mols, None, Chem.Mol()])
    assert torch.equal(raw[:-2], proxy(mols)) and torch.isneginf(raw[-2:]).all()
    assert [Chem.MolToSmiles(mol) for mol in mols] == before


def test_seh_reward_scale():
    raw = torch.tensor([float("-inf"), -3.0, 0.0, 4.0, 8.0, 1e4])
    assert torch.allclose(seh_reward(raw), torch.tensor([1e-4, 1e-4, 1e-4, 0.5, 1.0, 100.0]))


def test_normalizations():
    mw = torch.tensor([100.0, 300.0, 650.0, 1000.0, 2000.0, float("inf")])
    assert torch.allclose(normalize_mw(mw), torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0, 0.0]))
    assert torch.allclose(normalize_sa(torch.tensor([1.0, 5.5, 10.0])), torch.tensor([1, 0.5, 0]))


def _write_pickle(path, obj, protocol=pickle.HIGHEST_PROTOCOL, compress=True):
    opener = gzip.open if compress else open
    with opener(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)
    return path


@pytest.mark.parametrize(("protocol", "compress"), [(2, True), (4, True), (5, False)])
def test_pickled_weights_load_like_npz(params_path, tmp_path, protocol, compress):
    arrays = load_params(params_path)
    path = _write_pickle(tmp_path / "best_params.pkl.gz", arrays, protocol, compress)
    loaded = load_params(path)
    assert all(
        np.array_equal(a, b) and b.dtype == np.float32 for a, b in zip(arrays, loaded, strict=True)
    )
    smiles = ["CCO", "c1ccccc1C(=O)NC"]
    from_pickle = SEHProxy.from_file(path, device="cpu")(smiles)
    assert torch.equal(from_pickle, SEHProxy.from_file(params_path, device="cpu")(smiles))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(params_path, tmp_path):
    marker = tmp_path / "pwned"
    arrays = load_params(params_path)
    path = _write_pickle(tmp_path / "evil.pkl.gz", [*arrays[:3], _Exploit(marker)])
    with pytest.raises(RefusedGlobal, match=rf"{os.system.__module__}\.system"):
        load_params(path)
    assert not marker.exists()
    with pytest.raises(RefusedGlobal, match="builtins.eval"):
        load_params(_write_pickle(tmp_path / "eval.pkl", [eval], compress=False))


def test_pickles_of_other_things_are_refused(params_path, tmp_path):
    arrays = load_params(params_path)
    objects = _write_pickle(tmp_path / "obj.pkl.gz", [np.array([1, "a"], dtype=object)])
    with pytest.raises(RefusedGlobal, match="object dtype"):
        load_params(objects)
    with pytest.raises(pickle.UnpicklingError, match="list of numpy arrays"):
        load_params(_write_pickle(tmp_path / "dict.pkl.gz", {"p00": arrays[0]}))
    with pytest.raises(ValueError, match="holds 21 arrays"):
        load_params(_write_pickle(tmp_path / "short.pkl.gz", arrays[:-1]))
    with pytest.raises(ValueError, match=r"p02 has shape \(64, 63\)"):
        load_params(
            _write_pickle(tmp_path / "bad.pkl.gz", [*arrays[:2], arrays[2][:, 1:], *arrays[3:]])
        )
    npz = tmp_path / "partial.npz"
    np.savez(npz, **{f"p{i:02d}": a for i, a in enumerate(arrays[:20])})
    with pytest.raises(ValueError, match="lacks the arrays p20, p21"):
        load_params(npz)


def test_missing_weights_say_how_to_supply_them(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nope.npz does not exist"):
        SEHProxy.from_file(tmp_path / "nope.npz")
    monkeypatch.delenv(gflow.config.DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(gflow.config, "bundled_dir", lambda: tmp_path / "bundled")
    with pytest.raises(FileNotFoundError, match=gflow.config.DATA_ENV_VAR):
        SEHProxy.from_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when CUDA is absent")
def test_cuda_request_without_cuda_is_a_clear_error(params_path):
    with pytest.raises(ValueError, match="no CUDA device is available"):
        SEHProxy.from_file(params_path, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(params_path, proxy, reference):
    smiles = [entry["smiles"] for entry in reference] + ODD_SMILES + ["xx"]
    on_gpu = SEHProxy.from_file(params_path, device="cuda")(smiles)
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), proxy(smiles), atol=1e-4)

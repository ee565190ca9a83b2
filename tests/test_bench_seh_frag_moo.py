"""The seh-frag-moo benchmark: the four objectives of the fragment environment are normalized
as documented, and `gflow bench seh-frag-moo` writes results.json, the Pareto pair plots and
the molecule grid end to end."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from gflow.envs.molecules.fragments import Fragment
from gflow.envs.molecules.objectives import FragmentObjectivesEnv, normalize_seh
from gflow.envs.rewards import SEHProxy, mw_reward, qed, sa_reward
from gflow.envs.rewards.seh import PARAMS_FILE
from rdkit import Chem

from gflow.bench.seh_frag_moo import peer_seh
from gflow.cli import main
from gflow.config import find_data
from gflow.metrics import hypervolume, pareto_front
from gflow.store import SampleStore

PNG = b"\x89PNG"
FRAGMENTS = [Fragment("c1ccccc1", (0, 2, 4)), Fragment("C1CCNCC1", (0, 3)), Fragment("O", (0,))]
TINY = [
    "--steps", "4", "--batch-size", "8", "--hidden", "32", "--layers", "1", "--beta-bins", "8",
    "--grid", "3", "--samples", "4", "--k", "2", "--eval-every", "2", "--curve-samples", "2",
    "--max-fragments", "3", "--threads", "1",
]  # fmt: skip


def proxy_path() -> str:
    """The sEH proxy weights (the bundled copy unless the user supplies another)."""
    return str(find_data(PARAMS_FILE))


def test_normalize_seh_clips_to_unit_interval():
    raw = torch.tensor([float("-inf"), -3.0, 4.0, 8.0, 12.0])
    assert normalize_seh(raw).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_objectives_are_the_documented_columns():
    env = FragmentObjectivesEnv(lambda mols: torch.full((len(mols),), 6.0), FRAGMENTS, 3)
    states = env.initial(3)
    states = env.step(states, torch.tensor([0, 1, 2]))  # one fragment of each type
    mols = env.to_mol(states)
    got = env.reward_components(states)
    assert got.shape == (3, env.n_reward_components) == (3, 4)
    expected = torch.stack([torch.full((3,), 0.75), qed(mols), sa_reward(mols), mw_reward(mols)], 1)
    torch.testing.assert_close(got, expected)
    assert env.log_reward(states).shape == (3,)
    torch.testing.assert_close(env.log_reward(states), got.mean(1).log())


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["bench", "seh-frag-moo", *TINY, "--proxy", proxy_path(), "--out", str(out)]
    assert main(argv) == 0
    assert "results: " in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "seh-frag-moo" and results["preset"] == "short"
    assert results["settings"]["objectives"] == ["seh", "qed", "sa", "mw"]
    assert results["training"]["steps"] == 4 and results["training"]["trajectories_per_second"] > 0
    assert [point["step"] for point in results["curve"]] == [0, 2, 4]
    ev = results["evaluation"]
    assert ev["n_preferences"] == 10 == len(ev["per_preference"])  # 3 points per edge, 4 objectives
    assert ev["samples_per_preference"] == 4 and ev["beta"] == results["settings"]["beta_max"]
    assert 0 < ev["hypervolume"] <= 1 and ev["r2"] >= 0 and 0 <= ev["top_k_reward"] <= 1
    assert 0 <= ev["top_k_diversity"] <= 1
    assert all(len(point) == 4 for point in ev["pareto_front"])
    assert "best_molecules.png" in results["plots"]
    for plot in results["plots"]:
        assert (out / plot).read_bytes().startswith(PNG)


def test_objective_subsets_keep_their_order_and_bad_names_are_refused():
    env = FragmentObjectivesEnv(
        lambda mols: torch.full((len(mols),), 6.0), FRAGMENTS, 3, objectives="qed,seh"
    )
    states = env.step(env.initial(2), torch.tensor([0, 1]))
    expected = torch.stack([qed(env.to_mol(states)), torch.full((2,), 0.75)], 1)
    torch.testing.assert_close(env.reward_components(states), expected)
    for bad in ("seh,logp", "", "qed,qed"):
        with pytest.raises(ValueError, match="objectives"):
            FragmentObjectivesEnv(lambda mols: torch.zeros(len(mols)), FRAGMENTS, 3, objectives=bad)


def test_same_seed_generates_the_same_molecules(tmp_path):
    """Two runs with one seed train on the same molecules and report the same generated
    hypervolume (the peer's figure)."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        argv = ["bench", "seh-frag-moo", *TINY, "--eval-every", "0", "--objectives", "seh,qed"]
        assert main([*argv, "--seed", "3", "--proxy", proxy_path(), "--out", str(out)]) == 0
        generated = json.loads((out / "generated.json").read_text())
        results = json.loads((out / "results.json").read_text())
        runs.append(([s["smiles"] for s in generated], results["generated"]))
    (smiles_a, summary_a), (smiles_b, summary_b) = runs
    assert len(smiles_a) == 4 and all(len(step) == 8 for step in smiles_a)
    assert smiles_a == smiles_b
    assert summary_a["hypervolume"] == summary_b["hypervolume"] > 0
    assert summary_a["objectives"] == ["seh", "qed"]


def test_the_store_records_every_generated_molecule_and_the_figure_comes_from_it(tmp_path):
    out = tmp_path / "run"
    argv = ["bench", "seh-frag-moo", *TINY, "--eval-every", "0", "--objectives", "seh,qed"]
    argv += ["--proxy", proxy_path(), "--out", str(out)]
    assert main(argv) == 0
    with SampleStore(out / "samples.sqlite") as store:
        rows = store.samples()
    assert Counter(r["step"] for r in rows) == {1: 8, 2: 8, 3: 8, 4: 8}
    mols = [Chem.MolFromSmiles(r["object"]) for r in rows]
    vectors = torch.tensor([r["components"] for r in rows], dtype=torch.float64)
    seh = peer_seh(SEHProxy.from_file(proxy_path())(mols))  # clip(proxy / 8, 1e-4, 100)
    # the proxy runs in float32: a score moves by ~1e-7 with the batch it was computed in
    expected = torch.stack([seh, qed(mols).double()], 1)
    torch.testing.assert_close(vectors, expected, rtol=1e-6, atol=1e-6)
    for r in rows:
        assert len(r["preference"]) == 2 and sum(r["preference"]) == pytest.approx(1)
        assert 0.5 <= r["temperature"] <= 32 and r["worker"] == "learner"
    results = json.loads((out / "results.json").read_text())
    front = pareto_front(vectors.numpy())
    assert results["generated"]["hypervolume"] == pytest.approx(hypervolume(front, np.zeros(2)))
    assert results["generated"]["molecules"] == 32
    generated = json.loads((out / "generated.json").read_text())
    assert [s["smiles"] for s in generated] == [[r["object"] for r in rows[i : i + 8]]
                                                for i in range(0, 32, 8)]  # fmt: skip
    # the benchmark does not resume: a second run into the folder replaces the store's samples
    assert main(argv) == 0
    with SampleStore(out / "samples.sqlite") as store:
        again = store.samples()
    assert [r["object"] for r in again] == [r["object"] for r in rows]  # same seed, 32 rows

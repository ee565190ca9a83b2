"""The seh-frag benchmark: a short training run on the fragment environment raises the mean
reward, the molecule log counts unique molecules and modes as defined, and `gflow bench
seh-frag` writes results.json and its PNGs end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gflow.envs.molecules.fragments import Fragment
from rdkit import Chem, DataStructs

from gflow.bench.seh_frag import (
    GRID,
    RESULTS,
    REWARD_PLOT,
    MoleculeLog,
    RecordingReward,
    SEHFragConfig,
    StepMolecules,
    build_trainer,
    config_from_args,
    parse_beta,
    train_fragments,
)
from gflow.checkpoint import seed_everything
from gflow.cli import main
from gflow.metrics.diversity import morgan_fingerprints
from gflow.store import SampleStore
from gflow.training import Callback

FRAGMENTS = [
    Fragment("c1ccccc1", (0, 2, 4)),
    Fragment("C1CCNCC1", (0, 3)),
    Fragment("CC", (0, 1)),
    Fragment("C", (0,)),
    Fragment("O", (0,)),
    Fragment("N", (0,)),
]
"""A small vocabulary: carbon-only cores and chains, plus heteroatom pieces."""


def hetero_fraction(mols: list[Chem.Mol]) -> torch.Tensor:
    """Cheap score: the share of heavy atoms that are N or O."""
    return torch.tensor(
        [sum(a.GetAtomicNum() in (7, 8) for a in m.GetAtoms()) / m.GetNumAtoms() for m in mols]
    )


def hetero_reward(raw: torch.Tensor) -> torch.Tensor:
    """Reward exp(4 * share of N and O): 1 for pure carbon, e^4 for pure heteroatoms."""
    return torch.exp(4 * raw)


def short_run(lr: float, store: SampleStore) -> list[float]:
    """Per-step mean reward of 40 TB steps on the small vocabulary at beta in [4, 8]: the
    tempered target puts nearly all its mass on heteroatom-only molecules (reward ~ e^4)."""
    config = SEHFragConfig(
        steps=40, batch_size=16, hidden=32, layers=1, heads=2, max_fragments=4,
        beta="uniform:4,8", beta_bins=8, lr=lr, lr_log_z=0.1, log_every=40,
    )  # fmt: skip
    summary, log = train_fragments(config, hetero_fraction, hetero_reward, store, FRAGMENTS)
    assert summary["trajectories"] == 40 * 16 == log.generated == store.count()
    return summary["step_rewards"]


def test_training_on_fragments_raises_the_mean_reward(tmp_path):
    with SampleStore(tmp_path / "s.sqlite") as store:
        rewards = short_run(3e-3, store)
    first, last = np.mean(rewards[:10]), np.mean(rewards[-10:])
    assert last > 2 * first, (first, last)
    assert last > 40.0, last  # e^4 = 54.6 is the ceiling


def test_molecule_log_counts_unique_molecules_and_modes():
    log = MoleculeLog(lambda raw: raw / 8, threshold=7.5, similarity=0.7)
    smiles = [
        "c1ccc(-c2ccncc2)cc1",  # mode
        "c1ccc(-c2ccncc2)cc1",  # the same molecule again: not unique
        "Cc1ccc(-c2ccncc2)cc1",  # similarity 0.52 to the first: mode
        "CCCCCCCCCCCCO",  # mode
        "CCCCCCCCCCCCCO",  # another molecule, but similarity 1.0 to the previous: no mode
        "OC1CCCCC1",  # dissimilar to all, but proxy below 7.5: no mode
        "O=C(O)CCCCN",  # dissimilar to all, proxy above 7.5: mode
    ]
    raw = torch.tensor([8.0, 8.0, 7.9, 9.0, 9.5, 3.0, 7.6], dtype=torch.float64)
    mean = log.add([Chem.MolFromSmiles(s) for s in smiles], raw)
    assert mean == pytest.approx(float(raw.mean()) / 8)
    assert log.generated == 7 and len(log.smiles) == 6
    assert log.modes == [Chem.CanonSmiles(smiles[i]) for i in (0, 2, 3, 6)]
    assert log.top_mean(2) == pytest.approx((9.5 + 9.0) / 16)
    assert log.top_mean(7) is None
    assert [m["proxy"] for m in log.top(3)] == [9.5, 9.0, 8.0]


def test_beta_distribution_errors_name_the_problem():
    assert parse_beta("gamma:2,4").params == (2.0, 4.0)
    with pytest.raises(ValueError, match="parameters must be numbers"):
        parse_beta("uniform:a,b")
    with pytest.raises(ValueError, match="temperature kind"):
        parse_beta("normal:0,1")
    with pytest.raises(ValueError, match="uniform"):
        SEHFragConfig(beta="uniform:4,1")


def test_cli_writes_results_and_pngs(tmp_path):
    out = tmp_path / "run"
    code = main(
        [
            "bench", "seh-frag", "--steps", "2", "--batch-size", "4", "--hidden", "16",
            "--layers", "1", "--heads", "2", "--grid", "4", "--device", "cpu", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / RESULTS).read_text())
    assert results["steps"] == 2 and results["trajectories"] == 8
    assert results["trajectories_per_second"] > 0 and results["steps_per_second"] > 0
    assert results["top_100_reward"] is None and results["unique_molecules"] <= 8
    assert len(results["history"]) >= 1 and len(results["step_rewards"]) == 2
    best = results["top_molecules"][0]
    assert Chem.MolFromSmiles(best["smiles"]) is not None
    assert best["reward"] == pytest.approx(min(max(best["proxy"] / 8, 1e-4), 100))
    for name in (GRID, REWARD_PLOT):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_a_bad_beta_distribution(tmp_path, capsys):
    code = main(["bench", "seh-frag", "--beta-dist", "gamma:0,1", "--out", str(tmp_path)])
    assert code == 2
    assert "gamma" in capsys.readouterr().err


def test_time_budget_stops_training_and_the_paper_preset_is_the_protocol(tmp_path):
    config = SEHFragConfig(
        steps=10_000, batch_size=4, hidden=16, layers=1, heads=2, max_fragments=3,
        beta_bins=4, log_every=1000, max_seconds=1e-9,
    )  # fmt: skip
    with SampleStore(tmp_path / "s.sqlite") as store:
        summary, log = train_fragments(config, hetero_fraction, hetero_reward, store, FRAGMENTS)
    assert summary["steps"] == 1 == len(summary["history"]) and log.generated == 4
    entry = summary["history"][0]
    assert entry["step"] == 1 and entry["rss_mb"] > 0 and summary["peak_rss_mb"] > 0
    assert 0 < entry["peak_rss_mb"] <= summary["peak_rss_mb"]  # the peak so far, at the entry
    assert entry["top_1000_reward"] is None and summary["top_100_diversity"] is None
    from gflow.cli import build_parser

    args = build_parser().parse_args(["bench", "seh-frag", "--paper"])
    assert args.paper and config_from_args(args).steps == 10_000
    assert config_from_args(args).log_every == 500


def test_figures_computed_from_the_store_equal_those_of_the_scored_molecules(tmp_path):
    """The reported figures come from the sample store; they equal figures computed here by
    brute force from the molecules (RDKit objects, not SMILES read back) and raw scores the
    scorer saw, step by step: per-step mean reward, unique molecules, top-k means, modes."""
    seen = []

    def score(mols):
        raw = hetero_fraction(mols)
        seen.append((mols, raw.double()))
        return raw

    threshold, similarity = 0.3, 0.5
    config = SEHFragConfig(
        steps=12, batch_size=16, hidden=16, layers=1, heads=2, max_fragments=4,
        beta="uniform:1,4", beta_bins=4, log_every=4, mode_threshold=threshold,
        mode_similarity=similarity,
    )  # fmt: skip
    with SampleStore(tmp_path / "s.sqlite") as store:
        summary, log = train_fragments(config, score, hetero_reward, store, FRAGMENTS)
        assert store.count() == 12 * 16 == summary["trajectories"]
    assert len(seen) == 12
    assert summary["step_rewards"] == [float(hetero_reward(raw).mean()) for _, raw in seen]
    unique: dict[str, tuple[Chem.Mol, float]] = {}
    for mols, raw in seen:
        for mol, value in zip(mols, raw.tolist(), strict=True):
            unique.setdefault(Chem.MolToSmiles(mol), (mol, value))
    assert log.smiles == list(unique) and summary["unique_molecules"] == len(unique)
    rewards = sorted((float(hetero_reward(torch.tensor(v))) for _, v in unique.values()))[::-1]
    for k, key in ((10, None), (100, "top_100_reward"), (1000, "top_1000_reward")):
        expected = None if len(rewards) < k else pytest.approx(np.mean(rewards[:k]))
        assert log.top_mean(k) == expected
        if key is not None:
            assert summary[key] == expected
    modes, prints = [], []
    for key, (mol, value) in unique.items():
        if value > threshold:
            fp = morgan_fingerprints([mol])[0]
            if not prints or max(DataStructs.BulkTanimotoSimilarity(fp, prints)) < similarity:
                modes.append(key)
                prints.append(fp)
    assert log.modes == modes and summary["modes"] == len(modes) > 1
    assert [h["modes"] for h in summary["history"]][-1] == len(modes)


def test_step_molecules_name_and_score_each_molecule_in_either_order():
    config = SEHFragConfig(
        steps=3, batch_size=8, hidden=16, layers=1, heads=2, max_fragments=4,
        beta="uniform:4,8", beta_bins=8,
    )  # fmt: skip
    seed_everything(0)
    reward = RecordingReward(hetero_fraction, hetero_reward)
    trainer = build_trainer(config, reward, FRAGMENTS)
    molecules = StepMolecules(reward)
    pairs = []

    class Compare(Callback):
        def after_step(self, trainer, loss, batch):
            states = trainer.env.select(batch.terminal, batch.done)
            if trainer.step % 2:  # the store asks for components first; nothing may rely on it
                names = molecules.names(trainer, batch, states)
                raw = molecules.components(trainer, batch, states)
            else:
                raw = molecules.components(trainer, batch, states)
                names = molecules.names(trainer, batch, states)
            assert len(raw) == len(names) == trainer.env.size(states)
            rescored = hetero_fraction([Chem.MolFromSmiles(name) for name in names])
            torch.testing.assert_close(raw[:, 0], rescored.to(raw.dtype))
            pairs.append((names, trainer.env.object_names(states)))

    trainer.run(quiet=True, callbacks=[Compare()])
    assert len(pairs) == 3
    for names, expected in pairs:
        assert names == expected and len(set(names)) > 1

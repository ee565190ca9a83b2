"""The sample store: every sampled object recorded once per step, resume without double counting,
the oracle cache (each object evaluated once, across restarts), reward failures, unwritable
paths and export."""

import argparse
import csv

import pyarrow.parquet as pq
import pytest
import torch
from gflow.envs.hypergrid import HyperGrid
from rdkit import Chem

from gflow.checkpoint import seed_everything
from gflow.cli import main
from gflow.errors import UsageError
from gflow.guards import RewardError
from gflow.objectives import get_objective
from gflow.pool import Oracle, evaluate_items
from gflow.store import SampleStore, StoreCallback, export_store
from gflow.training import (
    Callback,
    ModelConfig,
    TrainConfig,
    Trainer,
    build_policy,
    start_or_resume,
)

ENV = HyperGrid(2, 4, r0=0.1)


def grid_trainer(out=None, steps=6, checkpoint_every=0):
    seed_everything(0)
    config = TrainConfig(
        steps=steps, batch_size=5, eval_every=0, log_every=1, out=out,
        checkpoint_every=checkpoint_every,
    )
    return Trainer(ENV, build_policy(ENV, ModelConfig(hidden=16)), get_objective("tb"), config)


class Batches(Callback):
    """Keeps the objects and log rewards of each step's batch."""

    def __init__(self):
        self.rows = []

    def after_step(self, trainer, loss, batch):
        keys = trainer.env.object_names(batch.terminal)
        rewards = batch.log_reward.tolist()
        self.rows += [(trainer.step, k, r) for k, r in zip(keys, rewards, strict=True)]


def test_every_sample_is_recorded_with_its_step_and_reward(tmp_path):
    store = SampleStore(tmp_path / "s.sqlite")
    seen = Batches()
    grid_trainer().run(quiet=True, callbacks=[StoreCallback(store), seen])
    rows = store.samples()
    assert len(rows) == store.count() == 6 * 5
    got = [(r["step"], r["object"], r["log_reward"]) for r in rows]
    assert got == [(s, k, pytest.approx(r, abs=1e-6)) for s, k, r in seen.rows]
    assert {r["worker"] for r in rows} == {"learner"}


class Crash(Callback):
    def __init__(self, at):
        self.at = at

    def after_step(self, trainer, loss, batch):
        if trainer.step == self.at:
            raise KeyboardInterrupt


def test_resume_rolls_back_the_steps_after_the_checkpoint(tmp_path):
    path = tmp_path / "s.sqlite"
    store = SampleStore(path)
    trainer = grid_trainer(str(tmp_path / "run"), steps=8, checkpoint_every=3)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(quiet=True, callbacks=[StoreCallback(store), Crash(5)])
    assert store.count() == 5 * 5  # steps 1-5 written; the checkpoint is at step 3
    store.close()
    store = SampleStore(path)
    resumed = grid_trainer(str(tmp_path / "run"), steps=8, checkpoint_every=3)
    start_or_resume(resumed, resume=True, quiet=True, callbacks=[StoreCallback(store)])
    steps = [r["step"] for r in store.samples()]
    assert len(steps) == 8 * 5
    assert all(steps.count(s) == 5 for s in range(1, 9))


def counting(calls):
    def fn(items):
        calls.extend(items)
        return torch.tensor([float(len(x)) for x in items])

    return fn


def test_the_oracle_evaluates_each_object_once_across_restarts(tmp_path):
    path = tmp_path / "s.sqlite"
    calls = []
    oracle = Oracle(counting(calls), SampleStore(path), key=str)
    assert oracle(["aa", "b", "aa", "ccc"]).tolist() == [2, 1, 2, 3]
    assert oracle(["b", "dddd"]).tolist() == [1, 4]
    assert sorted(calls) == ["aa", "b", "ccc", "dddd"]  # duplicates and repeats not re-run
    again = Oracle(counting(calls), SampleStore(path), key=str)  # a restarted run
    assert again(["ccc", "aa", "eeeee"]).tolist() == [3, 2, 5]
    assert sorted(calls) == ["aa", "b", "ccc", "dddd", "eeeee"]
    assert again.store.oracle_count() == 5


def test_a_vector_oracle_is_cached_as_vectors(tmp_path):
    calls = []

    def two(items):
        calls.extend(items)
        return torch.tensor([[len(x), -len(x)] for x in items], dtype=torch.float64)

    path = tmp_path / "s.sqlite"
    assert Oracle(two, SampleStore(path), key=str)(["ab", "c"]).tolist() == [[2, -2], [1, -1]]
    again = Oracle(two, SampleStore(path), key=str)
    assert again(["c", "ab"]).tolist() == [[1, -1], [2, -2]] and calls == ["ab", "c"]


def picky(items):
    if any(x.startswith("bad") for x in items):
        raise ValueError(f"cannot score {[x for x in items if x.startswith('bad')][0]}")
    return [1.0] * len(items)


def test_a_reward_failing_on_one_object_gives_it_the_minimum_and_warns(capsys):
    outcomes = evaluate_items(picky, ["ok", "bad1"])
    assert outcomes == [(1.0, None), (None, "ValueError: cannot score bad1")]
    oracle = Oracle(picky, key=str, fallback=1e-4)
    assert oracle(["ok", "bad1", "fine"]).tolist() == pytest.approx([1.0, 1e-4, 1.0])
    err = capsys.readouterr().err
    assert "raised on bad1" in err and "minimum reward 0.0001" in err and "ok" not in err


def test_a_reward_failing_on_everything_stops_after_n_in_a_row(tmp_path):
    oracle = Oracle(picky, SampleStore(tmp_path / "s.sqlite"), key=str, max_failures=3)
    oracle(["bad1", "bad2", "ok"])  # two in a row, then a success: the count restarts
    with pytest.raises(RewardError, match="failed on 3 objects in a row.*cannot score bad5"):
        oracle(["fine", "bad3", "bad4", "bad5", "bad6"])
    assert set(oracle.store.cached(["ok", "fine", "bad1", "bad5"])) == {"ok", "fine"}


def test_unwritable_store_is_a_one_line_error_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for bad in ("/proc/samples.sqlite", str(tmp_path / "file" / "s.sqlite"), str(tmp_path)):
        with pytest.raises(UsageError, match="--store"):
            SampleStore(bad)
    out = tmp_path / "run"
    argv = ["train", "hypergrid", "--steps", "3", "--out", str(out), "--quiet"]
    assert main(argv + ["--store", "/proc/samples.sqlite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--store /proc/samples.sqlite: cannot write" in err
    assert not (out / "metrics.json").exists()


def test_export_csv_and_parquet(tmp_path):
    path = tmp_path / "s.sqlite"
    with SampleStore(path) as store:
        components, preference = [[0.1, 0.2], [0.3, 0.4]], [[1, 0], [0, 1]]
        store.add(1, ["x", "y"], [0.5, -1.0], components, [2.0, 4.0], preference)
        store.add(2, ["x"], [0.5], worker="worker-1")
        store.remember({"x": 7.0})
    assert main(["export", str(path), "--format", "csv", "--out", str(tmp_path / "s.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [r["object"] for r in rows] == ["x", "y", "x"]
    assert rows[1]["component_1"] == "0.4" and rows[0]["preference_0"] == "1"
    assert rows[0]["temperature"] == "2" and rows[2]["worker"] == "worker-1"
    assert [r["oracle"] for r in rows] == ["7", "", "7"]
    assert export_store(path, tmp_path / "s.parquet", "parquet") == 3
    table = pq.read_table(tmp_path / "s.parquet").to_pydict()
    assert table["step"] == [1, 1, 2] and table["component_0"] == [0.1, 0.3, None]


def test_gflow_train_records_samples_and_molecule_runs_default_to_a_store(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "hypergrid", "--steps", "4", "--batch-size", "3", "--out", str(out)]
    assert main(argv + ["--quiet", "--store", str(tmp_path / "g.sqlite")]) == 0
    assert SampleStore(tmp_path / "g.sqlite").count() == 12
    assert not (out / "samples.sqlite").exists()  # not a molecule run: no default store


def test_the_fragment_benchmark_records_every_molecule_with_its_raw_score(tmp_path):
    from gflow.bench.seh_frag import SEHFragConfig, train_fragments

    def atoms(mols):
        return torch.tensor([float(m.GetNumAtoms()) for m in mols])

    config = SEHFragConfig(steps=3, batch_size=4, hidden=16, layers=1, heads=2, log_every=1)
    with SampleStore(tmp_path / "s.sqlite") as store:
        summary, log = train_fragments(config, atoms, lambda raw: raw.clamp(min=1e-4), store)
        rows = store.samples()
    assert len(rows) == summary["trajectories"] == 12
    assert {r["object"] for r in rows} == set(log.smiles)
    assert all(r["components"][0] == Chem.MolFromSmiles(r["object"]).GetNumAtoms() for r in rows)
    assert all(0.5 <= r["temperature"] <= 32 for r in rows)  # beta ~ U[0.5, 32]


FLAKY = '''
import os
import torch


def flaky(mols):
    if os.environ.get("GFLOW_TEST_ORACLE_DOWN"):
        raise RuntimeError("oracle server down")
    return torch.tensor([1.0 + m.GetNumAtoms() for m in mols])
'''


def test_a_run_stopped_by_a_failing_oracle_keeps_its_checkpoint(tmp_path, capsys, monkeypatch):
    plugin = tmp_path / "flaky.py"
    plugin.write_text(FLAKY)
    out = tmp_path / "run"
    argv = ["train", "frags", "--reward", f"{plugin}:flaky", "--oracle", "--batch-size", "4"]
    argv += ["--hidden", "16", "--layers", "1", "--out", str(out), "--quiet"]
    assert main([*argv, "--steps", "2", "--checkpoint-every", "1"]) == 0
    checkpoint = (out / "checkpoint.pt").read_bytes()
    evaluated = SampleStore(out / "samples.sqlite").oracle_count()
    assert evaluated > 0
    capsys.readouterr()
    monkeypatch.setenv("GFLOW_TEST_ORACLE_DOWN", "1")
    stopped = [*argv, "--steps", "4", "--checkpoint-every", "1", "--max-reward-failures", "3"]
    assert main(stopped) == 2
    err = capsys.readouterr().err.splitlines()
    assert "failed on 3 objects in a row" in err[-1] and "oracle server down" in err[-1]
    assert (out / "checkpoint.pt").read_bytes() == checkpoint
    store = SampleStore(out / "samples.sqlite")
    assert store.oracle_count() == evaluated and store.count() == 2 * 4


def test_sessions_keep_a_store_where_asked_and_refuse_an_oracle_on_several_processes(tmp_path):
    from gflow.cli.pool import Session

    args = argparse.Namespace(store=str(tmp_path / "s.sqlite"), workers=0, oracle=False)
    session = Session(args, ENV, tmp_path, ranked=True)  # rank 0 (no process group) writes
    assert session.store is not None and len(session.callbacks) == 1
    session.close()
    args.oracle = True
    with pytest.raises(UsageError, match="--oracle with several processes"):
        Session(args, ENV, tmp_path, ranked=True)
    args.store, args.oracle = None, False
    assert Session(args, ENV, tmp_path).store is None  # no default store outside molecule envs
    assert Session(args, ENV, tmp_path).callbacks == []


def test_replayed_objects_are_not_recorded_as_new_samples(tmp_path):
    seed_everything(0)
    config = TrainConfig(
        steps=6, batch_size=8, replay_capacity=50, replay_fraction=0.5, eval_every=0,
        checkpoint_every=0,
    )  # fmt: skip
    trainer = Trainer(ENV, build_policy(ENV, ModelConfig(hidden=16)), get_objective("tb"), config)
    sizes = Sizes()
    with SampleStore(tmp_path / "s.sqlite") as store:
        trainer.run(quiet=True, callbacks=[StoreCallback(store), sizes])
        steps = [r["step"] for r in store.samples()]
    assert [steps.count(s) for s in range(1, 7)] == [online for online, _ in sizes.rows]
    assert sizes.rows[0] == (8, 8) and sizes.rows[-1] == (4, 8)  # replay from step 2 or so


class Sizes(Callback):
    """Each step's (on-policy rows, batch rows)."""

    def __init__(self):
        self.rows = []

    def after_step(self, trainer, loss, batch):
        self.rows.append((trainer.online, len(batch.done)))


def test_export_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    with SampleStore(path) as store:
        store.add(1, ["x"], [0.0])
    (tmp_path / "junk.sqlite").write_text("not a database")
    cases = [
        ([str(tmp_path / "missing.sqlite")], "no sample store at"),
        ([str(tmp_path / "junk.sqlite")], "is not a gflow sample store"),
        ([str(path), "--out", str(tmp_path)], "is a directory, expected a file"),
        ([str(path), "--out", "/proc/x.csv"], "--out /proc/x.csv: cannot write it"),
    ]
    for argv, message in cases:
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err

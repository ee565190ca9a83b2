"""Data-parallel training (gflow.distributed): the gradient summed over ranks equals one process's
gradient of the whole batch for every objective and for conditional and graph policies; `gflow
train --nproc 2` trains with only rank 0 writing, learns the exact target, and resumes after
being killed; bad input is refused in one line."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from gflow.envs.graphs import GraphEnv
from gflow.envs.hypergrid import HyperGrid

from gflow.checkpoint import seed_everything
from gflow.cli import main
from gflow.conditioning import ConditionalEnv, Conditioning
from gflow.distributed import (
    STATE_FIELDS,
    STEP_FIELDS,
    DistributedTrainer,
    batch_share,
    rank_seed,
    reseed,
)
from gflow.errors import UsageError
from gflow.objectives import OBJECTIVES, get_objective
from gflow.replay import cat_rollouts
from gflow.sampling import sample_forward
from gflow.scoring import score
from gflow.store import SampleStore
from gflow.training import ModelConfig, TrainConfig, build_policy
from gflow.trajectories import Trajectories

MODEL = ModelConfig(hidden=16, learn_pb=True)
CASES = [("grid", name, {}) for name in OBJECTIVES] + [
    ("grid", "op-tb", {"op_pairwise": True}),
    ("conditional", "tb", {}),
    ("conditional", "subtb", {}),
    ("graphs", "tb", {}),
    ("graphs", "db", {}),
]
"""(environment, objective, its options): every registered objective, the pairwise order loss
(which couples trajectories of different ranks), a conditional and a graph policy."""


def case_env(kind):
    """The environment of a gradient case."""
    if kind == "grid":
        return HyperGrid(2, 4, r0=0.1)
    if kind == "conditional":
        return ConditionalEnv(HyperGrid(2, 4, r0=0.1), Conditioning())
    return GraphEnv(node_types=2, max_nodes=3)


def rank_rollout(env, policy, rank):
    """Rank `rank`'s fixed trajectories: uneven shares (3 and 5) of different lengths."""
    seed_everything(100 + rank)
    n = 3 + 2 * rank
    cond = env.conditioning.sample(n) if env.conditional else None
    return sample_forward(env, policy, n, cond, epsilon=0.3)


def fresh_policy(env):
    """The same initial policy in every process."""
    seed_everything(0)
    return build_policy(env, MODEL)


def gradients(policy):
    """Each parameter's gradient (None where it has none), by name."""
    return {name: p.grad for name, p in policy.named_parameters()}


def _gradient_worker(rank, world, init_file, out):
    """One rank: the distributed loss and gradient of its share, for every case."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    results = {}
    for kind, name, options in CASES:
        env = case_env(kind)
        policy = fresh_policy(env)
        config = TrainConfig(batch_size=8, top_k=0)
        trainer = DistributedTrainer(env, policy, get_objective(name, **options), config)
        loss = trainer.loss(rank_rollout(env, policy, rank))
        trainer.backward(loss)
        results[f"{kind}-{name}-{options}"] = (loss.detach(), gradients(policy))
    torch.save(results, f"{out}.{rank}")
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_gradients(tmp_path_factory):
    """Each rank's loss and gradients per case (2 gloo processes)."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_gradient_worker, args=(2, folder / "init", folder / "grads"), nprocs=2)
    return [torch.load(folder / f"grads.{rank}") for rank in range(2)]


@pytest.mark.parametrize(("kind", "name", "options"), CASES)
def test_summed_gradient_equals_the_whole_batch_gradient(two_rank_gradients, kind, name, options):
    env = case_env(kind)
    policy = fresh_policy(env)
    objective = get_objective(name, **options)
    whole = cat_rollouts(env, [rank_rollout(env, policy, rank) for rank in range(2)])
    loss = objective.loss(score(env, policy, whole, objective.needs))
    loss.backward()
    expected = gradients(policy)
    assert any(g is not None and g.abs().sum() > 0 for g in expected.values())
    for rank_loss, grads in (results[f"{kind}-{name}-{options}"] for results in two_rank_gradients):
        assert torch.allclose(rank_loss, loss.detach(), rtol=0, atol=1e-6), (rank_loss, loss)
        assert grads.keys() == expected.keys()
        for key, grad in expected.items():
            if grad is None:
                assert grads[key] is None, key
            else:
                assert torch.allclose(grads[key], grad, rtol=1e-5, atol=1e-6), key


def test_every_trajectories_field_is_gathered_along_the_right_axes():
    known = {"log_z", "log_reward", "lengths", "done", "cond", "log_stop_flow"}
    known |= {"reward_components", *STEP_FIELDS, *STATE_FIELDS}
    assert {f for f in Trajectories.__dataclass_fields__} == known


def test_batch_shares_and_seeds():
    assert [batch_share(7, rank, 3) for rank in range(3)] == [3, 2, 2]
    assert sum(batch_share(16, rank, 2) for rank in range(2)) == 16
    with pytest.raises(UsageError, match="--batch-size 1 is smaller than the 2 processes"):
        batch_share(1, 0, 2)
    seeds = {rank_seed(0, step, rank) for step in range(50) for rank in range(4)}
    assert len(seeds) == 200 and rank_seed(0, 3, 1) == rank_seed(0, 3, 1)
    assert rank_seed(-1, 0, 0) != rank_seed(0, 0, 0)
    draws = []
    for rank in (0, 1, 0):
        reseed(0, 3, rank)
        draws.append((torch.rand(3).tolist(), np.random.rand(), random.random()))
    assert draws[0] == draws[2] and all(a != b for a, b in zip(draws[0], draws[1], strict=True))


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--nproc", "0"], "--nproc must be >= 1, got 0"),
        (
            ["--nproc", "2", "--batch-size", "1"],
            "--batch-size 1 is smaller than the 2 processes: each process needs at least one "
            "trajectory per step",
        ),
    ],
)
def test_bad_process_counts_are_refused_before_launching(capsys, tmp_path, options, error):
    assert main(["train", "hypergrid", "--out", str(tmp_path / "run"), *options]) == 2
    assert capsys.readouterr().err.strip() == f"gflow train: error: {error}"
    assert not (tmp_path / "run").exists()


def test_nproc_must_agree_with_torchrun(capsys, monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "localhost"}.items():
        monkeypatch.setenv(name, value)
    assert main(["train", "hypergrid", "--nproc", "3", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gflow train: error: --nproc 3 under torchrun with 2 processes: give one"


def gflow_train(out, *extra, steps=300):
    """The `gflow train` command line of a 2-process hypergrid run into `out`."""
    args = ["--ndim", "2", "--height", "8", "--r0", "0.1", "--steps", str(steps)]
    args += ["--batch-size", "32", "--lr", "3e-3", "--epsilon", "0.05", "--hidden", "64"]
    args += ["--eval-every", "0", "--log-every", "10", "--quiet", "--out", str(out)]
    return [sys.executable, "-m", "gflow", "train", "hypergrid", *args, *extra, "--nproc", "2"]


def test_two_processes_train_and_only_rank_0_writes_a_store_of_every_rank(tmp_path):
    path = tmp_path / "s.sqlite"
    options = ["--batch-size", "5", "--checkpoint-every", "5", "--store", str(path)]
    cmd = gflow_train(tmp_path / "run", *options, steps=10)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("hypergrid tb: 10 steps") == 1, done.stdout
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "checkpoint.pt",
        "metrics.json",
        "tb",
    ]
    assert len(list((tmp_path / "run" / "tb").iterdir())) == 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["config"]["batch_size"] == 5
    assert metrics["processes"] == 2
    # rank 0's store holds every rank's samples, each once, the rank as the worker
    with SampleStore(path) as store:
        rows = store.samples()
        distinct = store.count(distinct=True)
        store.add(11, ["ghost"] * 5, [0.0] * 5)  # as if written by a run killed at step 11
    assert len(rows) == 10 * 5 == len({r["id"] for r in rows})
    shares = Counter((r["step"], r["worker"]) for r in rows)
    assert shares == {(s, w): n for s in range(1, 11) for w, n in (("rank0", 3), ("rank1", 2))}
    # the top-k reward and the distinct-object count cover both ranks, as the store does
    assert metrics["unique_objects"] == distinct
    best = sorted({r["object"]: r["log_reward"] for r in rows}.values(), reverse=True)[:100]
    assert metrics["top_k_reward"] == pytest.approx(float(np.mean(np.exp(best))), rel=1e-6)
    # the 2-process checkpoint continues in one process (any number of processes may resume);
    # the store loses the steps after the checkpoint and records the new ones
    argv = gflow_train(tmp_path / "run", *options, steps=20)
    assert main(argv[3:-2]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 20
    assert [entry["step"] for entry in metrics["loss_history"]] == [10, 20]
    with SampleStore(path) as store:
        resumed = store.samples()
    assert resumed[:50] == rows and "ghost" not in {r["object"] for r in resumed}
    assert Counter(r["step"] for r in resumed[50:]) == dict.fromkeys(range(11, 21), 5)


def test_failing_ranks_stop_the_run_in_one_line_each(tmp_path):
    cmd = gflow_train(tmp_path / "run", "--objective", "nope", steps=2)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    # each rank that got that far says why (the launcher may stop the other one first)
    assert lines[0].startswith("gflow train: error: unknown objective 'nope'"), lines
    # the launcher's own log stays quiet: the workers' errors, then its one line
    assert all(line.startswith("gflow train: error: ") for line in lines), lines
    rank = r"rank \d \((exit code \d+|killed by signal \d+)\)"
    failed = rf"gflow train: error: 2-process training failed: {rank}(, {rank})?"
    assert re.fullmatch(failed, lines[-1]) and "(exit code 2)" in lines[-1], lines


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Metrics of an uninterrupted 2-process run of 300 steps."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    store = ["--store", str(out / "s.sqlite")]
    done = subprocess.run(gflow_train(out, *store), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    with SampleStore(out / "s.sqlite") as db:
        samples = [(r["step"], r["worker"], r["object"], r["log_reward"]) for r in db.samples()]
    return json.loads((out / "metrics.json").read_text()) | {"samples": samples}


@pytest.mark.slow
def test_two_processes_learn_the_exact_target(uninterrupted):
    assert uninterrupted["exact_tv"] <= 0.05, uninterrupted["exact_tv"]


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_where_it_would_have_been(tmp_path, uninterrupted):
    out = tmp_path / "run"
    cmd = gflow_train(out, "--checkpoint-every", "100", "--store", str(out / "s.sqlite"))
    run = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    checkpoint = out / "checkpoint.pt"
    try:
        while not checkpoint.exists():
            assert run.poll() is None, "the run ended before its first checkpoint"
            time.sleep(0.05)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("resuming") == 1, done.stderr
    metrics = json.loads(Path(out / "metrics.json").read_text())
    assert metrics["steps"] == 300
    for key in ("final_loss", "exact_tv", "log_z_error"):
        assert metrics[key] == uninterrupted[key], key
    assert [e["loss"] for e in metrics["loss_history"]] == [
        e["loss"] for e in uninterrupted["loss_history"]
    ]
    # the store rolled back to the checkpoint: the same samples as the uninterrupted run's
    with SampleStore(out / "s.sqlite") as db:
        samples = [(r["step"], r["worker"], r["object"], r["log_reward"]) for r in db.samples()]
    assert samples == uninterrupted["samples"] and len(samples) == 300 * 32

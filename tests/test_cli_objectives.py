"""`gflow train` with forward-looking and order-preserving objectives: options reach the
objective, rollouts cut by --max-steps, and the top-K / distinct-object metrics."""

import json

import pytest
import torch
from gflow.envs.hypergrid import HyperGrid
from gflow.envs.sets import SetGeneration
from test_cli_train import QUIET, call

from gflow.checkpoint import seed_everything
from gflow.objectives import get_objective
from gflow.training import ModelConfig, TrainConfig, Trainer, build_policy

SETS = ["sets", "--universe", "6", "--set-size", "3", "--hidden", "16", "--eval-every", "0"]


def train(argv, tmp_path, capsys):
    """Run `gflow train ARGV` into tmp_path/run: exit status, metrics, stdout."""
    out_dir = tmp_path / "run"
    code, out, err = call(["train", *argv, "--out", str(out_dir), *QUIET], capsys)
    assert code == 0, err
    return json.loads((out_dir / "metrics.json").read_text()), out


@pytest.mark.parametrize("name", ["fl-db", "fl-subtb", "op-tb", "op-db", "op-subtb"])
def test_objective_writes_the_metrics_contract(name, tmp_path, capsys):
    metrics, out = train([*SETS, "--objective", name, "--steps", "4"], tmp_path, capsys)
    assert metrics["objective"] == name and metrics["steps"] == 4
    for key in ("seconds", "trajectories_per_second", "exact_tv", "top_k_reward"):
        assert 0 < metrics[key] < float("inf"), key
    assert 10 < metrics["unique_objects"] <= 20  # 64 samples of C(6, 3) = 20 sets
    assert [e["step"] for e in metrics["eval_history"]] == [4]
    assert f"sets {name}:" in out and "top-100 mean reward" in out


def test_order_options_reach_the_objective(tmp_path, capsys):
    argv = [*SETS, "--objective", "op-db", "--steps", "2", "--learn-pb"]
    options = ["--op-lambda", "0.3", "--op-pairwise", "--op-backward-kl", "0.5"]
    metrics, _ = train([*argv, *options], tmp_path, capsys)
    assert metrics["objective_options"] == {
        "op_lambda": 0.3,
        "order": "pareto",
        "pairwise": True,
        "backward_kl": 0.5,
    }
    options = metrics["objective_options"]
    assert options["op_lambda"] == 0.3 and options["pairwise"]


def test_max_steps_trains_forward_looking_on_incomplete_trajectories(tmp_path, capsys):
    argv = [*SETS, "--objective", "fl-subtb", "--steps", "3", "--max-steps", "2"]
    metrics, out = train(argv, tmp_path, capsys)
    assert metrics["config"]["max_steps"] == 2 and metrics["final_loss"] > 0
    assert metrics["unique_objects"] == 0 and metrics["top_k_reward"] is None
    assert "top-100" not in out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--objective", "tb", "--max-steps", "2"], "objective 'tb' cannot learn"),
        (["--objective", "fl-db", "--max-steps", "0"], "max_steps must be >= 1"),
        (["--objective", "op-db", "--op-lambda", "-1"], "op_lambda must be >= 0"),
        (["--top-k", "-1"], "top_k must be >= 0"),
    ],
)
def test_bad_objective_options_are_one_line_errors(options, message, tmp_path, capsys):
    code, _, err = call(["train", *SETS, *options, "--out", str(tmp_path / "x"), *QUIET], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_batches_are_cut_after_max_steps():
    env = SetGeneration(8, 5)
    config = TrainConfig(batch_size=6, max_steps=3)
    policy = build_policy(env, ModelConfig(hidden=16))
    trainer = Trainer(env, policy, get_objective("fl-db"), config)
    rollout = trainer.batch()
    assert (rollout.lengths == 3).all() and not rollout.done.any()
    assert trainer.train_step() > 0


def test_top_k_tracks_the_best_distinct_objects_sampled():
    seed_everything(0)
    env = HyperGrid(2, 5, r0=0.1)
    config = TrainConfig(batch_size=8, top_k=3, epsilon=0.5)
    policy = build_policy(env, ModelConfig(hidden=16))
    trainer = Trainer(env, policy, get_objective("tb"), config)
    rewards = {}
    for _ in range(5):
        rollout = trainer.batch()
        keys = env.keys(rollout.terminal)
        rewards |= dict(zip(keys, rollout.log_reward.exp().tolist(), strict=True))
    stats = trainer.object_stats()
    assert stats["unique_objects"] == len(rewards) > 3
    best = sorted(rewards.values(), reverse=True)[:3]
    assert stats["top_k_reward"] == pytest.approx(sum(best) / 3)
    kept = trainer.top.best.log_reward.exp().sort().values
    assert torch.allclose(kept, torch.tensor(best).sort().values)

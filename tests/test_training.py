"""The training loop learns the exact target, resumes bit-identically, and refuses NaN losses;
the replay buffer keeps the best distinct objects."""

import dataclasses
import json

import pytest
import torch
from gflow.envs.hypergrid import HyperGrid

from gflow.checkpoint import load_checkpoint, seed_everything
from gflow.conditioning import ConditionalEnv, Conditioning
from gflow.exact import exact_report
from gflow.objectives import Objective, get_objective, trajectory_balance
from gflow.replay import ReplayBuffer, cat_rollouts
from gflow.sampling import sample_backward, sample_forward
from gflow.scoring import score
from gflow.training import ModelConfig, TrainConfig, build_policy, train

SMALL = ModelConfig(hidden=16, learn_pb=True)
PLAIN = ModelConfig(hidden=16)


def run(env, config, objective="tb", model=SMALL, init_seed=None, **kwargs):
    """Seed, build the policy, train (`objective`: a name or an Objective); the policy and the
    metrics."""
    seed_everything(config.seed if init_seed is None else init_seed)
    policy = build_policy(env, model, config.device)
    if isinstance(objective, str):
        objective = get_objective(objective)
    return policy, train(env, policy, objective, config, quiet=True, **kwargs)


@pytest.mark.parametrize("name", ["tb", "db", "subtb", "fm"])
def test_objective_learns_exact_target(name):
    env = HyperGrid(2, 8, r0=0.1)
    config = TrainConfig(steps=300, batch_size=32, lr=3e-3, epsilon=0.05, eval_every=0)
    policy, metrics = run(env, config, name, ModelConfig(hidden=64))
    assert metrics["exact_tv"] < 0.05, metrics["exact_tv"]
    assert metrics["log_z_error"] < 0.1, metrics["log_z_error"]
    assert metrics["steps"] == 300 and metrics["iterations_per_second"] > 0
    report = exact_report(env, policy, log_z=get_objective(name).log_z)
    assert report["exact_tv"] == metrics["exact_tv"]


def small(tmp_path, **changes):
    """A tiny run with replay, checkpointing into tmp_path (with the SMALL model: a learned
    backward policy)."""
    base = dict(
        steps=30,
        batch_size=8,
        epsilon=0.1,
        replay_capacity=12,
        replay_fraction=0.5,
        checkpoint_every=10,
        eval_every=10,
        log_every=5,
        out=str(tmp_path),
    )
    return TrainConfig(**(base | changes))


def assert_same_state(a, b):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_resume_ends_bit_identical(tmp_path):
    env = HyperGrid(2, 6, r0=0.1)
    whole, whole_metrics = run(env, small(tmp_path / "whole"))
    run(env, small(tmp_path / "split", steps=17))
    resumed, resumed_metrics = run(env, small(tmp_path / "split"), init_seed=123)
    assert_same_state(whole, resumed)
    for key in ("final_loss", "exact_tv", "steps"):
        assert resumed_metrics[key] == whole_metrics[key], key
    losses = [[e["loss"] for e in m["loss_history"]] for m in (whole_metrics, resumed_metrics)]
    assert losses[0] == losses[1] and len(losses[0]) == 6
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert torch.equal(a["replay"]["log_reward"], b["replay"]["log_reward"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for key, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][key]["exp_avg_sq"])


def test_run_killed_between_checkpoints_resumes_from_the_last(tmp_path):
    env = HyperGrid(2, 6, r0=0.1)
    whole, _ = run(env, small(tmp_path / "whole"))
    calls = 0

    def dies_at_step_25(traj):
        nonlocal calls
        calls += 1
        if calls == 25:
            raise KeyboardInterrupt
        return trajectory_balance(traj)

    with pytest.raises(KeyboardInterrupt):
        run(env, small(tmp_path / "split"), Objective("tb", dies_at_step_25))
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 20
    resumed, _ = run(env, small(tmp_path / "split"), resume=True)
    assert_same_state(whole, resumed)


def test_resume_with_other_config_is_an_error(tmp_path):
    env = HyperGrid(2, 6, r0=0.1)
    run(env, small(tmp_path, steps=5))
    with pytest.raises(ValueError, match="lr 0.001 there, 0.01 here"):
        run(env, small(tmp_path, lr=1e-2))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run(env, small(tmp_path / "empty"), resume=True)


def test_metrics_file_and_seeds(tmp_path):
    env = HyperGrid(2, 6, r0=0.1)
    config = small(tmp_path, replay_capacity=0, steps=20)
    first, metrics = run(env, config, model=PLAIN, resume=False)
    again, _ = run(env, config, model=PLAIN, resume=False)
    other, _ = run(env, dataclasses.replace(config, seed=1), model=PLAIN, resume=False)
    assert_same_state(first, again)
    assert not torch.equal(first.forward_head.weight, other.forward_head.weight)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["steps"] == 20 and saved["config"]["seed"] == 1
    assert [e["step"] for e in metrics["eval_history"]] == [10, 20]
    assert metrics["exact_tv"] == metrics["eval_history"][-1]["exact_tv"]
    assert (tmp_path / "tb").is_dir()


def test_non_finite_loss_raises_naming_the_step():
    env = HyperGrid(2, 6, r0=0.1)
    calls = 0

    def nan_at_step_3(traj):
        nonlocal calls
        calls += 1
        return trajectory_balance(traj) * (float("nan") if calls == 3 else 1.0)

    with pytest.raises(FloatingPointError, match="at step 3"):
        run(env, TrainConfig(steps=10), Objective("tb", nan_at_step_3), PLAIN)


def test_conditional_env_trains_with_replay():
    env = ConditionalEnv(HyperGrid(2, 6, r0=0.1), Conditioning())
    config = TrainConfig(steps=6, batch_size=8, replay_capacity=10)
    policy, metrics = run(env, config, model=PLAIN)
    assert policy.cond_dim == env.conditioning.cond_dim
    assert metrics["steps"] == 6 and "exact_tv" not in metrics


def test_replay_keeps_best_distinct_objects():
    env = HyperGrid(2, 4, r0=0.1)
    buffer = ReplayBuffer(env, capacity=3)
    states = torch.tensor([[0, 0], [3, 3], [0, 0], [1, 2], [3, 0], [2, 2]])
    buffer.add(states, env.log_reward(states))
    assert len(buffer) == 3
    best = torch.tensor([[0, 0], [3, 3], [3, 0]])  # reward 0.6; (1, 2) and (2, 2) have 0.1
    assert env.keys(buffer.states) == env.keys(best)
    buffer.add(states[:2], env.log_reward(states[:2]))
    assert len(buffer) == 3
    copy = ReplayBuffer(env, capacity=3)
    copy.load_state_dict(buffer.state_dict())
    copy.add(buffer.states, buffer.log_reward)
    assert torch.equal(copy.states, buffer.states)
    drawn, log_reward, cond = buffer.sample(50)
    assert cond is None and torch.equal(log_reward, env.log_reward(drawn))
    assert set(env.keys(drawn)) <= set(env.keys(buffer.states))


def test_cat_rollouts_scores_like_its_parts():
    torch.manual_seed(0)
    env = HyperGrid(3, 4, r0=0.1)
    policy = build_policy(env, SMALL)
    online = sample_forward(env, policy, 5, epsilon=0.5)
    replayed = sample_backward(env, policy, torch.tensor([[3, 3, 3], [0, 0, 0], [1, 0, 2]]))
    both = score(env, policy, cat_rollouts(env, [online, replayed]))
    for part, rows in ((online, slice(0, 5)), (replayed, slice(5, 8))):
        alone = score(env, policy, part)
        width = alone.log_pf.shape[1]
        torch.testing.assert_close(both.log_pf[rows, :width], alone.log_pf)
        torch.testing.assert_close(both.log_pb[rows, :width], alone.log_pb)
        torch.testing.assert_close(both.log_flow[rows, : width + 1], alone.log_flow)
        assert (both.log_pf[rows, width:] == 0).all()

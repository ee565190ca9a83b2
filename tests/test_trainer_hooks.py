"""The trainer's open seams: overridable batch / loss / evaluate, callbacks at the right steps,
the stop condition, a user's objective under any name, and policies restored from checkpoints."""

import pytest
import torch
from gflow.envs.hypergrid import HyperGrid

from gflow.checkpoint import seed_everything
from gflow.objectives import Objective, get_objective, trajectory_balance
from gflow.policies.registry import PolicySpec, register_policy
from gflow.training import (
    Callback,
    ModelConfig,
    TrainConfig,
    Trainer,
    build_policy,
    load_policy,
    train,
)

ENV = HyperGrid(2, 4, r0=0.1)
MODEL = ModelConfig(hidden=16)


def trainer(config=None, objective=None, kind=Trainer):
    """A seeded tiny trainer on the 4x4 grid."""
    seed_everything(0)
    config = config or TrainConfig(steps=6, batch_size=4, eval_every=0, log_every=1)
    return kind(ENV, build_policy(ENV, MODEL), objective or get_objective("tb"), config)


class Recorder(Callback):
    """Remembers every event with the trainer's step."""

    def __init__(self):
        self.events = []

    def after_step(self, trainer, loss, batch):
        assert loss.requires_grad is False and len(batch.lengths) == trainer.config.batch_size
        self.events.append(("step", trainer.step))

    def after_evaluate(self, trainer, entry):
        entry["seen_by_callback"] = True
        self.events.append(("evaluate", entry["step"]))

    def at_checkpoint(self, trainer, path):
        assert path.is_file()
        self.events.append(("checkpoint", trainer.step))


def test_callbacks_fire_at_the_right_steps(tmp_path):
    config = TrainConfig(
        steps=6, batch_size=4, eval_every=2, checkpoint_every=3, log_every=1, out=str(tmp_path)
    )
    recorder = Recorder()
    metrics = trainer(config).run(quiet=True, callbacks=[recorder])
    steps = [("step", s) for s in range(1, 7)]
    evaluations = [("evaluate", s) for s in (2, 4, 6)]
    checkpoints = [("checkpoint", s) for s in (3, 6, 6)]  # every 3, and the final save
    assert sorted(recorder.events) == sorted(steps + evaluations + checkpoints)
    order = [e for e in recorder.events if e[1] == 6]
    assert order == [("step", 6), ("evaluate", 6), ("checkpoint", 6), ("checkpoint", 6)]
    assert all(e["seen_by_callback"] for e in metrics["eval_history"])


def test_until_stops_the_run_and_it_still_evaluates_and_saves(tmp_path):
    config = TrainConfig(steps=50, batch_size=4, eval_every=0, out=str(tmp_path))
    metrics = trainer(config).run(quiet=True, until=lambda t: t.step >= 7)
    assert metrics["steps"] == 7 and metrics["eval_history"][-1]["step"] == 7
    assert (tmp_path / "checkpoint.pt").is_file()


def test_until_sees_the_training_clock_of_the_step_just_taken():
    """A time budget stops at the first step past it, even between logging steps."""
    config = TrainConfig(steps=50, batch_size=4, eval_every=0, log_every=1000)
    metrics = trainer(config).run(quiet=True, until=lambda t: t.train_seconds > 0)
    assert metrics["steps"] == 1


def test_overridden_batch_loss_and_evaluate_are_used():
    class Custom(Trainer):
        batches = losses = 0

        def batch(self):
            self.batches += 1
            return super().batch()

        def loss(self, batch):
            self.losses += 1
            return 2.0 * super().loss(batch)

        def evaluate(self):
            return {"custom": float(self.step)}

    t = trainer(TrainConfig(steps=4, batch_size=4, eval_every=2), kind=Custom)
    metrics = t.run(quiet=True)
    assert t.batches == t.losses == 4
    assert [(e["step"], e["custom"]) for e in metrics["eval_history"]] == [(2, 2.0), (4, 4.0)]
    assert metrics["custom"] == 4.0


def test_loss_override_changes_the_update():
    class Doubled(Trainer):
        def loss(self, batch):
            return 2.0 * super().loss(batch)

    plain, doubled = trainer(), trainer(kind=Doubled)
    seed_everything(1)
    first = plain.train_step()
    seed_everything(1)
    second = doubled.train_step()
    assert float(second) == pytest.approx(2.0 * float(first))


def test_a_user_objective_with_any_name_trains_and_resumes(tmp_path):
    mine = Objective("my-own-loss", lambda traj: trajectory_balance(traj))
    config = TrainConfig(steps=4, batch_size=4, eval_every=0, checkpoint_every=2, out=str(tmp_path))
    seed_everything(0)
    policy = build_policy(ENV, MODEL)
    metrics = train(ENV, policy, mine, config, quiet=True)
    assert metrics["objective"] == "my-own-loss" and metrics["steps"] == 4
    longer = TrainConfig(**(vars(config) | {"steps": 6}))
    metrics = train(ENV, build_policy(ENV, MODEL), mine, longer, quiet=True)
    assert metrics["steps"] == 6
    other = Objective("another-loss", trajectory_balance)
    with pytest.raises(ValueError, match="objective .*my-own-loss.* there"):
        train(ENV, build_policy(ENV, MODEL), other, longer, quiet=True)


def test_a_plain_loss_function_trains_like_an_objective():
    def my_loss(traj):
        return trajectory_balance(traj)

    config = TrainConfig(steps=3, batch_size=4, eval_every=0)
    seed_everything(0)
    policy = build_policy(ENV, MODEL)
    metrics = train(ENV, policy, my_loss, config, quiet=True)
    seed_everything(0)
    same = build_policy(ENV, MODEL)
    named = train(ENV, same, Objective("my_loss", trajectory_balance), config, quiet=True)
    assert metrics["objective"] == "my_loss" and metrics["final_loss"] == named["final_loss"]


def test_load_policy_rebuilds_any_registered_policy(tmp_path):
    config = TrainConfig(steps=3, batch_size=4, eval_every=0, out=str(tmp_path))
    seed_everything(0)
    policy = build_policy(ENV, ModelConfig(hidden=8, layers=1, learn_pb=True))
    train(ENV, policy, get_objective("tb"), config, quiet=True)
    loaded = load_policy(tmp_path, ENV)
    assert loaded.spec == policy.spec and loaded.spec.name == "mlp"
    features = ENV.featurize(ENV.initial(2))
    assert torch.equal(loaded(features).forward_logits, policy(features).forward_logits)

    calls = []

    def doubled_mlp(env, **options):
        calls.append(options)
        return build_policy(env, PolicySpec("mlp", options))

    register_policy("test-doubled-mlp", doubled_mlp)
    spec = PolicySpec("test-doubled-mlp", {"hidden": 8, "layers": 1, "cond_dim": 0})
    custom = build_policy(ENV, spec)
    elsewhere = TrainConfig(**(vars(config) | {"out": str(tmp_path / "custom")}))
    train(ENV, custom, get_objective("tb"), elsewhere, quiet=True)
    again = load_policy(tmp_path / "custom" / "checkpoint.pt", ENV)
    assert again.spec == spec and len(calls) == 2
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_policy(tmp_path / "missing", ENV)

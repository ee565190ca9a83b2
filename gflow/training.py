"""The training loop: sample, score, loss, step; with replay, progress, TensorBoard scalars,
evaluation, checkpoints and exact resume. One `Trainer` runs every kind of training: its parts
(`batch`, `loss`, `evaluate`) are overridable, `run` takes callbacks and a stop condition, and
`start_or_resume` starts a run afresh or continues it from its checkpoint."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gflow.checkpoint import (
    CHECKPOINT,
    announce_resume,
    load_checkpoint,
    open_run,
    rng_state,
    save_checkpoint,
    save_json,
    seed_everything,
    set_rng_state,
)
from gflow.env import Env
from gflow.exact import exact_report, state_graph
from gflow.guards import LogitsError, RewardError, at_step, loss_error
from gflow.objectives import Loss, Objective, as_objective
from gflow.policies.base import Policy
from gflow.policies.registry import build_policy, restore_policy
from gflow.replay import ReplayBuffer, cat_rollouts
from gflow.run_config import RESUMABLE, ModelConfig, TrainConfig
from gflow.sampling import DEDUPE_BATCH, Rollout, sample_backward, sample_forward
from gflow.scoring import score
from gflow.tabular import state_table
from gflow.trajectories import FORCED_STOP_FREE

__all__ = [
    "Callback",
    "ModelConfig",
    "TrainConfig",
    "Trainer",
    "build_policy",
    "load_policy",
    "start_or_resume",
    "train",
]

METRICS = "metrics.json"


class TopObjects:
    """The best `k` distinct objects sampled so far, by reward, and how many distinct objects
    were sampled: cheap progress measures where the target cannot be enumerated."""

    def __init__(self, env: Env, k: int):
        self.env = env
        self.best = ReplayBuffer(env, k)
        self.seen: set = set()

    def add(self, rollout: Rollout) -> None:
        """Offer the objects of a rollout's complete trajectories."""
        done = rollout.done
        if done.any():
            self.add_objects(self.env.select(rollout.terminal, done), rollout.log_reward[done])

    def add_objects(self, objects: Any, log_reward: torch.Tensor) -> None:
        """Offer complete objects with their log rewards."""
        if len(log_reward):
            self.best.add(objects, log_reward)
            self.seen.update(self.env.keys(objects))

    def stats(self) -> dict[str, float | int | None]:
        """Mean reward of the best k (of all, while fewer were seen; None before any) and the
        number of distinct objects."""
        best = float(self.best.log_reward.exp().mean()) if len(self.best) else None
        return {"top_k_reward": best, "unique_objects": len(self.seen)}

    def state_dict(self) -> dict[str, Any]:
        """The tracked objects, for a checkpoint."""
        return {"best": self.best.state_dict(), "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved."""
        self.best.load_state_dict(state["best"])
        self.seen = set(state["seen"])


def build_optimizer(policy: Policy, config: TrainConfig) -> torch.optim.Adam:
    """Adam with log Z in its own parameter group at `lr_log_z` (fused where torch has it)."""
    log_z = {id(p) for p in policy.log_z_parameters()}
    groups = [
        {"params": [p for p in policy.parameters() if id(p) not in log_z], "lr": config.lr},
        {"params": policy.log_z_parameters(), "lr": config.lr_log_z},
    ]
    try:
        return torch.optim.Adam(groups, fused=True)
    except RuntimeError:
        return torch.optim.Adam(groups)


class Callback:
    """Something `Trainer.run` tells about its progress; override the events you need. Each
    runs outside the training clock (`train_seconds`)."""

    def after_step(self, trainer: Trainer, loss: torch.Tensor, batch: Rollout | None) -> None:
        """After each optimizer step (`trainer.step` counts it) with its detached loss and the
        batch it trained on (`trainer.last_batch`)."""

    def after_evaluate(self, trainer: Trainer, entry: dict[str, Any]) -> None:
        """After each evaluation, with the entry just appended to `trainer.eval_history` (the
        callback may add keys to it)."""

    def at_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After each checkpoint written to `path`."""


Until = Callable[["Trainer"], bool]
"""A stop condition, asked after each step (and its callbacks): True ends the run there."""


class Trainer:
    """One training run: holds the optimizer, replay buffer, step count, clocks and history.

    A step is `batch()` (the rollouts to learn from), `loss(batch)` (score them and apply the
    objective) and an optimizer step; `evaluate()` measures the sampler. Subclasses override
    these parts; `run` drives them with callbacks and a stop condition.
    """

    def __init__(
        self,
        env: Env,
        policy: Policy,
        objective: Objective | Loss,
        config: TrainConfig,
        env_info: dict[str, Any] | None = None,
    ):
        objective = as_objective(objective)
        if config.max_steps is not None and not objective.incomplete_ok:
            raise ValueError(
                f"max_steps cuts trajectories, which objective {objective.name!r} cannot learn "
                "from; use one that learns from incomplete trajectories (db, subtb, fl-db, ...)"
            )
        self.env, self.policy, self.objective, self.config = env, policy, objective, config
        self.env_info = env_info or {"name": type(env).__name__, "options": {}}
        self.optimizer = build_optimizer(policy, config)
        self.buffer = ReplayBuffer(env, config.replay_capacity) if config.replay_capacity else None
        tracking = config.top_k > 0 and not env.conditional
        self.top = TopObjects(env, config.top_k) if tracking else None
        self.target = env.exact_target()
        exact = env.is_enumerable() and not env.conditional
        self.graph = state_graph(self.target) if exact else None
        self.table = state_table(env)
        """The environment's state table, which sampling walks when it has one (issue 11)."""
        self.out = None if config.out is None else Path(config.out)
        self.batch_size = config.batch_size
        """Trajectories this process samples per step: the whole batch, or its share when
        several processes train together (`gflow.distributed`)."""
        self.step = 0
        self.seconds = 0.0
        self.train_seconds = 0.0
        self.eval_history: list[dict[str, Any]] = []
        self.loss_history: list[dict[str, Any]] = []
        self.last_loss: float | None = None
        self.last_batch: Rollout | None = None
        self.online: int | None = None
        """Rows of the last batch sampled on-policy (the first ones; replayed ones follow)."""

    def batch(self) -> Rollout:
        """One training batch: on-policy rollouts, plus replayed objects traced backward."""
        cfg, env = self.config, self.env
        n_replay = int(self.batch_size * cfg.replay_fraction) if self.buffer is not None else 0
        if self.buffer is not None and len(self.buffer) < n_replay:
            n_replay = 0
        n = self.batch_size - n_replay
        cond = env.conditioning.sample(n) if env.conditional else None
        online = sample_forward(
            env, self.policy, n, cond, cfg.temperature, cfg.epsilon, cfg.max_steps,
            # scoring reuses the sampling pass (issue 11), unless replayed rows join the batch
            # (`cat_rollouts` keeps no record, so recording would cost for nothing)
            keep_outputs=not n_replay,
            fixed_horizon=env.device.type == "cuda",  # no host sync while sampling (issue 11)
            dedupe=n >= DEDUPE_BATCH,  # one policy pass per distinct state (issue 11)
            table=self.table,  # featurize, mask and step by lookups (issue 11)
            # an objective that reads nothing at forced stops lets the policy skip them (#12)
            record_forced_stops=not self.objective.needs <= FORCED_STOP_FREE,
        )
        self.online = n
        self.track(online)
        if self.buffer is None:
            return online
        done = online.done
        if done.any():
            cond = None if online.cond is None else online.cond[done]
            self.buffer.add(env.select(online.terminal, done), online.log_reward[done], cond)
        if not n_replay:
            return online
        states, log_reward, cond = self.buffer.sample(n_replay)
        replayed = sample_backward(env, self.policy, states, cond, log_reward)
        return cat_rollouts(env, [online, replayed])

    def track(self, online: Rollout) -> None:
        """Offer a step's on-policy rollouts to the top-k tracker (where there is one)."""
        if self.top is not None:
            self.top.add(online)

    def gather(self, value: Any) -> list[Any] | None:
        """Every training process's `value`, in process order, on the process that writes
        (here the only one: `[value]`); None on the others (`gflow.distributed`)."""
        return [value]

    def loss(self, batch: Rollout) -> torch.Tensor:
        """The objective's loss on a batch, scored with what the objective needs."""
        obj = self.objective
        return obj.loss(score(self.env, self.policy, batch, obj.needs))

    def train_step(self) -> torch.Tensor:
        """`batch`, `loss`, optimizer step; the loss (detached). A non-finite loss raises
        before any update."""
        batch = self.batch()
        loss = self.loss(batch)
        if not torch.isfinite(loss):
            raise at_step(loss_error(loss, batch.log_reward, self.policy, self.env), self.step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.backward(loss)
        self.optimizer.step()
        self.step += 1
        self.last_batch = batch
        return loss.detach()

    def backward(self, loss: torch.Tensor) -> None:
        """Fill the parameters' gradients from the loss (processes training together also
        combine theirs here)."""
        loss.backward()

    def open_run(self, resume: bool | None, restart: bool) -> dict[str, Any] | None:
        """Prepare the output folder and return the checkpoint to continue from, or None
        (`gflow.checkpoint.open_run`)."""
        return open_run(self.out, self.config.device, resume, restart)

    def object_stats(self) -> dict[str, float | int | None]:
        """`TopObjects.stats` of the sampled training rollouts so far; empty when not tracked."""
        return {} if self.top is None else self.top.stats()

    def evaluate(self) -> dict[str, float] | None:
        """Measures of the sampler now; by default the exact distribution errors against
        `env.exact_target()` (enumerable, unconditional envs), None where there is nothing to
        measure. `run` records them in the eval history."""
        if self.graph is None:
            return None
        return exact_report(self.target, self.policy, self.graph, log_z=self.objective.log_z)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly."""
        spec = self.policy.spec
        return {
            "format": 2,
            "step": self.step,
            "policy": self.policy.state_dict(),
            "policy_spec": None if spec is None else spec.record(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "replay": None if self.buffer is None else self.buffer.state_dict(),
            "top": None if self.top is None else self.top.state_dict(),
            "config": asdict(self.config),
            "env": self.env_info,
            "objective": self._objective_record(),
            "seconds": self.seconds,
            "train_seconds": self.train_seconds,
            "eval_history": self.eval_history,
            "loss_history": self.loss_history,
            "last_loss": self.last_loss,
        }

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        """Continue from a checkpoint; a configuration that differs from it is an error."""
        self._check_compatible(state, source)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.buffer is not None:
            self.buffer.load_state_dict(state["replay"])
        if self.top is not None and state.get("top") is not None:
            self.top.load_state_dict(state["top"])
        set_rng_state(state["rng"])
        self.step = state["step"]
        self.seconds, self.train_seconds = state["seconds"], state["train_seconds"]
        self.eval_history, self.loss_history = state["eval_history"], state["loss_history"]
        self.last_loss = state["last_loss"]

    def _objective_record(self) -> dict[str, Any]:
        """The objective's name and options, as checkpoints and metrics record them."""
        return {"name": self.objective.name, "options": self.objective.options}

    def _check_compatible(self, state: dict[str, Any], source: str) -> None:
        ours = asdict(self.config)
        theirs = state["config"]
        diffs = [
            f"{f.name} {theirs.get(f.name)!r} there, {ours[f.name]!r} here"
            for f in fields(self.config)
            if f.name not in RESUMABLE and theirs.get(f.name, f.default) != ours[f.name]
        ]
        if state["env"] != self.env_info:
            diffs.append(f"environment {state['env']} there, {self.env_info} here")
        objective = self._objective_record()
        if state["objective"] != objective:
            diffs.append(f"objective {state['objective']} there, {objective} here")
        spec = None if self.policy.spec is None else self.policy.spec.record()
        if spec is not None and state.get("policy_spec") not in (None, spec):
            diffs.append(f"policy {state['policy_spec']} there, {spec} here")
        if diffs:
            raise ValueError(
                f"{source} was made with a different configuration ({'; '.join(diffs)}); "
                "use another output folder, or --restart to move this run aside"
            )

    def metrics(self) -> dict[str, Any]:
        """The run's summary: throughput, final loss, exact errors, histories, configuration."""
        last_eval = self.eval_history[-1] if self.eval_history else {}
        rate = self.step / self.train_seconds if self.train_seconds > 0 else None
        spec = self.policy.spec
        return {
            "env": self.env_info,
            "objective": self.objective.name,
            "objective_options": self.objective.options,
            "policy": None if spec is None else spec.record(),
            "config": asdict(self.config),
            "steps": self.step,
            "seconds": self.seconds,
            "train_seconds": self.train_seconds,
            "iterations_per_second": rate,
            "trajectories_per_second": None if rate is None else rate * self.config.batch_size,
            "final_loss": self.last_loss,
            **self.object_stats(),
            **{k: v for k, v in last_eval.items() if k not in ("step", "seconds", "train_seconds")},
            "eval_history": self.eval_history,
            "loss_history": self.loss_history,
            "last_loss": self.last_loss,
        }

    def save(self) -> Path | None:
        """Write checkpoint.pt and metrics.json into the output folder, atomically; the
        checkpoint's path (None without an output folder)."""
        if self.out is None:
            return None
        save_checkpoint(self.out / CHECKPOINT, self.state_dict())
        save_json(self.out / METRICS, self.metrics())
        return self.out / CHECKPOINT

    def run(
        self,
        quiet: bool = False,
        until: Until | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> dict[str, Any]:
        """Train up to `config.steps` (or until `until(trainer)` says stop), evaluating and
        checkpointing on the config's periods and telling `callbacks`; then evaluate,
        checkpoint and return the metrics."""
        cfg = self.config
        writer = self._writer()
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"{self.env_info['name']} {self.objective.name}",
            disable=quiet or not sys.stderr.isatty(),
            dynamic_ncols=True,
        )
        start, overhead = time.perf_counter(), 0.0
        seconds0, train0 = self.seconds, self.train_seconds

        def clock() -> float:
            now = time.perf_counter()
            self.seconds = seconds0 + now - start
            self.train_seconds = train0 + now - start - overhead
            return now

        loss = None
        try:
            while self.step < cfg.steps:
                try:
                    loss = self.train_step()
                except (RewardError, LogitsError) as err:
                    raise at_step(err, self.step + 1) from err
                bar.update()
                step = self.step
                if step % cfg.log_every == 0:
                    clock()
                    self._log(float(loss), writer, bar)
                evaluating = _due(step, cfg.eval_every)
                saving = self.out is not None and _due(step, cfg.checkpoint_every)
                if callbacks or evaluating or saving:
                    paused = clock()
                    for callback in callbacks:
                        callback.after_step(self, loss, self.last_batch)
                    if evaluating:
                        self._evaluate(writer, callbacks)
                    if saving:
                        self._save(callbacks)
                    overhead += time.perf_counter() - paused
                if until is not None:
                    clock()
                    if until(self):
                        break
            clock()
            if loss is not None:
                self.last_loss = float(loss)
            if not self.eval_history or self.eval_history[-1]["step"] != self.step:
                self._evaluate(writer, callbacks)
            self._save(callbacks)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return self.metrics()

    def _evaluate(self, writer: Any, callbacks: Sequence[Callback]) -> None:
        """Evaluate now; record, log and announce the report (if any)."""
        report = self.evaluate()
        if report is None:
            return
        entry = {"step": self.step, "seconds": self.seconds, "train_seconds": self.train_seconds}
        self.eval_history.append(entry | report)
        if writer is not None:
            for key, value in report.items():
                writer.add_scalar(f"eval/{key}", value, self.step)
        for callback in callbacks:
            callback.after_evaluate(self, self.eval_history[-1])

    def _save(self, callbacks: Sequence[Callback]) -> None:
        """Checkpoint now and announce it (without an output folder, nothing happens)."""
        path = self.save()
        if path is not None:
            for callback in callbacks:
                callback.at_checkpoint(self, path)

    def _writer(self) -> Any:
        """A TensorBoard writer into OUT/tb, dropping events past the resumed step."""
        if self.out is None:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out / "tb"), purge_step=self.step + 1 if self.step else None)

    def _log(self, loss: float, writer: Any, bar: tqdm) -> None:
        self.last_loss = loss
        stats = self.object_stats()
        entry = {"step": self.step, "seconds": self.seconds, "loss": loss}
        self.loss_history.append(entry | stats)
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if writer is not None:
            writer.add_scalar("train/loss", loss, self.step)
            for key, value in stats.items():
                if value is not None:
                    writer.add_scalar(f"train/{key}", value, self.step)
            if self.train_seconds > 0:
                rate = self.step / self.train_seconds
                writer.add_scalar("train/iterations_per_second", rate, self.step)


def _due(step: int, every: int) -> bool:
    """Whether a periodic action (0: never) falls on `step`."""
    return every > 0 and step % every == 0


def start_or_resume(
    trainer: Trainer,
    resume: bool | None = None,
    quiet: bool = False,
    until: Until | None = None,
    callbacks: Sequence[Callback] = (),
    restart: bool = False,
) -> dict[str, Any]:
    """Run a trainer from its start or from its checkpoint, and return the metrics.

    A fresh run seeds every generator with `config.seed` before its first step. With an output
    folder holding a checkpoint, the run continues from it (`resume=None`: when one exists;
    `True`: one must exist; `False`: start afresh), ending exactly where an uninterrupted run
    with the same seed would; `restart` first moves an existing output folder aside.
    """
    state = trainer.open_run(resume, restart)
    if state is not None:
        trainer.load_state_dict(state, source=f"{trainer.out}/{CHECKPOINT}")
        announce_resume(trainer.out, trainer.step, trainer.config.steps)
    else:
        seed_everything(trainer.config.seed)
    return trainer.run(quiet, until, callbacks)


def train(
    env: Env,
    policy: Policy,
    objective: Objective | Loss,
    config: TrainConfig,
    *,
    env_info: dict[str, Any] | None = None,
    quiet: bool = False,
    resume: bool | None = None,
    until: Until | None = None,
    callbacks: Sequence[Callback] = (),
    restart: bool = False,
) -> dict[str, Any]:
    """Train `policy` on `env` with `objective` (any `Objective`, built-in or the user's, or a
    plain loss function of Trajectories) and return the metrics; see `start_or_resume` for
    seeding, resuming and restarting, `Trainer.run` for `until` and `callbacks`."""
    trainer = Trainer(env, policy, objective, config, env_info)
    return start_or_resume(trainer, resume, quiet, until, callbacks, restart)


def load_policy(
    source: str | os.PathLike, env: Env, device: torch.device | str = "cpu"
) -> Policy:
    """The trained policy of a checkpoint (its file, or the run folder holding checkpoint.pt),
    rebuilt for `env` whatever its class (see `gflow.policies.registry`)."""
    path = Path(source)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return restore_policy(load_checkpoint(path, device), env, device, str(path))

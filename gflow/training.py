"""The training loop: sample, score, loss, step; with replay, progress, TensorBoard scalars,
exact evaluation, checkpoints and exact resume."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gflow.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    save_json,
    seed_everything,
    set_rng_state,
)
from gflow.env import Env
from gflow.exact import exact_report, state_graph
from gflow.objectives import Objective, get_objective
from gflow.objectives.order_preserving import Prefer
from gflow.policies.base import Policy
from gflow.policies.mlp import MLPPolicy
from gflow.replay import ReplayBuffer, cat_rollouts
from gflow.sampling import Rollout, sample_backward, sample_forward
from gflow.scoring import score

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
INCOMPLETE_OK = ("fl-db", "fl-subtb", "db", "subtb")
"""Objectives that learn from incomplete trajectories (rollouts cut by `max_steps`)."""
RESUMABLE = ("steps", "checkpoint_every", "eval_every", "log_every", "device", "out")
"""Config fields a resumed run may change; every other field must match the checkpoint."""


@dataclass
class TrainConfig:
    """Everything that defines a training run besides the environment."""

    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    lr_log_z: float = 1e-1
    epsilon: float = 0.0
    temperature: float = 1.0
    replay_capacity: int = 0
    """Replay buffer size; 0 turns replay off."""
    replay_fraction: float = 0.5
    """Share of each batch traced backward from replayed objects, once the buffer has enough."""
    checkpoint_every: int = 1000
    """Steps between checkpoints (0: only at the end); needs `out`."""
    eval_every: int = 500
    """Steps between exact evaluations (0: only at the end); enumerable, unconditional envs."""
    log_every: int = 100
    seed: int = 0
    device: str = "cpu"
    hidden: int = 256
    layers: int = 2
    learn_pb: bool = False
    subtb_lambda: float = 0.9
    objective: str = "tb"
    max_steps: int | None = None
    """Cut rollouts after this many transitions (incomplete trajectories); None: never."""
    op_lambda: float = 0.1
    """Weight of the order loss next to the balance loss (op-db, op-subtb)."""
    op_pairwise: bool = False
    """Order-preserving objectives use the pairwise order loss."""
    op_backward_kl: float = 0.0
    """Weight of KL(uniform || P_B) in order-preserving objectives (with a learned P_B)."""
    top_k: int = 100
    """Track the best `top_k` distinct objects sampled and the number of distinct objects
    (unconditional envs); 0 turns it off."""
    out: str | None = None
    """Folder for checkpoint.pt, metrics.json and tb/; None keeps the run in memory."""

    def __post_init__(self) -> None:
        at_least = {"steps": 1, "batch_size": 1, "hidden": 1, "layers": 1, "replay_capacity": 0}
        at_least |= {"checkpoint_every": 0, "eval_every": 0, "log_every": 1, "top_k": 0}
        at_least |= {"max_steps": 1} if self.max_steps is not None else {}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        for name in ("lr", "lr_log_z", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if not 0 <= self.replay_fraction < 1:
            raise ValueError(f"replay_fraction must be in [0, 1), got {self.replay_fraction}")
        if not 0 < self.subtb_lambda:
            raise ValueError(f"subtb_lambda must be > 0, got {self.subtb_lambda}")
        for name in ("op_lambda", "op_backward_kl"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_steps is not None and self.objective not in INCOMPLETE_OK:
            raise ValueError(
                f"max_steps cuts trajectories, which objective {self.objective!r} cannot learn "
                f"from; use one of {', '.join(INCOMPLETE_OK)}"
            )


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
            objects = self.env.select(rollout.terminal, done)
            self.best.add(objects, rollout.log_reward[done])
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


def _conditional(env: Env) -> bool:
    """Whether the reward needs conditioning rows, drawn from `env.conditioning` for training."""
    return bool(getattr(env, "conditional", False))


def _graph_env(env: Env) -> Env | None:
    """The graph environment (one with a `forward_layout`) that `env` is or wraps, if any."""
    while not hasattr(env, "forward_layout"):
        env = getattr(env, "env", None)
        if env is None:
            return None
    return env


def exact_target(env: Env) -> Env:
    """The environment whose reward exact evaluation targets: inside a symmetry correction
    (`gflow.envs.graph_symmetry.SymmetryCorrected`, recognised by its `correction`) the uncorrected
    one, since the sampler trained on R(x) |Aut(x)| targets R over isomorphism classes."""
    return env.env if callable(getattr(env, "correction", None)) else env


def build_policy(env: Env, config: TrainConfig) -> Policy:
    """The policy a config describes, on the config's device: a graph transformer for graph
    environments, else an MLP; conditional when the env is."""
    cond_dim = env.conditioning.cond_dim if _conditional(env) else 0
    graph_env = _graph_env(env)
    if graph_env is not None:
        from gflow.policies.graph_transformer import GraphTransformerPolicy

        policy: Policy = GraphTransformerPolicy.for_env(
            graph_env,
            hidden=config.hidden,
            layers=config.layers,
            cond_dim=cond_dim,
            learn_pb=config.learn_pb,
        )
    else:
        policy = MLPPolicy(
            env.feature_dim,
            env.n_actions,
            env.n_backward,
            hidden=config.hidden,
            layers=config.layers,
            cond_dim=cond_dim,
            learn_pb=config.learn_pb,
        )
    return policy.to(config.device)


def build_objective(config: TrainConfig, prefer: Prefer | None = None) -> Objective:
    """The objective a config names, with its options; `prefer` is the comparison of objective
    vectors for order-preserving objectives (default: Pareto dominance)."""
    return get_objective(
        config.objective,
        subtb_lambda=config.subtb_lambda,
        op_lambda=config.op_lambda,
        prefer=prefer,
        pairwise=config.op_pairwise,
        backward_kl=config.op_backward_kl,
    )


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


class Trainer:
    """One training run: holds the optimizer, replay buffer, step count, clocks and history."""

    def __init__(
        self,
        env: Env,
        policy: Policy,
        objective: Objective,
        config: TrainConfig,
        env_info: dict[str, Any] | None = None,
    ):
        if objective.name != config.objective:
            raise ValueError(
                f"objective {objective.name!r} differs from the config's {config.objective!r}"
            )
        self.env, self.policy, self.objective, self.config = env, policy, objective, config
        self.env_info = env_info or {"name": type(env).__name__, "options": {}}
        self.optimizer = build_optimizer(policy, config)
        self.buffer = ReplayBuffer(env, config.replay_capacity) if config.replay_capacity else None
        tracking = config.top_k > 0 and not _conditional(env)
        self.top = TopObjects(env, config.top_k) if tracking else None
        self.target = exact_target(env)
        exact = env.is_enumerable() and not _conditional(env)
        self.graph = state_graph(self.target) if exact else None
        self.out = None if config.out is None else Path(config.out)
        self.step = 0
        self.seconds = 0.0
        self.train_seconds = 0.0
        self.eval_history: list[dict[str, float]] = []
        self.loss_history: list[dict[str, float]] = []
        self.last_loss: float | None = None

    def batch(self) -> Rollout:
        """One training batch: on-policy rollouts, plus replayed objects traced backward."""
        cfg, env = self.config, self.env
        n_replay = int(cfg.batch_size * cfg.replay_fraction) if self.buffer is not None else 0
        if self.buffer is not None and len(self.buffer) < n_replay:
            n_replay = 0
        n = cfg.batch_size - n_replay
        cond = env.conditioning.sample(n) if _conditional(env) else None
        online = sample_forward(
            env, self.policy, n, cond, cfg.temperature, cfg.epsilon, cfg.max_steps
        )
        if self.top is not None:
            self.top.add(online)
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

    def train_step(self) -> torch.Tensor:
        """Sample, score, loss, optimizer step; the loss (detached). A non-finite loss raises."""
        obj = self.objective
        traj = score(
            self.env,
            self.policy,
            self.batch(),
            flow_matching=obj.flow_matching,
            forward_looking=obj.forward_looking,
            order_preserving=obj.order_preserving,
        )
        loss = obj.loss(traj)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss ({float(loss.detach())}) at step {self.step + 1}: no update "
                "was made; try a lower learning rate"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return loss.detach()

    def object_stats(self) -> dict[str, float | int | None]:
        """`TopObjects.stats` of the sampled training rollouts so far; empty when not tracked."""
        return {} if self.top is None else self.top.stats()

    def evaluate(self) -> dict[str, float]:
        """Exact distribution errors against `exact_target(env)` now, appended to the eval
        history (enumerable envs only)."""
        report = exact_report(
            self.target, self.policy, self.graph, flow_matching=self.objective.flow_matching
        )
        entry = {"step": self.step, "seconds": self.seconds, "train_seconds": self.train_seconds}
        self.eval_history.append(entry | report)
        return report

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly."""
        return {
            "format": 1,
            "step": self.step,
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "replay": None if self.buffer is None else self.buffer.state_dict(),
            "top": None if self.top is None else self.top.state_dict(),
            "config": asdict(self.config),
            "env": self.env_info,
            "objective": {"name": self.objective.name, "options": self.objective.options},
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
        objective = {"name": self.objective.name, "options": self.objective.options}
        if state["objective"] != objective:
            diffs.append(f"objective {state['objective']} there, {objective} here")
        if diffs:
            raise ValueError(
                f"{source} was made with a different configuration ({'; '.join(diffs)}); "
                "use another output folder or delete it"
            )

    def metrics(self) -> dict[str, Any]:
        """The run's summary: throughput, final loss, exact errors, histories, configuration."""
        last_eval = self.eval_history[-1] if self.eval_history else {}
        rate = self.step / self.train_seconds if self.train_seconds > 0 else None
        return {
            "env": self.env_info,
            "objective": self.objective.name,
            "objective_options": self.objective.options,
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

    def save(self) -> None:
        """Write checkpoint.pt and metrics.json into the output folder, atomically."""
        if self.out is not None:
            save_checkpoint(self.out / CHECKPOINT, self.state_dict())
            save_json(self.out / METRICS, self.metrics())

    def run(self, quiet: bool = False) -> dict[str, Any]:
        """Train up to `config.steps`, then evaluate, checkpoint and return the metrics."""
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
                loss = self.train_step()
                bar.update()
                step = self.step
                if step % cfg.log_every == 0:
                    clock()
                    self._log(float(loss), writer, bar)
                evaluating = self.graph is not None and _due(step, cfg.eval_every)
                saving = self.out is not None and _due(step, cfg.checkpoint_every)
                if evaluating or saving:
                    paused = clock()
                    if evaluating:
                        self._log_eval(self.evaluate(), writer)
                    if saving:
                        self.save()
                    overhead += time.perf_counter() - paused
            clock()
            if loss is not None:
                self.last_loss = float(loss)
            if self.graph is not None and (
                not self.eval_history or self.eval_history[-1]["step"] != self.step
            ):
                self._log_eval(self.evaluate(), writer)
            self.save()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return self.metrics()

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

    def _log_eval(self, report: dict[str, float], writer: Any) -> None:
        if writer is not None:
            for key, value in report.items():
                writer.add_scalar(f"eval/{key}", value, self.step)


def _due(step: int, every: int) -> bool:
    """Whether a periodic action (0: never) falls on `step`."""
    return every > 0 and step % every == 0


def train(
    env: Env,
    policy: Policy,
    objective: Objective,
    config: TrainConfig,
    *,
    env_info: dict[str, Any] | None = None,
    quiet: bool = False,
    resume: bool | None = None,
) -> dict[str, Any]:
    """Train `policy` on `env` with `objective` and return the metrics.

    A fresh run seeds every generator with `config.seed` before its first step. With an output
    folder holding a checkpoint, the run continues from it (`resume=None`: when one exists;
    `True`: one must exist; `False`: start afresh), ending exactly where an uninterrupted run
    with the same seed would.
    """
    trainer = Trainer(env, policy, objective, config, env_info)
    path = None if trainer.out is None else trainer.out / CHECKPOINT
    if resume and (path is None or not path.exists()):
        raise FileNotFoundError(f"cannot resume: no checkpoint at {path or '(no output folder)'}")
    if path is not None and path.exists() and resume is not False:
        trainer.load_state_dict(load_checkpoint(path, config.device), source=str(path))
    else:
        seed_everything(config.seed)
    return trainer.run(quiet)

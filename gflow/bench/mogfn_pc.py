"""The MOGFN-PC benchmarks' shared driver (Jain et al. 2023): options with a short and a
paper-scale preset, trajectory-balance training of a policy conditioned on a preference
w ~ Dirichlet(alpha) and an inverse temperature beta ~ U(beta_min, beta_max) through
`gflow.training.Trainer`, an evaluation curve during training, the final MOGFN evaluation
(`gflow.bench.mogfn_eval`), then the plots and results.json under --out."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gflow.bench.mogfn_eval import Describe, EvalConfig, evaluate_mogfn
from gflow.bench.plots import curves, pareto_pairs
from gflow.checkpoint import save_json, seed_everything
from gflow.conditioning import (
    SCALARIZATIONS,
    ConditionalEnv,
    Conditioning,
    TemperatureDistribution,
)
from gflow.env import Env
from gflow.metrics.diversity import Distance
from gflow.objectives import get_objective
from gflow.policies.base import Policy
from gflow.training import Callback, ModelConfig, TrainConfig, Trainer, build_policy

RESULTS = "results.json"
PARETO_PLOT = "pareto_pairs.png"
CURVES_PLOT = "curves.png"
CURVE_KEYS = ("hypervolume", "r2", "top_k_reward", "top_k_diversity", "mean_reward")
"""Evaluation metrics recorded along training."""

Extra = Callable[[ConditionalEnv, Policy, torch.Tensor, float], dict[str, Any]]
"""(env, policy, grid preferences, beta) -> extra metrics; its float values join the curve."""



def _option(help_text: str, default: Any = None) -> Any:
    """A preset field with its command-line help (None: the field has no default)."""
    if default is None:
        return field(metadata={"help": help_text})
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class Preset:
    """One MOGFN-PC setting: a benchmark's short or paper-scale preset, or one with
    command-line overrides (`resolve`); validated when made. Each is also a `--flag`."""

    steps: int = _option("training steps")
    batch_size: int = _option("trajectories per training step", 64)
    hidden: int = _option("network width", 256)
    layers: int = _option("network hidden layers", 2)
    lr: float = _option("policy learning rate", 1e-3)
    lr_log_z: float = _option("learning rate of the conditional log Z", 1e-2)
    epsilon: float = _option("uniform-action exploration during training", 0.0)
    alpha: float = _option("Dirichlet concentration of the training preferences", 1.0)
    beta_min: float = _option("smallest training beta (beta ~ U(beta_min, beta_max))", 1.0)
    beta_max: float = _option("largest training beta; the evaluation samples at it", 32.0)
    beta_bins: int = _option("thermometer bins encoding beta", 32)
    grid: int = _option("evaluation simplex grid: points per edge", 11)
    samples: int = _option("evaluation samples per preference", 128)
    k: int = _option("top-K of the evaluation", 10)
    eval_every: int = _option("training steps between curve evaluations (0: none)", 1000)
    curve_samples: int = _option("samples per preference in each curve evaluation", 32)

    def __post_init__(self) -> None:
        at_least = {"steps": 1, "batch_size": 1, "hidden": 1, "layers": 1, "beta_bins": 1}
        at_least |= {"grid": 2, "samples": 1, "k": 1, "eval_every": 0, "curve_samples": 1}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be >= {low}, got {getattr(self, name)}")
        for name in ("lr", "lr_log_z", "alpha"):
            if not getattr(self, name) > 0:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"--epsilon must be in [0, 1], got {self.epsilon}")



@dataclass
class Task:
    """What one benchmark supplies: the multi-objective environment and how to read samples."""

    name: str
    base: Env
    """The unconditioned environment, with `n_reward_components` and `objectives(states)`."""
    objective_names: list[str]
    describe: Describe
    distance: Distance
    notes: dict[str, Any] = field(default_factory=dict)
    """Recorded verbatim in results.json (policy used, deviations from the paper)."""
    true_front: np.ndarray | None = None
    """The exact Pareto front, when known (hypervolume ratio and IGD+)."""
    extra: Extra | None = None
    recording: Callable[[bool], None] | None = None
    """Switched on (True) before each stretch of training and off (False) after it, so that a
    task recording what training generates leaves the evaluations out."""
    callbacks: list[Callback] = field(default_factory=list)
    """Told of each training step before the curve evaluation (e.g. a sample store's recorder)."""
    model_options: dict[str, Any] = field(default_factory=dict)
    """Further `ModelConfig` fields of the policy (e.g. stop_gate), recorded in the settings."""


def add_arguments(parser: argparse.ArgumentParser, short: Preset, paper: Preset) -> None:
    """The MOGFN-PC options; preset ones default to `short`, or `paper` with --paper."""
    parser.add_argument(
        "--paper", action="store_true", help="paper-scale preset (hours on a CPU; a GPU helps)"
    )
    for option in fields(Preset):
        name = option.name
        if name == "steps":
            continue  # --steps is one of gflow bench's common options
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(getattr(short, name)),
            default=None,
            help=f"{option.metadata['help']} (short {getattr(short, name)}, "
            f"paper {getattr(paper, name)})",
        )
    parser.add_argument(
        "--eval-beta", type=float, default=None, help="evaluation beta (default: --beta-max)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=0.0,
        help="stop training after this many seconds of training (default 0: all the steps)",
    )
    parser.add_argument(
        "--scalarization",
        choices=SCALARIZATIONS,
        default="weighted_sum",
        help="how w combines the objectives (default weighted_sum, as MOGFN-PC)",
    )


def resolve(args: argparse.Namespace, short: Preset, paper: Preset) -> Preset:
    """The chosen preset with the options given on the command line instead of its values."""
    given = {f.name: getattr(args, f.name, None) for f in fields(Preset)}
    chosen = paper if args.paper else short
    return replace(chosen, **{k: v for k, v in given.items() if v is not None})


class _Curve(Callback):
    """Curve evaluations every `every` training steps, with the task's record of training
    samples paused during each."""

    def __init__(self, env: ConditionalEnv, task: Task, config: EvalConfig, every: int):
        self.env, self.task, self.config, self.every = env, task, config, every
        self.points: list[dict[str, Any]] = []

    def add(self, trainer: Trainer) -> None:
        """One evaluation at the trainer's current step."""
        probe = _probe(self.env, trainer.policy, self.task, self.config, trainer.step)
        self.points.append(probe)

    def after_step(self, trainer: Trainer, loss: torch.Tensor, batch: Any) -> None:
        if trainer.step % self.every == 0:
            _record(self.task, False)
            self.add(trainer)
            _record(self.task, True)


def run_mogfn(
    args: argparse.Namespace, task: Task, short: Preset, paper: Preset
) -> dict[str, Any]:
    """Train MOGFN-PC on `task`, evaluate it, write plots and results.json; the results."""
    started = time.perf_counter()
    opts = resolve(args, short, paper)
    budget = getattr(args, "max_seconds", 0.0) or 0.0
    if budget < 0:
        raise ValueError(f"--max-seconds must be >= 0, got {budget}")
    seed_everything(args.seed)
    m = task.base.n_reward_components
    conditioning = Conditioning(
        m,
        TemperatureDistribution("uniform", (opts.beta_min, opts.beta_max)),
        alpha=opts.alpha,
        scalarization=args.scalarization,
        beta_encoding="thermometer",
        beta_bins=opts.beta_bins,
        device=args.device,
    )
    env = ConditionalEnv(task.base, conditioning)
    config = TrainConfig(
        steps=opts.steps,
        batch_size=opts.batch_size,
        lr=opts.lr,
        lr_log_z=opts.lr_log_z,
        epsilon=opts.epsilon,
        seed=args.seed,
        device=args.device,
        checkpoint_every=0,
        eval_every=0,
        log_every=max(1, opts.steps // 100),
    )
    final = EvalConfig(opts.grid, opts.samples, opts.k, args.eval_beta)
    probe_n = opts.curve_samples
    probe = EvalConfig(opts.grid, probe_n, min(opts.k, probe_n), args.eval_beta)
    model = ModelConfig(hidden=opts.hidden, layers=opts.layers, **task.model_options)
    policy = build_policy(env, model, args.device)
    trainer = Trainer(env, policy, get_objective("tb"), config, {"name": task.name, "options": {}})
    curve = _Curve(env, task, probe, opts.eval_every)
    if opts.eval_every:
        curve.add(trainer)
    out_of_time = (lambda t: t.train_seconds >= budget) if budget else None
    _record(task, True)
    callbacks = [*task.callbacks, curve] if opts.eval_every else task.callbacks
    trainer.run(quiet=True, until=out_of_time, callbacks=callbacks)
    _record(task, False)
    if opts.eval_every and curve.points[-1]["step"] != trainer.step:
        curve.add(trainer)
    metrics, samples = evaluate_mogfn(
        env, policy, final, task.describe, task.distance, task.true_front
    )
    extra = task.extra(env, policy, samples.preferences, samples.beta) if task.extra else {}
    training = trainer.metrics()
    out = Path(args.out)
    n = samples.objectives.shape[1]
    pareto_pairs(
        samples.objectives.reshape(-1, m).numpy(),
        task.objective_names,
        out / PARETO_PLOT,
        color=samples.preferences[:, 0].repeat_interleave(n).numpy(),
        color_label=f"preference weight of {task.objective_names[0]}",
        true_front=task.true_front,
        title=f"{task.name}: {n} samples per preference at beta {samples.beta:g}",
    )
    series = {"loss": [(e["step"], e["loss"]) for e in training["loss_history"]]}
    for key in (*CURVE_KEYS, *_floats(extra)):
        series[key] = [(e["step"], e[key]) for e in curve.points if key in e]
    series = {key: points for key, points in series.items() if points}
    if series:  # a run stopped (e.g. by --max-seconds) before its first log step has none
        title = f"{task.name} (MOGFN-PC, TB)"
        curves(series, out / CURVES_PLOT, title=title, log_scale=("loss",))
    results = {
        "benchmark": task.name,
        "method": "MOGFN-PC: trajectory balance, policy and log Z conditioned on (w, beta)",
        "preset": "paper" if args.paper else "short",
        "settings": asdict(opts)
        | {
            "seed": args.seed,
            "device": str(args.device),
            "threads": torch.get_num_threads(),
            "eval_beta": samples.beta,
            "scalarization": args.scalarization,
            "objectives": task.objective_names,
            "model_options": task.model_options,
            "temperature": "beta ~ U(beta_min, beta_max), thermometer-encoded",
            "preferences": "w ~ Dirichlet(alpha), raw simplex coordinates",
        },
        "notes": task.notes,
        "training": {
            "steps": training["steps"],
            "seconds": training["seconds"],
            "train_seconds": training["train_seconds"],
            "steps_per_second": training["iterations_per_second"],
            "trajectories_per_second": training["trajectories_per_second"],
            "final_loss": training["final_loss"],
            "loss_history": training["loss_history"],
        },
        "evaluation": metrics | extra,
        "curve": curve.points,
        "plots": [PARETO_PLOT, CURVES_PLOT] if series else [PARETO_PLOT],
        "total_seconds": time.perf_counter() - started,
    }
    save_json(out / RESULTS, results)
    print(_summary(results, out))
    return results


def _record(task: Task, on: bool) -> None:
    """Switch the task's record of training samples on or off (when it keeps one)."""
    if task.recording is not None:
        task.recording(on)


def _probe(
    env: ConditionalEnv, policy: Policy, task: Task, config: EvalConfig, step: int
) -> dict[str, Any]:
    """A small evaluation during training, on its own random stream so that training draws
    the same batches whatever the curve's frequency."""
    devices = [torch.cuda.current_device()] if env.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        metrics, samples = evaluate_mogfn(env, policy, config, task.describe, task.distance)
        extra = task.extra(env, policy, samples.preferences, samples.beta) if task.extra else {}
    return {"step": step} | {key: metrics[key] for key in CURVE_KEYS} | _floats(extra)


def _floats(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite float entries of a mapping."""
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _summary(results: Mapping[str, Any], out: Path) -> str:
    """The lines printed at the end of a run."""
    ev, tr = results["evaluation"], results["training"]
    line = (
        f"{results['benchmark']}: HV {ev['hypervolume']:.4f}"
        + (f" (true {ev['true_hypervolume']:.4f})" if "true_hypervolume" in ev else "")
        + f", R2 {ev['r2']:.4f}, top-{ev['k']} reward {ev['top_k_reward']:.4f}, "
        f"top-{ev['k']} diversity {ev['top_k_diversity']:.3f}"
    )
    speed = (
        f"{tr['steps']} steps in {tr['train_seconds']:.1f} s: {tr['steps_per_second']:.2f} "
        f"steps/s, {tr['trajectories_per_second']:.1f} trajectories/s"
    )
    return f"{line}\n{speed}\nresults: {out / RESULTS}"

"""Settings of a training run, kept apart by what they describe: the run itself (`TrainConfig`)
and the policy network (`ModelConfig`). An objective's own options live on the objective."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def check_at_least(values: Any, bounds: Mapping[str, float]) -> None:
    """Raise a one-line error for the first named field of `values` below its bound."""
    for name, low in bounds.items():
        if getattr(values, name) < low:
            raise ValueError(f"{name} must be >= {low}, got {getattr(values, name)}")


def check_positive(values: Any, names: tuple[str, ...]) -> None:
    """Raise a one-line error for the first named field of `values` that is not > 0."""
    for name in names:
        if not getattr(values, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(values, name)}")


@dataclass
class TrainConfig:
    """What defines a training run besides the environment, the policy and the objective: the
    loop's length, batches, optimizer, exploration, seed, evaluation, checkpoints and where it
    runs. The objective object is the source of truth for the loss and its options."""

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
    """Steps between evaluations (0: only at the end); the exact evaluation needs an
    enumerable, unconditional env."""
    log_every: int = 100
    seed: int = 0
    device: str = "cpu"
    """Torch device of the policy and the batches (`gflow.device.setup_runtime` resolves
    `auto`)."""
    threads: int = 0
    """Torch CPU threads that `gflow.device.setup_runtime` sets; 0 leaves torch's default."""
    max_steps: int | None = None
    """Cut rollouts after this many transitions (incomplete trajectories; only objectives that
    learn from them accept it); None: never."""
    top_k: int = 100
    """Track the best `top_k` distinct objects sampled and the number of distinct objects
    (unconditional envs); 0 turns it off."""
    out: str | None = None
    """Folder for checkpoint.pt, metrics.json and tb/; None keeps the run in memory."""

    def __post_init__(self) -> None:
        at_least = {"steps": 1, "batch_size": 1, "replay_capacity": 0, "threads": 0}
        at_least |= {"checkpoint_every": 0, "eval_every": 0, "log_every": 1, "top_k": 0}
        at_least |= {"max_steps": 1} if self.max_steps is not None else {}
        check_at_least(self, at_least)
        check_positive(self, ("lr", "lr_log_z", "temperature"))
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if not 0 <= self.replay_fraction < 1:
            raise ValueError(f"replay_fraction must be in [0, 1), got {self.replay_fraction}")


RESUMABLE = ("steps", "checkpoint_every", "eval_every", "log_every", "device", "threads", "out")
"""TrainConfig fields a resumed run may change; every other field must match the checkpoint."""


@dataclass
class ModelConfig:
    """The policy network's size and whether it learns P_B; `gflow.policies.registry` turns it
    into a policy fitting an environment (an MLP, or a graph transformer for graph envs)."""

    hidden: int = 256
    layers: int = 2
    learn_pb: bool = False
    heads: int = 4
    """Attention heads (graph transformer only; `hidden` must be a multiple of it)."""
    stop_gate: bool = False
    """Graph transformer only: read the stop logit as a stop-or-continue gate
    (`gflow.policies.graph_transformer.GraphTransformerPolicy`)."""
    factored_head: bool = False
    """Graph transformer only, on an environment with `fine_actions` (fragments): score the
    coarse actions, then the fine choice of the one taken (`gflow.factored`)."""

    def __post_init__(self) -> None:
        check_at_least(self, {"hidden": 1, "layers": 1, "heads": 1})

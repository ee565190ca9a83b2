"""The MOGFN evaluation protocol (Jain et al. 2023): sample a preference-conditioned sampler on a
fixed simplex grid of preferences at one inverse temperature (by default the largest trained
beta), then score what it drew: top-K reward and top-K diversity per preference, and the
hypervolume (reference point 0) and R2 indicator of the Pareto front of all the samples.

It works with any environment wrapped in `gflow.conditioning.ConditionalEnv` and any policy
`gflow.sampling.sample_forward` accepts (MLP over tensors, graph transformer over graphs); the
caller says how a terminal state becomes an item for the diversity distance (a string for
Levenshtein, a SMILES or RDKit Mol for Tanimoto, anything for a distance function).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gflow.conditioning import ConditionalEnv, Conditioning, log_scalarize, simplex_grid
from gflow.env import States
from gflow.metrics import (
    hypervolume,
    igd_plus,
    pareto_front,
    r2_indicator,
    top_k_diversity,
    top_k_reward,
)
from gflow.metrics.diversity import Distance
from gflow.policies.base import Policy
from gflow.sampling import sample_forward

Describe = Callable[[States], Sequence[Any]]
"""Terminal states -> one item per state for the diversity distance (strings, SMILES, ...)."""


@dataclass(frozen=True)
class EvalConfig:
    """The protocol's settings (MOGFN: 128 samples per preference, top-10)."""

    n_per_side: int = 5
    """Grid points along an edge of the preference simplex (5 gives 35 preferences for 4
    objectives, 5 for 2)."""
    samples: int = 128
    """Samples drawn per preference."""
    k: int = 10
    """Top-K for reward and diversity, per preference."""
    beta: float | None = None
    """Inverse temperature to sample at; None: the conditioning's beta_max."""
    batch_size: int = 1024
    """Trajectories sampled at once."""

    def __post_init__(self) -> None:
        if self.n_per_side < 2:
            raise ValueError(f"n_per_side must be >= 2, got {self.n_per_side}")
        if not 2 <= self.k <= self.samples:
            raise ValueError(f"need 2 <= k <= samples, got k={self.k}, samples={self.samples}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.beta is not None and not 0 <= self.beta < float("inf"):
            raise ValueError(f"beta must be finite and >= 0, got {self.beta}")


@dataclass
class GridSamples:
    """What a conditioned sampler drew on the preference grid."""

    preferences: torch.Tensor
    """(P, m) preference vectors."""
    objectives: torch.Tensor
    """(P, N, m) objective vectors of the N samples of each preference (CPU)."""
    items: list[list[Any]]
    """P lists of N items (as `describe` made them), in sampling order."""
    beta: float
    """The inverse temperature sampled at."""
    seconds: float
    """Wall-clock time of sampling and scoring."""

    @property
    def trajectories_per_second(self) -> float:
        """Sampling throughput, objective evaluation included."""
        return self.objectives.shape[0] * self.objectives.shape[1] / max(self.seconds, 1e-12)


def sample_grid(
    env: ConditionalEnv, policy: Policy, config: EvalConfig, describe: Describe
) -> GridSamples:
    """Draw `config.samples` objects per grid preference at `config.beta` and score them."""
    cond = env.conditioning
    m = cond.n_reward_components
    if m < 2:
        raise ValueError(f"the MOGFN evaluation needs >= 2 objectives, the env has {m}")
    beta = cond.beta_max if config.beta is None else config.beta
    prefs = simplex_grid(m, config.n_per_side).to(cond.device)
    rows = cond.condition(prefs.repeat_interleave(config.samples, 0), beta)
    start = time.perf_counter()
    objectives: list[torch.Tensor] = []
    items: list[Any] = []
    for chunk in rows.split(config.batch_size):
        rollout = sample_forward(env, policy, len(chunk), chunk)
        objectives.append(env.reward_components(rollout.terminal).detach().cpu())
        items.extend(describe(rollout.terminal))
    n = config.samples
    return GridSamples(
        preferences=prefs.cpu(),
        objectives=torch.cat(objectives).view(len(prefs), n, m),
        items=[items[i : i + n] for i in range(0, len(items), n)],
        beta=float(beta),
        seconds=time.perf_counter() - start,
    )


def mogfn_metrics(
    preferences: torch.Tensor,
    objectives: torch.Tensor,
    items: Sequence[Sequence[Any]],
    k: int,
    distance: Distance,
    conditioning: Conditioning,
    true_front: Any = None,
) -> dict[str, Any]:
    """Score samples drawn per preference: (P, m) preferences, (P, N, m) objectives in [0, 1]
    (larger is better), P lists of N items.

    - top-K reward of a preference: the mean of the K largest S(r(x), w), the conditioning's
      scalarization without the beta exponent; top-K diversity: the mean pairwise `distance`
      among those K items; both averaged over preferences;
    - hypervolume of the Pareto front of all P * N objective vectors, reference point 0;
    - R2 over the grid preferences as weights, utopian point the conditioning's (default 1);
    - with `true_front` (the exact Pareto front), its hypervolume, the ratio, and IGD+.
    """
    shapes_agree = objectives.dim() == 3 and objectives.shape[::2] == preferences.shape
    if preferences.dim() != 2 or not shapes_agree:
        raise ValueError(
            f"objectives must be (P, N, m) for preferences (P, m), got {tuple(objectives.shape)} "
            f"and {tuple(preferences.shape)}"
        )
    n_prefs, n, m = objectives.shape
    if len(items) != n_prefs or any(len(row) != n for row in items):
        raise ValueError(f"items must be {n_prefs} lists of {n} items, one per sample")
    flat = objectives.reshape(-1, m).to(torch.get_default_dtype())
    rows = preferences.to(flat).repeat_interleave(n, 0)
    scal = log_scalarize(
        flat, rows, conditioning.scalarization, conditioning.utopia, conditioning.floor
    )
    rewards = scal.exp().view(n_prefs, n).cpu().numpy()
    points = flat.cpu().numpy()
    top_rewards = np.atleast_1d(top_k_reward(rewards, k))
    diversity = [
        top_k_diversity(list(row), k, distance, rewards=r)
        for row, r in zip(items, rewards, strict=True)
    ]
    best = rewards.argmax(axis=1)
    per_objective = objectives.cpu().numpy()
    table = [
        {
            "preference": preferences[p].tolist(),
            "top_k_reward": float(top_rewards[p]),
            "top_k_diversity": diversity[p],
            "mean_reward": float(rewards[p].mean()),
            "mean_objectives": per_objective[p].mean(axis=0).tolist(),
            "best_objectives": per_objective[p, best[p]].tolist(),
            "best_item": _show(items[p][best[p]]),
            "distinct": len({_show(x) for x in items[p]}),
        }
        for p in range(n_prefs)
    ]
    front = pareto_front(points)
    utopian = np.ones(m) if conditioning.utopia is None else conditioning.utopia.cpu().numpy()
    result = {
        "hypervolume": hypervolume(points, np.zeros(m)),
        "r2": r2_indicator(points, preferences.cpu().numpy(), utopian),
        "top_k_reward": float(top_rewards.mean()),
        "top_k_diversity": float(np.mean(diversity)),
        "mean_reward": float(rewards.mean()),
        "k": k,
        "n_preferences": n_prefs,
        "samples_per_preference": n,
        "n_pareto": len(front),
        "pareto_front": front.tolist(),
        "per_preference": table,
    }
    if true_front is not None:
        true_hv = hypervolume(true_front, np.zeros(m))
        result |= {
            "true_hypervolume": true_hv,
            "hypervolume_ratio": result["hypervolume"] / true_hv if true_hv > 0 else None,
            "igd_plus": igd_plus(points, true_front),
        }
    return result


def evaluate_mogfn(
    env: ConditionalEnv,
    policy: Policy,
    config: EvalConfig,
    describe: Describe,
    distance: Distance,
    true_front: Any = None,
) -> tuple[dict[str, Any], GridSamples]:
    """The whole protocol: sample the grid, score it; the metrics (with the sampling speed and
    beta) and the samples themselves (for plots and object grids)."""
    samples = sample_grid(env, policy, config, describe)
    metrics = mogfn_metrics(
        samples.preferences,
        samples.objectives,
        samples.items,
        config.k,
        distance,
        env.conditioning,
        true_front,
    )
    metrics |= {
        "beta": samples.beta,
        "sampling_seconds": samples.seconds,
        "sampling_trajectories_per_second": samples.trajectories_per_second,
    }
    return metrics, samples


def _show(item: Any) -> str | Any:
    """A JSON-friendly form of an item: strings and numbers as they are, others via str()."""
    return item if isinstance(item, str | int | float) else str(item)

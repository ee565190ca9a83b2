"""Reward-free pre-training of an outcome-conditioned GFlowNet (OC-GFN, Pan et al. 2024) in the
training loop of `gflow.training` (its `batch` and `evaluate` parts): same checkpoints, logging
and resume (`gflow.training.start_or_resume`).

Each step draws `batch_size` target outcomes y from the pool and builds a contrastive batch:

- on-policy trajectories conditioned on y (exploration `epsilon`), which may miss;
- positives: trajectories traced backward from y under P_B, conditioned on y, which reach it
  by construction (the paper takes them from an exploratory sampler; a P_B trace is the
  off-policy successful trajectory with the distribution the ideal OC-GFN puts on it);
- swapped: the same positives conditioned on another target of the batch, which (almost
  always) miss it. They teach F(s | y) ~ 0 on states from which y is out of reach, which
  on-policy trajectories of a good sampler never visit and which the fine-tuning marginal
  sum_y R(y) F(s | y) P_F(s' | s, y) reads for every y;
- optionally hindsight: the on-policy trajectories relabelled with the object they reached.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from gflow.exact import state_graph
from gflow.objectives import Objective
from gflow.outcome import OutcomeEnv, explore, relabel, success_rates, terminal_objects
from gflow.policies.base import Policy
from gflow.replay import cat_rollouts
from gflow.sampling import Rollout, sample_backward, sample_forward
from gflow.training import TrainConfig, Trainer


@dataclass(frozen=True)
class PretrainOptions:
    """Which trajectories enter each pre-training batch besides the on-policy ones."""

    positives: bool = True
    """Trajectories traced backward from each target."""
    swapped: bool = True
    """Those positives conditioned on another target of the batch."""
    hindsight: bool = False
    """On-policy trajectories relabelled with the object they reached."""
    explore: int = 0
    """Uniformly random trajectories per step whose objects join the outcome pool (the pool
    starts with max(explore, 4 * batch_size) of them when it is empty)."""

    def __post_init__(self) -> None:
        if self.explore < 0:
            raise ValueError(f"explore must be >= 0, got {self.explore}")
        if self.swapped and not self.positives:
            raise ValueError("swapped negatives are made from positives: enable positives")


EVAL_OUTCOMES = 256
"""Exact evaluation covers every outcome up to this many, else a fixed random subset of them."""


class PretrainTrainer(Trainer):
    """The training loop with outcome-conditioned contrastive batches; exact evaluation reports
    the mean and worst probability of reaching each outcome (enumerable environments)."""

    env: OutcomeEnv

    def __init__(
        self,
        env: OutcomeEnv,
        policy: Policy,
        objective: Objective,
        config: TrainConfig,
        options: PretrainOptions | None = None,
        env_info: dict[str, Any] | None = None,
    ):
        if not isinstance(env, OutcomeEnv):
            raise ValueError("pre-training needs an OutcomeEnv (see gflow.outcome.outcome_env)")
        if config.replay_capacity:
            raise ValueError("pre-training draws targets from the outcome pool: set replay off")
        self.options = options or PretrainOptions()
        objective = replace(objective, options=objective.options | asdict(self.options))
        super().__init__(env, policy, objective, config, env_info)
        self.eval_outcomes = None
        if env.is_enumerable():
            self.graph = state_graph(env)
            outcomes = terminal_objects(env)
            n = env.size(outcomes)
            if n > EVAL_OUTCOMES:
                pick = torch.randperm(n, generator=torch.Generator().manual_seed(0))
                outcomes = env.select(outcomes, pick[:EVAL_OUTCOMES].to(env.device))
            self.eval_outcomes = outcomes

    def batch(self) -> Rollout:
        """On-policy trajectories toward drawn targets, with positives, swapped and hindsight
        trajectories as the options say."""
        cfg, env, opt = self.config, self.env, self.options
        pool = env.conditioning
        if not len(pool.pool):
            explore(env, max(opt.explore, 4 * cfg.batch_size))
        elif opt.explore:
            explore(env, opt.explore)
        targets = pool.sample_outcomes(cfg.batch_size)
        codes = pool.encode(targets)
        online = sample_forward(env, self.policy, len(codes), codes, cfg.temperature, cfg.epsilon)
        parts = [online]
        if opt.positives:
            positives = sample_backward(env, self.policy, targets, codes)
            parts.append(positives)
            if opt.swapped:
                other = codes.roll(1, dims=0)
                parts.append(
                    replace(positives, cond=other, log_reward=env.log_reward(targets, other))
                )
        if opt.hindsight:
            parts.append(relabel(env, online))
            pool.add(online.terminal)
        return cat_rollouts(env, parts)

    def evaluate(self) -> dict[str, float] | None:
        """Exact probability of reaching each outcome: mean and minimum over the objects (all of
        them, or `EVAL_OUTCOMES` of them); None where the environment cannot be enumerated."""
        if self.eval_outcomes is None or self.graph is None:
            return None
        return success_summary(success_rates(self.graph, self.env, self.policy, self.eval_outcomes))

    def state_dict(self) -> dict[str, Any]:
        """The training loop's checkpoint plus the outcome pool."""
        return super().state_dict() | {"outcome_pool": self.env.conditioning.pool.state_dict()}

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        """Continue a run, outcome pool included."""
        super().load_state_dict(state, source)
        self.env.conditioning.pool.load_state_dict(state["outcome_pool"])


def success_summary(rates: torch.Tensor) -> dict[str, float]:
    """Mean and minimum of per-outcome success probabilities."""
    return {"exact_success": float(rates.mean()), "exact_success_min": float(rates.min())}

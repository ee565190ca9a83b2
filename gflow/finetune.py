"""Fine-tuning a pre-trained outcome-conditioned GFlowNet on a new reward R(x) (OC-GFN, Pan et
al. 2024).

A trained OC-GFN defines, for any reward R over outcomes, the marginal policy

    P(s' | s) = N(s' | s) / sum_s'' N(s'' | s),   N(s' | s) = sum_y R(y) F(s | y) P_F(s' | s, y),

whose terminal distribution is R/Z (the stop action is the edge into the sink). The sum runs
over every outcome; `marginal_logits` computes it exactly over a given outcome set (the paper's
conversion without training, feasible for small sets). The amortized predictor learns it
instead, as in the paper: a network N(s' | s) (the forward logits of an ordinary unconditional
policy, read as log edge flows) and an outcome posterior Q(y | s, s') trained jointly on

    ( log N(s' | s) + log Q(y | s, s') - log R(y) - log F(s | y) - log P_F(s' | s, y) )^2

for states s visited by the policy N defines and outcomes y drawn from a tempered,
epsilon-mixed Q; at zero loss for every (s, s', y), summing over y gives N exactly.

Choices where the paper leaves room, each tested:
- Every legal action s -> s' of every visited state is trained, not only the action taken: a
  taken-action-only loss leaves an underestimated action seldom taken and never corrected (on
  bit sequences it stalled at exact TV 0.9 after 300 steps; with all actions, 0.095).
- The stop edge at s is paired with y = s alone, log Q = 0: under outcome-conditioned flows it
  carries flow only toward the outcome s (others contribute at most the reward floor).
- Q is a categorical distribution over a finite candidate set of outcomes (every object of an
  enumerable environment, or the pre-training's outcome pool): a state-action tower and an
  outcome tower meeting in one hidden layer. `samples=0` skips Q and regresses log N on the
  exact sum over the candidates, for sets small enough to sum.
- F(s0 | y) is the pre-trained log Z(y) (the flow head is never trained at s0).
- After `distill_steps` the policy is fine-tuned on R with an ordinary objective (TB by
  default), its log Z first set to log sum_a N(a | s0), the marginal's own partition function,
  so that fine-tuning starts from the distilled sampler. The sampler's network starts from the
  pre-trained one (outcome inputs dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from gflow.env import Env, States
from gflow.exact import StateGraph, terminal_distribution
from gflow.factored import dense_only
from gflow.objectives import Objective
from gflow.policies.base import Policy, PolicyOutput
from gflow.policies.mlp import mlp
from gflow.policies.registry import build_policy, policy_spec
from gflow.run_config import ModelConfig, TrainConfig
from gflow.sampling import Rollout, masked_log_softmax, terminal_log_reward
from gflow.training import Trainer


@torch.no_grad()
def outcome_terms(
    env: Env, pretrained: Policy, states: States, codes: torch.Tensor
) -> torch.Tensor:
    """(n, n_actions) log F(s | y) + log P_F(a | s, y) of a pre-trained OC-GFN, row i at state i
    and outcome code i; -inf at illegal actions. F(s0 | y) is log Z(y)."""
    out = pretrained(env.featurize(states), codes)
    mask = env.forward_mask(states)
    log_z = pretrained.log_z(codes, len(codes))
    log_flow = torch.where(env.is_initial(states), log_z, out.log_flow)
    logits = dense_only(out.forward_logits, "OC-GFN fine-tuning")
    log_pf = masked_log_softmax(logits, mask).masked_fill(~mask, float("-inf"))
    return log_flow[:, None] + log_pf


@torch.no_grad()
def marginal_logits(
    env: Env,
    pretrained: Policy,
    states: States,
    codes: torch.Tensor,
    log_reward: torch.Tensor,
    chunk: int = 4096,
) -> torch.Tensor:
    """(n, n_actions) log N(a | s) = log sum_y R(y) F(s | y) P_F(a | s, y) over the outcomes whose
    codes (m, d) and log rewards (m,) are given: the exact conversion of an OC-GFN to reward R."""
    n, m = env.size(states), len(codes)
    if log_reward.shape != (m,):
        raise ValueError(f"{m} outcome codes need {m} log rewards, got {tuple(log_reward.shape)}")
    per_chunk = max(1, chunk // max(n, 1))
    total = torch.full((n, env.n_actions), float("-inf"), device=codes.device)
    for start in range(0, m, per_chunk):
        idx = torch.arange(start, min(start + per_chunk, m), device=codes.device)
        rows = torch.arange(n, device=codes.device).repeat(len(idx))
        pairs = idx.repeat_interleave(n)
        terms = outcome_terms(env, pretrained, env.select(states, rows), codes[pairs])
        terms = (terms + log_reward[pairs, None]).view(len(idx), n, -1)
        total = torch.logaddexp(total.to(terms), terms.logsumexp(0))
    return total


class _Table(Policy):
    """Fixed logits for the states of one enumerated graph, in its order (for exact DP only)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, features: torch.Tensor, cond: torch.Tensor | None = None) -> PolicyOutput:
        if len(features) != len(self.logits):
            raise ValueError("a table policy answers only for the graph it was built on")
        flow = self.logits.new_zeros(len(features))
        return PolicyOutput(self.logits.nan_to_num(neginf=-1e30), None, flow)


@torch.no_grad()
def conversion_distribution(
    graph: StateGraph,
    env: Env,
    pretrained: Policy,
    codes: torch.Tensor,
    log_reward: torch.Tensor,
) -> torch.Tensor:
    """P_T(x) of the exact marginal policy (no training) on an enumerated environment."""
    logits = marginal_logits(env, pretrained, graph.states, codes, log_reward)
    return terminal_distribution(graph, env, _Table(logits))


class OutcomePosterior(nn.Module):
    """Q(y | s, a): a categorical distribution over candidate outcomes. A state-action tower and
    an outcome tower meet in one hidden layer, so scoring n transitions against m candidates
    costs O(n m hidden) rather than m passes of a full network."""

    def __init__(
        self, feature_dim: int, n_actions: int, code_dim: int, hidden: int = 64, layers: int = 2
    ):
        super().__init__()
        self.n_actions = n_actions
        self.transition = mlp([feature_dim + n_actions] + [hidden] * layers)
        self.outcome = mlp([code_dim] + [hidden] * layers)
        self.score = nn.Sequential(nn.LeakyReLU(), nn.Linear(hidden, 1))

    def forward(
        self, features: torch.Tensor, actions: torch.Tensor, codes: torch.Tensor
    ) -> torch.Tensor:
        """(n, m) logits of the m candidate outcomes for each of the n transitions."""
        action = nn.functional.one_hot(actions, self.n_actions).to(features)
        left = self.transition(torch.cat([features, action], dim=1))
        right = self.outcome(codes.to(features))
        return self.score(left[:, None, :] + right[None, :, :]).squeeze(-1)


class MarginalModel(Policy):
    """The fine-tuned sampler: an unconditional policy whose forward logits are log N(a | s),
    with the outcome posterior Q it trains with and the frozen pre-trained OC-GFN."""

    def __init__(self, sampler: Policy, posterior: OutcomePosterior, pretrained: Policy):
        super().__init__()
        if getattr(sampler, "cond_dim", 0):
            raise ValueError("the fine-tuned sampler must be unconditional (cond_dim 0)")
        self.sampler, self.posterior, self.pretrained = sampler, posterior, pretrained
        self.pretrained.requires_grad_(False)

    def forward(self, features: torch.Tensor, cond: torch.Tensor | None = None) -> PolicyOutput:
        return self.sampler(features, cond)

    def forward_logits(
        self, features: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log N(a | s) alone."""
        return dense_only(self.sampler.forward_logits(features, cond), "OC-GFN fine-tuning")

    def log_z(self, cond: torch.Tensor | None, n: int) -> torch.Tensor:
        return self.sampler.log_z(cond, n)

    def log_z_parameters(self) -> list[nn.Parameter]:
        """The sampler's log Z."""
        return self.sampler.log_z_parameters()


def amortized_loss(
    env: Env,
    model: MarginalModel,
    rollout: Rollout,
    encode: Callable[[States], torch.Tensor],
    codes: torch.Tensor,
    log_reward: torch.Tensor,
    samples: int = 4,
    temperature: float = 1.0,
    epsilon: float = 0.1,
) -> torch.Tensor:
    """The joint N, Q loss at every legal action of every state the rollout visited, averaged
    over (state, action, y) pairs.

    A move gets `samples` outcomes y drawn from Q (tempered, epsilon-mixed with uniform) among
    the candidates (codes, log rewards). The stop action at s uses y = s alone with log Q = 0:
    the stop edge at s carries flow only toward the outcome s (other outcomes contribute at
    most the reward floor), so its posterior is known and N(stop | s) ~ R(s). With `samples` 0
    there is no Q: log N is regressed on the exact sum over every candidate (affordable for
    small candidate sets, and unbiased). Every legal action is trained, not only the one the
    sampler took: an action whose flow is underestimated would otherwise seldom be taken and
    never corrected.
    """
    states = rollout.states
    features = env.featurize(states)
    mask = env.forward_mask(states)
    row, action = mask.nonzero(as_tuple=True)
    log_n = dense_only(model.sampler.forward_logits(features), "OC-GFN fine-tuning")[row, action]
    if samples == 0:
        exact = marginal_logits(env, model.pretrained, states, codes, log_reward)
        return (log_n - exact[row, action]).pow(2).mean()
    stop = (action == env.stop).nonzero().squeeze(1)
    moves = (action != env.stop).nonzero().squeeze(1)
    log_q = model.posterior(features[row[moves]], action[moves], codes).log_softmax(dim=1)
    with torch.no_grad():
        proposal = (log_q / temperature).softmax(dim=1) * (1 - epsilon) + epsilon / len(codes)
        picks = torch.multinomial(proposal, samples, replacement=True).flatten()
    pairs = moves.repeat_interleave(samples)
    objects = env.select(states, row[stop])
    pair_states = env.cat([env.select(states, row[pairs]), objects])
    pair_codes = torch.cat([codes[picks], encode(objects).to(codes)])
    pair_actions = torch.cat([action[pairs], action[stop]])
    terms = outcome_terms(env, model.pretrained, pair_states, pair_codes)
    picked = terms.gather(1, pair_actions[:, None]).squeeze(1)
    target = picked + torch.cat([log_reward[picks], env.log_reward(objects).to(picked)])
    chosen = log_q[torch.arange(len(moves), device=picks.device).repeat_interleave(samples), picks]
    log_density = torch.cat([log_n[pairs] + chosen, log_n[stop]])
    return (log_density - target).pow(2).mean()


@dataclass(frozen=True)
class FinetuneOptions:
    """How the amortized predictor trains before the ordinary objective takes over."""

    distill_steps: int = 500
    """Steps of the amortized loss; the ordinary objective trains after them."""
    samples: int = 4
    """Outcomes drawn from Q per transition; 0 sums over every candidate exactly instead."""
    q_temperature: float = 1.0
    q_epsilon: float = 0.1
    q_hidden: int = 64

    def __post_init__(self) -> None:
        if self.distill_steps < 0 or self.samples < 0 or self.q_hidden < 1:
            raise ValueError(
                f"need distill_steps >= 0, samples >= 0, q_hidden >= 1, got {self}"
            )
        if not self.q_temperature > 0 or not 0 <= self.q_epsilon <= 1:
            raise ValueError(
                f"need q_temperature > 0 and q_epsilon in [0, 1], got {self.q_temperature}, "
                f"{self.q_epsilon}"
            )


def build_model(
    env: Env,
    pretrained: Policy,
    options: FinetuneOptions,
    model: ModelConfig | None = None,
    device: torch.device | str = "cpu",
) -> MarginalModel:
    """A fresh unconditional sampler of the pre-trained policy's class (built by
    `gflow.policies.registry`; `model` changes its size), its weights initialized from the
    pre-trained network (the outcome-code input columns dropped), with a fresh outcome
    posterior."""
    if pretrained.spec is None:
        raise ValueError("the pre-trained policy records no spec: build it with build_policy")
    spec = pretrained.spec
    sizes = {} if model is None else policy_spec(env, model).options
    unconditional = spec.options | sizes | {"cond_dim": 0}
    sampler = build_policy(env, replace(spec, options=unconditional), device)
    _transfer(pretrained, sampler)
    posterior = OutcomePosterior(
        env.feature_dim, env.n_actions, spec.options["cond_dim"], options.q_hidden
    ).to(device)
    return MarginalModel(sampler, posterior, pretrained)


def _transfer(pretrained: Policy, sampler: Policy) -> None:
    """Copy every weight of matching shape except log Z's; an input layer that also read the
    outcome code (the code's columns come last) keeps its leading, state-input columns."""
    source = pretrained.state_dict()
    target = sampler.state_dict()
    for name, value in target.items():
        if name not in source or "log_z" in name:
            continue
        have = source[name]
        if have.shape == value.shape:
            value.copy_(have)
        elif value.dim() == have.dim() == 2 and have.shape[0] == value.shape[0]:
            value.copy_(have[:, : value.shape[1]])
    sampler.load_state_dict(target)


class FinetuneTrainer(Trainer):
    """The training loop with the amortized loss for the first `distill_steps`, then the
    ordinary objective; Q ranges over the candidate outcomes, encoded by `encode` (the
    pre-training's outcome encoder)."""

    policy: MarginalModel

    def __init__(
        self,
        env: Env,
        model: MarginalModel,
        objective: Objective,
        config: TrainConfig,
        options: FinetuneOptions,
        encode: Callable[[States], torch.Tensor],
        candidates: States,
        env_info: dict[str, Any] | None = None,
    ):
        objective = replace(objective, options=objective.options | asdict(options))
        super().__init__(env, model, objective, config, env_info)
        self.options, self.encode = options, encode
        self.codes = encode(candidates).to(torch.get_default_dtype())
        self.candidate_log_reward = terminal_log_reward(env, candidates, None).float()

    def loss(self, batch: Rollout) -> torch.Tensor:
        """The amortized loss while distilling, the ordinary objective's afterwards (log Z first
        set to the distilled marginal's at the switch)."""
        opt = self.options
        if self.step >= opt.distill_steps:
            if self.step == opt.distill_steps:
                self._start_objective()
            return super().loss(batch)
        return amortized_loss(
            self.env,
            self.policy,
            batch,
            self.encode,
            self.codes,
            self.candidate_log_reward,
            opt.samples,
            opt.q_temperature,
            opt.q_epsilon,
        )

    def metrics(self) -> dict[str, Any]:
        """The run's summary; `policy` is the fine-tuned sampler's spec."""
        spec = self.policy.sampler.spec
        return super().metrics() | {"policy": None if spec is None else spec.record()}

    @torch.no_grad()
    def _start_objective(self) -> None:
        """Set log Z to the distilled marginal's: log sum_a N(a | s0)."""
        s0 = self.env.initial(1)
        logits = self.policy.forward_logits(self.env.featurize(s0))
        log_z = logits.masked_fill(~self.env.forward_mask(s0), float("-inf")).logsumexp(1)
        for param in self.policy.log_z_parameters():
            param.fill_(float(log_z[0]))

"""Outcome conditioning (OC-GFN, Pan, Jain, Madan and Bengio, ICLR 2024): a terminal object y is
the condition, encoded into the rows the policy and log Z read, and the sparse reward is
R(x | y) = 1 when x matches y, else a floor (so log R stays finite).

Matching is decided from the object x and y's encoding: by default the encodings must be equal.
An outcome-conditioned policy can only tell outcomes apart through their encodings, so the
encoding must be one-to-one on terminal objects; equal encodings then mean equal objects, and
`check_encoding` verifies this with `env.keys` on enumerable environments. A relaxed notion of
reaching y (say, within a Hamming radius) is a custom ``match(states, codes) -> bool``.

Targets are drawn from a pool of outcomes: every terminal object of an enumerable environment,
or objects reached so far (by uniform exploration at the start, then by the policy itself, as
hindsight relabelling adds them). The pool keeps a uniformly random subset of the distinct
objects it was offered (reservoir sampling through random replay priorities).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch

from gflow.conditioning import ConditionalEnv
from gflow.env import Env, States
from gflow.exact import StateGraph, terminal_distribution
from gflow.policies.base import Policy
from gflow.replay import ReplayBuffer
from gflow.sampling import Rollout, sample_forward

Encoder = Callable[[States], torch.Tensor]
Match = Callable[[States, torch.Tensor], torch.Tensor]
LOG_FLOOR = -10.0
"""Default log R(x | y) of an object x that misses its outcome y."""


class OutcomeConditioning:
    """Outcomes as conditioning: their encodings, the match test, the sparse reward, and the pool
    of outcomes that targets are drawn from.

    `encode` maps objects to (n, cond_dim) float rows (default `env.featurize`); `match(states,
    codes)` says which objects reach the outcomes encoded by `codes` (default: equal encodings);
    `log_floor` is log R(x | y) for a miss; `capacity` bounds the pool.
    """

    n_reward_components = 0
    """Outcome conditioning carries no objective weights (read by `ConditionalEnv`)."""

    def __init__(
        self,
        env: Env,
        encode: Encoder | None = None,
        match: Match | None = None,
        log_floor: float = LOG_FLOOR,
        capacity: int = 10_000,
    ):
        if not -math.inf < log_floor < 0:
            raise ValueError(
                f"log_floor must be finite and < 0 (a miss scores below a hit), got {log_floor}"
            )
        self.env, self.log_floor = env, float(log_floor)
        self._encode = encode or env.featurize
        self._match = match
        code = self._encode(env.initial(1))
        if code.dim() != 2 or len(code) != 1:
            raise ValueError(f"an outcome encoder must return (n, d) rows, got {tuple(code.shape)}")
        self.cond_dim = code.shape[1]
        """Width of the encoded rows."""
        self.pool = ReplayBuffer(env, capacity)

    def encode(self, outcomes: States) -> torch.Tensor:
        """(n, cond_dim) float rows encoding the outcomes, for the policy and log Z."""
        return self._encode(outcomes).to(torch.get_default_dtype())

    def matches(self, states: States, codes: torch.Tensor) -> torch.Tensor:
        """(n,) bool: object i reaches the outcome encoded by row i of `codes`."""
        n = self.env.size(states)
        if codes.dim() != 2 or codes.shape != (n, self.cond_dim):
            raise ValueError(
                f"outcome codes must be ({n}, {self.cond_dim}), got {tuple(codes.shape)}"
            )
        if self._match is not None:
            hit = self._match(states, codes)
            if hit.shape != (n,) or hit.dtype != torch.bool:
                raise ValueError(f"match must return ({n},) bools, got {hit.dtype} {hit.shape}")
            return hit
        return (self.encode(states) == codes.to(torch.get_default_dtype())).all(dim=1)

    def log_reward(self, states: States, codes: torch.Tensor) -> torch.Tensor:
        """(n,) log R(x | y): 0 where x matches y, `log_floor` elsewhere."""
        hit = self.matches(states, codes)
        return torch.where(hit, 0.0, self.log_floor).to(torch.get_default_dtype())

    def add(self, outcomes: States) -> None:
        """Offer outcomes to the pool (a uniform random subset of distinct ones stays)."""
        n = self.env.size(outcomes)
        if n:
            self.pool.add(outcomes, torch.rand(n, device=self.env.device))

    def sample_outcomes(self, n: int) -> States:
        """`n` outcomes drawn uniformly (with replacement) from the pool."""
        if not len(self.pool):
            raise ValueError("the outcome pool is empty: add outcomes, enumerate or explore first")
        return self.pool.sample(n)[0]

    def sample(self, n: int) -> torch.Tensor:
        """(n, cond_dim) codes of outcomes drawn from the pool (what a trainer conditions on)."""
        return self.encode(self.sample_outcomes(n))


def terminal_objects(env: Env) -> States:
    """Every object of an enumerable environment: the states where stop is legal."""
    states = env.enumerate_states()
    return env.select(states, env.forward_mask(states)[:, env.stop])


def check_encoding(env: Env, conditioning: OutcomeConditioning, outcomes: States) -> None:
    """Raise unless distinct objects (by `env.keys`) have distinct encodings."""
    seen: dict[bytes, object] = {}
    codes = conditioning.encode(outcomes).cpu().numpy()
    for key, code in zip(env.keys(outcomes), codes, strict=True):
        other = seen.setdefault(code.tobytes(), key)
        if other != key:
            raise ValueError(
                f"outcome encoding is not one-to-one: objects {other!r} and {key!r} share a code; "
                "an outcome-conditioned policy cannot tell them apart"
            )


class OutcomeEnv(ConditionalEnv):
    """An environment whose reward is the sparse outcome reward R(x | y) read from conditioning
    rows (y's encoding); the wrapped environment's own reward is never evaluated. Built with
    an `OutcomeConditioning` (see `outcome_env`)."""

    MISSING_ROWS = "the outcome reward needs outcome codes, or one fixed with at()"

    # OutcomeConditioning is not a Conditioning: ConditionalEnv reads only its n_objectives and
    # cond_dim (duck-typed), and this class narrows the property to what it really holds.
    @property
    def conditioning(self) -> OutcomeConditioning:  # type: ignore[override]
        """The outcome conditioning: codes, the match test and the pool of outcomes."""
        return self._conditioning  # type: ignore[return-value]

    def at(self, cond: torch.Tensor) -> OutcomeEnv:
        """This environment with one outcome's code (1, cond_dim) fixed for every state."""
        fixed = super().at(cond).fixed
        return OutcomeEnv(self.env, self.conditioning, fixed)  # type: ignore[arg-type]

    def log_reward(self, states: States, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(n,) log R(x | y) with one outcome code per state (or the fixed one)."""
        return self.conditioning.log_reward(states, self.condition_rows(states, cond))


def outcome_env(
    env: Env,
    encode: Encoder | None = None,
    match: Match | None = None,
    log_floor: float = LOG_FLOOR,
    capacity: int = 10_000,
    enumerate_outcomes: bool = False,
) -> OutcomeEnv:
    """`env` with the outcome reward; with `enumerate_outcomes`, the pool holds every object of
    the (enumerable) environment and the encoding is checked to be one-to-one."""
    if enumerate_outcomes:
        outcomes = terminal_objects(env)
        capacity = max(capacity, env.size(outcomes))
    conditioning = OutcomeConditioning(env, encode, match, log_floor, capacity)
    if enumerate_outcomes:
        check_encoding(env, conditioning, outcomes)
        conditioning.add(outcomes)
    return OutcomeEnv(env, conditioning)  # type: ignore[arg-type]  # duck-typed, see OutcomeEnv


@torch.no_grad()
def explore(env: OutcomeEnv, n: int) -> None:
    """Add the objects of `n` uniformly random trajectories to the outcome pool. (The rollout
    conditions on the code of s0 only because the outcome reward needs some code.)"""
    codes = env.conditioning.encode(env.initial(n))
    rollout = sample_forward(env, _Uniform(env.n_actions), n, codes, epsilon=1.0)
    env.conditioning.add(rollout.terminal)


class _Uniform(Policy):
    """Equal logits for every action: the uniform forward policy."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.n_actions = n_actions

    def forward_logits(
        self, features: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        return features.new_zeros(len(features), self.n_actions)


def relabel(env: OutcomeEnv, rollout: Rollout) -> Rollout:
    """Hindsight relabelling: each complete trajectory conditioned on the object it reached."""
    if not bool(rollout.done.all()):
        raise ValueError("hindsight relabelling needs complete trajectories")
    codes = env.conditioning.encode(rollout.terminal)
    return replace(rollout, cond=codes, log_reward=env.log_reward(rollout.terminal, codes))


@torch.no_grad()
def success_rates(
    graph: StateGraph, env: OutcomeEnv, policy: Policy, outcomes: States
) -> torch.Tensor:
    """(n,) exact probability that the policy conditioned on each outcome ends at an object that
    matches it, by dynamic programming over the enumerated state graph."""
    conditioning = env.conditioning
    objects = graph.forward_mask[:, env.stop].nonzero().squeeze(1)
    candidates = env.select(graph.states, objects)
    codes = conditioning.encode(outcomes)
    rates = []
    for code in codes:
        code = code[None]
        reached = terminal_distribution(graph, env, policy, code)[objects]
        hit = conditioning.matches(candidates, code.expand(len(objects), -1))
        rates.append(reached[hit].sum())
    return torch.stack(rates).float() if rates else codes.new_zeros(0)

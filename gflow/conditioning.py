"""Conditioning as data (MOGFN-PC, Jain et al. 2023): temperatures and preference vectors are
sampled as tensors, encoded into the rows the policy and log Z read, and decoded again by the
reward transform, so one policy serves plain, temperature- and preference-conditioned sampling.

Every encoded row starts with a header ``[beta / beta_max, w_1 .. w_k]`` (the raw values, which
the reward transform reads back), followed by the chosen features of beta (thermometer or
Fourier) and of w (Fourier). Rewards are ``R(x | w, beta) = S(r(x), w) ** beta`` for a reward
vector ``r(x)`` in [0, 1]^k and a scalarization S, computed in log space with a floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gflow.env import Env, EnvWrapper, States
from gflow.simplex import simplex_lattice

TEMPERATURE_KINDS = ("constant", "uniform", "loguniform", "gamma")
SCALARIZATIONS = ("weighted_sum", "log_convex", "tchebycheff")
BETA_ENCODINGS = ("raw", "thermometer", "fourier")
PREFERENCE_ENCODINGS = ("raw", "fourier")
_SIMPLEX_TOL = 1e-4


@dataclass(frozen=True)
class TemperatureDistribution:
    """Where the inverse temperature beta comes from: ``constant`` (beta,), ``uniform`` (a, b),
    ``loguniform`` (a, b) or ``gamma`` (k, theta) with shape k and scale theta (mean k * theta)."""

    kind: str = "constant"
    params: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.kind not in TEMPERATURE_KINDS:
            raise ValueError(
                f"temperature kind must be one of {TEMPERATURE_KINDS}, got {self.kind!r}"
            )
        p = tuple(float(v) for v in self.params)
        object.__setattr__(self, "params", p)
        wanted = 1 if self.kind == "constant" else 2
        if len(p) != wanted or not all(math.isfinite(v) for v in p):
            raise ValueError(f"{self.kind} temperature needs {wanted} finite parameters, got {p}")
        if self.kind == "constant" and p[0] < 0:
            raise ValueError(f"constant beta must be >= 0, got {p[0]}")
        if self.kind == "uniform" and not 0 <= p[0] < p[1]:
            raise ValueError(f"uniform(a, b) temperature needs 0 <= a < b, got {p}")
        if self.kind == "loguniform" and not 0 < p[0] < p[1]:
            raise ValueError(f"loguniform(a, b) temperature needs 0 < a < b, got {p}")
        if self.kind == "gamma" and not (p[0] > 0 and p[1] > 0):
            raise ValueError(f"gamma(k, theta) temperature needs k > 0 and theta > 0, got {p}")

    @property
    def upper(self) -> float | None:
        """The largest beta this distribution draws (None for the unbounded gamma)."""
        return None if self.kind == "gamma" else self.params[-1]

    def sample(self, n: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """(n,) draws of beta from torch's global RNG."""
        p = self.params
        if self.kind == "constant":
            return torch.full((n,), p[0], device=device)
        if self.kind == "gamma":
            shape = torch.tensor(p[0], device=device)
            return torch.distributions.Gamma(shape, 1.0 / p[1]).sample((n,))
        u = torch.rand(n, device=device)
        if self.kind == "uniform":
            return p[0] + (p[1] - p[0]) * u
        return torch.exp(math.log(p[0]) + (math.log(p[1]) - math.log(p[0])) * u)


def sample_preferences(
    n: int, alpha: float | Sequence[float], k: int | None = None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """(n, k) preference vectors w ~ Dirichlet(alpha) (a scalar alpha needs `k`)."""
    if isinstance(alpha, (int, float)):
        if k is None:
            raise ValueError("a scalar Dirichlet alpha needs the number of reward components k")
        alpha = [float(alpha)] * k
    conc = torch.tensor(list(alpha), dtype=torch.get_default_dtype(), device=device)
    if conc.dim() != 1 or len(conc) < 1 or not (conc > 0).all() or not conc.isfinite().all():
        raise ValueError(f"Dirichlet alpha must be positive and finite, got {list(alpha)}")
    return torch.distributions.Dirichlet(conc).sample((n,))


def simplex_grid(k: int, n_per_side: int) -> torch.Tensor:
    """Every preference vector with entries in {0, 1/(n-1), ..., 1} summing to 1, where
    n = `n_per_side` is the number of grid points along an edge of the simplex:
    C(n + k - 2, k - 1) rows (35 for k=4, n=5, the MOGFN evaluation set; 5 for k=2, n=5)."""
    if k < 1 or n_per_side < 2:
        raise ValueError(f"simplex_grid needs k >= 1 and n_per_side >= 2, got {k=} {n_per_side=}")
    return torch.as_tensor(simplex_lattice(k, n_per_side - 1), dtype=torch.get_default_dtype())


def thermometer(x: torch.Tensor, n_bins: int, high: float, low: float = 0.0) -> torch.Tensor:
    """(n,) values -> (n, n_bins): unit j rises linearly from 0 to 1 across bin j of [low, high]."""
    if n_bins < 1 or not high > low:
        raise ValueError(
            f"thermometer needs n_bins >= 1 and high > low, got {n_bins=} {low=} {high=}"
        )
    width = (high - low) / n_bins
    starts = low + width * torch.arange(n_bins, device=x.device, dtype=x.dtype)
    return ((x[:, None] - starts) / width).clamp(0, 1)


def fourier(x: torch.Tensor, n_frequencies: int, high: float = 1.0) -> torch.Tensor:
    """(n, d) values in [0, high] -> (n, 2 * d * n_frequencies): cos and sin of pi * f * x / high
    for f = 1..n_frequencies (f = 1 alone is one-to-one on [0, high])."""
    if n_frequencies < 1 or not high > 0:
        raise ValueError(
            f"fourier needs n_frequencies >= 1 and high > 0, got {n_frequencies=} {high=}"
        )
    freqs = torch.arange(1, n_frequencies + 1, device=x.device, dtype=x.dtype)
    angles = (math.pi / high) * x[..., None] * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1).flatten(1)


def check_rewards(rewards: torch.Tensor, k: int | None = None) -> None:
    """Raise a clear error unless `rewards` is an (n, k) tensor of finite values in [0, 1]."""
    if rewards.dim() != 2 or (k is not None and rewards.shape[1] != k):
        raise ValueError(
            f"reward vectors must have shape (n, {k or 'k'}), got {tuple(rewards.shape)}"
        )
    bad = rewards.isnan().any(1) | (rewards < 0).any(1) | (rewards > 1).any(1)
    if bad.any():
        row = int(bad.nonzero()[0])
        raise ValueError(
            f"reward vectors must lie in [0, 1] with no NaN; row {row} is {rewards[row].tolist()}"
        )


def check_preferences(preferences: torch.Tensor, k: int) -> None:
    """Raise a clear error unless `preferences` is (n, k) with rows on the probability simplex."""
    if preferences.dim() != 2 or preferences.shape[1] != k:
        raise ValueError(f"preferences must have shape (n, {k}), got {tuple(preferences.shape)}")
    off = (preferences < 0).any(1) | ~preferences.isfinite().all(1)
    off |= (preferences.sum(1) - 1).abs() > _SIMPLEX_TOL
    if off.any():
        row = int(off.nonzero()[0])
        raise ValueError(
            f"preferences must be non-negative and sum to 1; "
            f"row {row} is {preferences[row].tolist()}"
        )


def check_beta(beta: torch.Tensor) -> None:
    """Raise a clear error unless every beta is finite and >= 0."""
    bad = ~beta.isfinite() | (beta < 0)
    if bad.any():
        raise ValueError(f"beta must be finite and >= 0, got {float(beta[bad][0])}")


def log_scalarize(
    rewards: torch.Tensor,
    preferences: torch.Tensor,
    method: str = "weighted_sum",
    utopia: torch.Tensor | None = None,
    floor: float = 1e-6,
) -> torch.Tensor:
    """(n,) log S(r, w) of reward vectors r in [0, 1]^k under preferences w, floored at log(floor):

    - ``weighted_sum``: S = sum_i w_i r_i;
    - ``log_convex``: log S = sum_i w_i log r_i (each r_i floored first, so w_i = 0 never meets
      log 0);
    - ``tchebycheff``: S = 1 - max_i w_i |z_i - r_i|, z the utopia point (default all ones). It is
      1 at z and falls with the weighted Chebyshev distance to z, so points *closer* to the
      utopia point get the higher reward. The classical weighted Tchebycheff term
      max_i w_i |r_i - z_i| is a distance to be minimized; used directly as a reward (as a widely
      copied implementation does) it would favour points far from z.
    """
    if method not in SCALARIZATIONS:
        raise ValueError(f"scalarization must be one of {SCALARIZATIONS}, got {method!r}")
    if not 0 < floor <= 1:
        raise ValueError(f"reward floor must be in (0, 1], got {floor}")
    check_rewards(rewards)
    check_preferences(preferences, rewards.shape[1])
    if len(preferences) != len(rewards):
        raise ValueError(f"{len(preferences)} preference rows for {len(rewards)} reward vectors")
    log_floor = math.log(floor)
    if method == "log_convex":
        logs = rewards.clamp(min=floor).log()
        return (preferences * logs).sum(1).clamp(min=log_floor)
    if method == "weighted_sum":
        value = (preferences * rewards).sum(1)
    else:
        z = torch.ones_like(rewards[0]) if utopia is None else utopia.to(rewards)
        value = 1 - (preferences * (z - rewards).abs()).amax(1)
    return value.clamp(min=floor).log()


@dataclass
class ConditionInfo:
    """A batch of raw conditioning values: inverse temperatures and preference vectors."""

    beta: torch.Tensor
    """(n,) inverse temperatures."""
    preferences: torch.Tensor | None
    """(n, k) preference vectors on the simplex, or None without reward components."""


class Conditioning:
    """Samples (w, beta), encodes them as (n, cond_dim) rows for the policy and log Z, and turns
    reward vectors (or plain log rewards) into conditional log rewards, reading (w, beta) back
    from those rows.

    With ``n_reward_components = 0`` it conditions on beta alone: log R(x | beta) = beta * log R(x).
    """

    def __init__(
        self,
        n_reward_components: int = 0,
        temperature: TemperatureDistribution | None = None,
        alpha: float | Sequence[float] = 1.0,
        scalarization: str = "weighted_sum",
        beta_encoding: str = "thermometer",
        beta_bins: int = 32,
        beta_max: float | None = None,
        preference_encoding: str = "raw",
        fourier_frequencies: int = 4,
        utopia: Sequence[float] | None = None,
        floor: float = 1e-6,
        device: str = "cpu",
    ):
        self.temperature = temperature or TemperatureDistribution()
        if n_reward_components < 0:
            raise ValueError(f"n_reward_components must be >= 0, got {n_reward_components}")
        if beta_encoding not in BETA_ENCODINGS:
            raise ValueError(
                f"beta encoding must be one of {BETA_ENCODINGS}, got {beta_encoding!r}"
            )
        if preference_encoding not in PREFERENCE_ENCODINGS:
            raise ValueError(
                f"preference encoding must be one of {PREFERENCE_ENCODINGS}, "
                f"got {preference_encoding!r}"
            )
        if scalarization not in SCALARIZATIONS:
            raise ValueError(
                f"scalarization must be one of {SCALARIZATIONS}, got {scalarization!r}"
            )
        beta_max = self.temperature.upper if beta_max is None else float(beta_max)
        if beta_max is None or not beta_max > 0:
            raise ValueError(
                f"beta_max must be > 0 (gamma temperatures need it given), got {beta_max}"
            )
        if not 0 < floor <= 1:
            raise ValueError(f"reward floor must be in (0, 1], got {floor}")
        self.n_reward_components, self.beta_max, self.floor = n_reward_components, beta_max, floor
        self.scalarization, self.beta_encoding = scalarization, beta_encoding
        self.preference_encoding = preference_encoding
        self.beta_bins, self.fourier_frequencies = beta_bins, fourier_frequencies
        self.device = torch.device(device)
        self.alpha = (
            [float(alpha)] * n_reward_components if isinstance(alpha, (int, float)) else list(alpha)
        )
        k = n_reward_components
        if len(self.alpha) != k or not all(0 < a < math.inf for a in self.alpha):
            raise ValueError(f"alpha must be {k} positive values, got {self.alpha}")
        if beta_bins < 1 or fourier_frequencies < 1:
            raise ValueError(
                f"need beta_bins, fourier_frequencies >= 1, got {beta_bins=} {fourier_frequencies=}"
            )
        self.utopia = None
        if utopia is not None:
            self.utopia = torch.tensor(list(utopia), dtype=torch.get_default_dtype(), device=device)
            if (
                self.utopia.shape != (n_reward_components,)
                or ((self.utopia < 0) | (self.utopia > 1)).any()
            ):
                raise ValueError(
                    f"utopia must be {n_reward_components} values in [0, 1], got {list(utopia)}"
                )
        beta_dims = {"raw": 0, "thermometer": beta_bins, "fourier": 2 * fourier_frequencies}
        pref_dims = (
            2 * n_reward_components * fourier_frequencies if preference_encoding == "fourier" else 0
        )
        self.cond_dim = 1 + n_reward_components + beta_dims[beta_encoding] + pref_dims
        """Width of the encoded rows: the header [beta / beta_max, w] and the features."""

    def sample_info(self, n: int) -> ConditionInfo:
        """n raw draws: beta from the temperature distribution, w ~ Dirichlet(alpha)."""
        beta = self.temperature.sample(n, self.device)
        prefs = None
        if self.n_reward_components:
            prefs = sample_preferences(n, self.alpha, device=self.device)
        return ConditionInfo(beta, prefs)

    def sample(self, n: int) -> torch.Tensor:
        """(n, cond_dim) encoded conditioning drawn at random, ready for `sample_forward`."""
        return self.encode(self.sample_info(n))

    def encode(self, info: ConditionInfo) -> torch.Tensor:
        """(n, cond_dim) rows: header [beta / beta_max, w], then beta and preference features."""
        beta = info.beta.to(torch.get_default_dtype())
        check_beta(beta)
        parts = [beta[:, None] / self.beta_max]
        prefs = info.preferences
        if self.n_reward_components:
            if prefs is None:
                raise ValueError(
                    f"conditioning on {self.n_reward_components} reward components needs "
                    "preferences"
                )
            check_preferences(prefs, self.n_reward_components)
            parts.append(prefs.to(beta))
        if self.beta_encoding == "thermometer":
            parts.append(thermometer(beta, self.beta_bins, self.beta_max))
        elif self.beta_encoding == "fourier":
            parts.append(fourier(beta[:, None], self.fourier_frequencies, self.beta_max))
        if prefs is not None and self.n_reward_components and self.preference_encoding == "fourier":
            parts.append(fourier(prefs.to(beta), self.fourier_frequencies))
        return torch.cat(parts, dim=1)

    def decode(self, cond: torch.Tensor) -> ConditionInfo:
        """The raw (beta, w) that encoded rows carry in their header."""
        if cond.dim() != 2 or cond.shape[1] != self.cond_dim:
            raise ValueError(
                f"conditioning rows must be (n, {self.cond_dim}), got {tuple(cond.shape)}"
            )
        prefs = cond[:, 1 : 1 + self.n_reward_components] if self.n_reward_components else None
        return ConditionInfo(cond[:, 0] * self.beta_max, prefs)

    def condition(
        self,
        preferences: Sequence[float] | torch.Tensor | None = None,
        beta: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encoded rows for given values: w as (k,) or (n, k), beta as a number or (n,) (default
        beta_max, the paper's evaluation temperature); one row unless either gives n."""
        beta_t = torch.as_tensor(self.beta_max if beta is None else beta, device=self.device)
        prefs = None
        if self.n_reward_components:
            if preferences is None:
                raise ValueError(
                    f"conditioning on {self.n_reward_components} reward components needs "
                    "preferences"
                )
            prefs = torch.as_tensor(
                preferences, dtype=torch.get_default_dtype(), device=self.device
            )
            prefs = prefs.reshape(-1, self.n_reward_components)
        elif preferences is not None:
            raise ValueError("this conditioning has no reward components: pass no preferences")
        n = max(beta_t.reshape(-1).shape[0], 1 if prefs is None else len(prefs))
        beta_t = beta_t.to(torch.get_default_dtype()).reshape(-1).expand(n)
        return self.encode(ConditionInfo(beta_t, None if prefs is None else prefs.expand(n, -1)))

    def log_reward(self, cond: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """(n,) log R(x | w, beta) = beta * log S(r(x), w) for reward vectors (n, k) in [0, 1]."""
        if not self.n_reward_components:
            raise ValueError(
                "this conditioning has no reward components: use `temper` on log rewards"
            )
        info = self.decode(cond)
        assert info.preferences is not None  # decode gives them whenever there are components
        scal = log_scalarize(rewards, info.preferences, self.scalarization, self.utopia, self.floor)
        return info.beta.to(scal) * scal

    def temper(self, cond: torch.Tensor, log_reward: torch.Tensor) -> torch.Tensor:
        """(n,) beta * log R(x): a plain log reward at each row's temperature."""
        if log_reward.isnan().any():
            raise ValueError("log rewards contain NaN")
        return self.decode(cond).beta.to(log_reward) * log_reward


class ConditionalEnv(EnvWrapper):
    """An environment made conditional: same states and actions, reward log R(x | c) read from
    conditioning rows c. With ``conditioning.n_reward_components = k`` the wrapped environment
    must offer ``reward_components(states) -> (n, k)`` in [0, 1] and the reward is
    beta * log S(r(x), w); with no components it is beta * log R(x). Sampling passes each
    trajectory's rows to ``log_reward(states, cond)`` (see `gflow.sampling.terminal_log_reward`).
    ``at(cond)`` fixes one condition and gives an ordinary environment for exact targets and
    reports."""

    def __init__(self, env: Env, conditioning: Conditioning, fixed: torch.Tensor | None = None):
        k = conditioning.n_reward_components
        if k and env.n_reward_components != k:
            raise ValueError(
                f"{type(env).__name__} has {env.n_reward_components} reward components "
                f"(objectives), the conditioning expects {k}"
            )
        super().__init__(env)
        self._conditioning, self.fixed = conditioning, fixed

    @property
    def conditioning(self) -> Conditioning:
        """Where the conditioning rows come from (and how the reward reads them back)."""
        return self._conditioning

    @property
    def conditional(self) -> bool:  # type: ignore[override]
        """True until a condition is fixed with `at`: the reward then needs conditioning rows."""
        return self.fixed is None

    def at(self, cond: torch.Tensor) -> ConditionalEnv:
        """This environment with one condition (1, cond_dim) fixed for every state."""
        if cond.dim() != 2 or cond.shape != (1, self.conditioning.cond_dim):
            raise ValueError(
                f"a fixed condition must be (1, {self.conditioning.cond_dim}), "
                f"got {tuple(cond.shape)}"
            )
        return ConditionalEnv(self.env, self.conditioning, cond)

    MISSING_ROWS = "this reward is conditional: pass cond rows, or fix one with at()"
    """The error when the reward is asked for without rows and no condition is fixed."""

    def condition_rows(self, states: States, cond: torch.Tensor | None) -> torch.Tensor:
        """One conditioning row per state: `cond`, or the fixed condition repeated."""
        n = self.env.size(states)
        if cond is None:
            if self.fixed is None:
                raise ValueError(self.MISSING_ROWS)
            cond = self.fixed.expand(n, -1)
        if len(cond) != n:
            raise ValueError(f"{len(cond)} conditioning rows for {n} states")
        return cond

    def log_reward(self, states: States, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(n,) log R(x | c) with one conditioning row per state (or the fixed condition)."""
        cond = self.condition_rows(states, cond)
        if self.conditioning.n_reward_components:
            return self.conditioning.log_reward(cond, self.env.reward_components(states))
        return self.conditioning.temper(cond, self.env.log_reward(states))


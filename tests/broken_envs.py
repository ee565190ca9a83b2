"""Deliberately broken environments that the checker must catch (used by tests and the CLI)."""

from __future__ import annotations

import torch
from gflow.envs.hypergrid import HyperGrid
from gflow.envs.sets import SetGeneration

from gflow.env import Env


class BadBackwardStep(HyperGrid):
    """Backward action i steps back along the next axis instead of axis i."""

    def backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return super().backward_step(states, (actions + 1) % self.ndim)


class IllegalAction(SetGeneration):
    """The forward mask allows adding an element that is already in the set."""

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        full = (states.sum(dim=1) == self.set_size)[:, None]
        return torch.cat([(~full).expand(-1, self.universe), full], dim=1)


class ZeroReward(HyperGrid):
    """The base reward R0 is dropped: R = 0 and log R = -inf away from the modes."""

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        return torch.log((super().log_reward(states).exp() - self.r0).clamp(min=0))


class NegativeReward(SetGeneration):
    """log R is taken of the (often negative) sum of energies: NaN for many sets."""

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        return torch.log(-self.energy(states))

    def energy(self, states: torch.Tensor) -> torch.Tensor:
        return states.float() @ self.energies


class DuplicateStates(HyperGrid):
    """enumerate_states lists every state twice."""

    def enumerate_states(self) -> torch.Tensor:
        states = super().enumerate_states()
        return torch.cat([states, states])


class NeverStops(Env):
    """A counter that can only count up: stop is never legal."""

    n_actions, n_backward, feature_dim = 2, 1, 1

    def initial(self, n: int) -> torch.Tensor:
        return torch.zeros(n, 1, dtype=torch.long)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return torch.tensor([True, False]).expand(len(states), -1)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return states > 0

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states + 1

    def backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states - 1

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(states))

    def featurize(self, states: torch.Tensor) -> torch.Tensor:
        return states.float()


class CrashingFeatures(HyperGrid):
    """featurize raises on states with a coordinate equal to 3."""

    def featurize(self, states: torch.Tensor) -> torch.Tensor:
        if (states == 3).any():
            raise RuntimeError("feature table has no row for 3")
        return super().featurize(states)

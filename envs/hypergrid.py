"""Hypergrid (Bengio et al. 2021): walk on a D-dimensional grid of side H, stop anywhere."""

from __future__ import annotations

import itertools

import torch

from gflow.env import Env


class HyperGrid(Env):
    """States are integer coordinates in {0..H-1}^D; action i adds 1 to coordinate i. `step`
    also takes the stop action, which leaves the state as it is (the horizon contract: every
    trajectory ends within D (H - 1) + 1 transitions).

    Reward: R0 + 0.5 * prod(0.25 < |x/(H-1) - 0.5| <= 0.5) + 2 * prod(0.3 < |x/(H-1) - 0.5| < 0.4).
    """

    def __init__(self, ndim: int = 2, height: int = 8, r0: float = 1e-3, device: str = "cpu"):
        if ndim < 1 or height < 2:
            raise ValueError(f"hypergrid needs ndim >= 1 and height >= 2, got {ndim=} {height=}")
        if r0 <= 0:
            raise ValueError(f"hypergrid r0 must be > 0 so that every reward is positive, got {r0}")
        self.ndim, self.height, self.r0 = ndim, height, r0
        self.n_actions = ndim + 1
        self.n_backward = ndim
        self.feature_dim = ndim * height
        self.device = torch.device(device)
        self._one_hot = torch.eye(height, dtype=torch.float32, device=self.device)
        self.horizon = ndim * (height - 1) + 1
        self._unit = torch.eye(ndim + 1, ndim, dtype=torch.long, device=self.device)
        """Row i adds 1 to coordinate i; the last row, for stop, is zero."""
        self._radix = height ** torch.arange(ndim, device=self.device)

    def initial(self, n: int) -> torch.Tensor:
        return torch.zeros(n, self.ndim, dtype=torch.long, device=self.device)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(states < self.height - 1, (0, 1), value=True)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return states > 0

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states + self._unit[actions]

    def backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states - self._unit[actions]

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        ax = (states.float() / (self.height - 1) - 0.5).abs()
        outer = ((ax > 0.25) & (ax <= 0.5)).all(dim=1).float()
        inner = ((ax > 0.3) & (ax < 0.4)).all(dim=1).float()
        return torch.log(self.r0 + 0.5 * outer + 2.0 * inner)

    def energy(self, states: torch.Tensor) -> torch.Tensor:
        return -self.log_reward(states)

    def state_ids(self, states: torch.Tensor) -> torch.Tensor:
        return (states * self._radix).sum(dim=1)

    def featurize(self, states: torch.Tensor) -> torch.Tensor:
        return self._one_hot[states].flatten(1)

    def enumerate_states(self) -> torch.Tensor:
        grid = itertools.product(range(self.height), repeat=self.ndim)
        return torch.tensor(list(grid), dtype=torch.long, device=self.device)

    def keys(self, states: torch.Tensor) -> list[int]:
        return self.state_ids(states).tolist()

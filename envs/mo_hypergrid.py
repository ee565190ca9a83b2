"""Multi-objective hypergrid (MOGFN, Jain et al. 2023): a 2-D grid walk whose cells are scored by
2 to 4 of the Branin, Currin, Shubert and Beale test functions, each normalized to [0, 1].

Cell x in {0..H-1}^2 maps to u = x / (H - 1) in [0, 1]^2 and then linearly onto the function's
usual box: Branin [-5, 10] x [0, 15], Currin [0, 1]^2, Shubert [-10, 10]^2, Beale [-4.5, 4.5]^2.
All four are minimization benchmarks (as in botorch's Branin-Currin), so objective i of a cell is
``(t_max - t(f_i(x))) / (t_max - t_min)``, with t_min, t_max the extremes of t(f_i) over the
grid's cells: 1 at the grid's best cell, 0 at its worst. t is the identity except for Beale,
where t = log1p, since its raw values span seven orders of magnitude (0.01 to 1.8e5) and a
linear rescaling would put almost every cell above 0.99.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from gflow.envs.hypergrid import HyperGrid

from gflow.conditioning import log_scalarize


def branin(u: torch.Tensor) -> torch.Tensor:
    """Branin on [-5, 10] x [0, 15] (minimum 0.397887)."""
    x1, x2 = 15 * u[:, 0] - 5, 15 * u[:, 1]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * torch.cos(x1) + 10


def currin(u: torch.Tensor) -> torch.Tensor:
    """Currin exponential on [0, 1]^2 (its x2 -> 0 limit, factor 1, at x2 = 0)."""
    x1, x2 = u[:, 0], u[:, 1]
    decay = 1 - torch.exp(-1 / (2 * x2))
    return (
        decay
        * (2300 * x1**3 + 1900 * x1**2 + 2092 * x1 + 60)
        / (100 * x1**3 + 500 * x1**2 + 4 * x1 + 20)
    )


def shubert(u: torch.Tensor) -> torch.Tensor:
    """Shubert on [-10, 10]^2 (global minimum -186.7309)."""
    x = 20 * u - 10
    i = torch.arange(1, 6, dtype=u.dtype, device=u.device)
    sums = (i * torch.cos((i + 1) * x[..., None] + i)).sum(-1)
    return sums[:, 0] * sums[:, 1]


def beale(u: torch.Tensor) -> torch.Tensor:
    """log1p of Beale on [-4.5, 4.5]^2 (minimum 0 at (3, 0.5))."""
    x1, x2 = 9 * u[:, 0] - 4.5, 9 * u[:, 1] - 4.5
    raw = (1.5 - x1 + x1 * x2) ** 2 + (2.25 - x1 + x1 * x2**2) ** 2
    return torch.log1p(raw + (2.625 - x1 + x1 * x2**3) ** 2)


OBJECTIVES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "branin": branin,
    "currin": currin,
    "shubert": shubert,
    "beale": beale,
}


class MOHyperGrid(HyperGrid):
    """A 2-D hypergrid with a vector of objectives per cell; `objectives(states)` gives (n, k) in
    [0, 1]. Its scalar reward (for unconditioned use) is the equal-weight sum of the objectives,
    floored at `floor`; conditioned training wraps it in `gflow.conditioning.ConditionalEnv`."""

    def __init__(
        self,
        height: int = 32,
        objectives: Sequence[str] = ("branin", "currin"),
        floor: float = 1e-6,
        device: str = "cpu",
    ):
        names = list(objectives)
        unknown = [n for n in names if n not in OBJECTIVES]
        if unknown or not 2 <= len(names) <= 4 or len(set(names)) != len(names):
            raise ValueError(
                f"mo-hypergrid needs 2 to 4 distinct objectives from {sorted(OBJECTIVES)}, "
                f"got {names}"
            )
        super().__init__(ndim=2, height=height, r0=1.0, device=device)
        self.objective_names, self.n_reward_components, self.floor = names, len(names), floor
        self.table = self._objective_table()

    def _objective_table(self) -> torch.Tensor:
        """(H * H, k) normalized objectives of every cell, row x0 * H + x1."""
        cells = self.enumerate_states().double() / (self.height - 1)
        raw = torch.stack([-OBJECTIVES[n](cells) for n in self.objective_names], dim=1)
        low, high = raw.min(0).values, raw.max(0).values
        return ((raw - low) / (high - low)).to(torch.get_default_dtype())

    def reward_components(self, states: torch.Tensor) -> torch.Tensor:
        """(n, k) objectives in [0, 1] of a batch of cells (1 is best)."""
        return self.table[states[:, 0] * self.height + states[:, 1]]

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        r = self.reward_components(states)
        equal = torch.full_like(r, 1 / self.n_reward_components)
        return log_scalarize(r, equal, "weighted_sum", floor=self.floor)

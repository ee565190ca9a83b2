"""The fragment environment with a vector of molecular objectives (MOGFN's seh-frag-moo task):
sEH binding, drug-likeness (QED), synthetic accessibility and molecular weight, each in [0, 1]
with 1 best:

- sEH: clip(proxy / 8, 0, 1), the sEH benchmark's scale (proxy / 8) capped at 1;
- QED: RDKit's QED, already in [0, 1];
- SA: (10 - SA) / 9, SA in [1, 10] lower is easier;
- MW: clip((300 - MW) / 700 + 1, 0, 1), 1 up to 300 Da and 0 from 1000 Da.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from gflow.envs.graphs import GraphStates
from gflow.envs.molecules.fragments import Fragment, FragmentEnv
from gflow.envs.rewards import mw_reward, qed, sa_reward
from gflow.envs.rewards.seh import REWARD_SCALE
from rdkit import Chem

from gflow.conditioning import log_scalarize

OBJECTIVE_NAMES = ("seh", "qed", "sa", "mw")
"""The objectives, in the order of the columns of `objectives(states)`."""


def normalize_seh(raw: torch.Tensor) -> torch.Tensor:
    """sEH objective in [0, 1]: clip(proxy / 8, 0, 1); invalid molecules (-inf) get 0."""
    return (raw / REWARD_SCALE).clamp(0.0, 1.0)


class FragmentObjectivesEnv(FragmentEnv):
    """`FragmentEnv` whose terminal molecules carry the four objectives of `OBJECTIVE_NAMES`;
    `objectives(states) -> (n, 4)` in [0, 1]. Its scalar reward (for unconditioned use) is the
    equal-weight mean of the objectives, floored at `floor`; conditioned training wraps it in
    `gflow.conditioning.ConditionalEnv`. `seh` is the raw sEH proxy (mols -> (n,) scores)."""

    def __init__(
        self,
        seh: Callable[[list[Chem.Mol]], torch.Tensor],
        fragments: Sequence[Fragment] | str | os.PathLike | None = None,
        max_fragments: int = 9,
        floor: float = 1e-6,
        device: str | torch.device = "cpu",
    ):
        super().__init__(fragments, max_fragments, reward=None, device=device)
        self.seh, self.floor = seh, floor
        self.objective_names = list(OBJECTIVE_NAMES)
        self.n_objectives = len(OBJECTIVE_NAMES)

    def objectives(self, states: GraphStates) -> torch.Tensor:
        """(n, 4) objectives in [0, 1] of the states' molecules: sEH, QED, SA, MW."""
        mols = self.to_mol(states)
        columns = [
            normalize_seh(torch.as_tensor(self.seh(mols)).float().cpu()),
            qed(mols),
            sa_reward(mols),
            mw_reward(mols),
        ]
        return torch.stack(columns, dim=1).clamp(0.0, 1.0).to(self.device)

    def log_reward(self, states: GraphStates) -> torch.Tensor:
        """(n,) log of the equal-weight mean of the objectives, floored at `floor`."""
        r = self.objectives(states)
        equal = torch.full_like(r, 1 / self.n_objectives)
        return log_scalarize(r, equal, "weighted_sum", floor=self.floor)

"""The fragment environment with a vector of molecular objectives (MOGFN's seh-frag-moo task):
sEH binding, drug-likeness (QED), synthetic accessibility and molecular weight, each in [0, 1]
with 1 best (any subset of them, in any order):

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
"""The objectives, in their default order."""
DESCRIPTORS: dict[str, Callable[[list[Chem.Mol]], torch.Tensor]] = {
    "qed": qed,
    "sa": sa_reward,
    "mw": mw_reward,
}
"""The objectives other than sEH: RDKit molecules -> (n,) values in [0, 1]."""
Record = Callable[[list[Chem.Mol], torch.Tensor | None, torch.Tensor], None]
"""(molecules, raw sEH proxy or None when sEH is not an objective, (n, m) objectives)."""


def parse_objectives(spec: str | Sequence[str]) -> list[str]:
    """Objective names from `seh,qed` (or a sequence): known, distinct and at least one."""
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    unknown = [n for n in names if n not in OBJECTIVE_NAMES]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(
            f"objectives {spec!r}: give distinct names from {', '.join(OBJECTIVE_NAMES)}, "
            "e.g. seh,qed"
        )
    return names


def normalize_seh(raw: torch.Tensor) -> torch.Tensor:
    """sEH objective in [0, 1]: clip(proxy / 8, 0, 1); invalid molecules (-inf) get 0."""
    return (raw / REWARD_SCALE).clamp(0.0, 1.0)


class FragmentObjectivesEnv(FragmentEnv):
    """`FragmentEnv` whose terminal molecules carry the objectives `objectives` (names from
    `OBJECTIVE_NAMES`, all four by default); `objectives(states) -> (n, m)` in [0, 1]. Its
    scalar reward (for unconditioned use) is the equal-weight mean of the objectives, floored
    at `floor`; conditioned training wraps it in `gflow.conditioning.ConditionalEnv`. `seh` is
    the raw sEH proxy (mols -> (n,) scores). When `record` is set, every `objectives` call
    hands it the molecules, their raw proxy scores and their objectives."""

    def __init__(
        self,
        seh: Callable[[list[Chem.Mol]], torch.Tensor],
        fragments: Sequence[Fragment] | str | os.PathLike | None = None,
        max_fragments: int = 9,
        floor: float = 1e-6,
        device: str | torch.device = "cpu",
        objectives: str | Sequence[str] = OBJECTIVE_NAMES,
    ):
        super().__init__(fragments, max_fragments, reward=None, device=device)
        self.seh, self.floor = seh, floor
        self.objective_names = parse_objectives(objectives)
        self.n_reward_components = len(self.objective_names)
        self.record: Record | None = None

    def reward_components(self, states: GraphStates) -> torch.Tensor:
        """(n, m) objectives in [0, 1] of the states' molecules, in `objective_names` order."""
        mols = self.to_mol(states)
        raw = None
        if "seh" in self.objective_names:
            raw = torch.as_tensor(self.seh(mols)).float().cpu()
        columns = [
            normalize_seh(raw) if name == "seh" and raw is not None else DESCRIPTORS[name](mols)
            for name in self.objective_names
        ]
        values = torch.stack(columns, dim=1).clamp(0.0, 1.0)
        if self.record is not None:
            self.record(mols, raw, values)
        return values.to(self.device)

    def log_reward(self, states: GraphStates) -> torch.Tensor:
        """(n,) log of the equal-weight mean of the objectives, floored at `floor`."""
        r = self.reward_components(states)
        equal = torch.full_like(r, 1 / self.n_reward_components)
        return log_scalarize(r, equal, "weighted_sum", floor=self.floor)

"""Molecule-building environments (RDKit): atom by atom and fragment by fragment.

Both take a `reward` callable, mols -> (n,) positive rewards (a tensor or a sequence of floats),
called on the sanitized RDKit molecules of terminal states; `log_reward` is its log, and the
intermediate energy of a partial molecule is -log R of that partial molecule. Without
one, R(x) = 1 for every molecule (uniform over molecules up to the symmetry correction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from rdkit import Chem

from gflow.env import Env
from gflow.guards import check_reward

MolReward = Callable[[list[Chem.Mol]], torch.Tensor | Sequence[float]]
"""A batched reward: RDKit molecules -> (n,) rewards R(x) > 0."""


def mol_names(mols: Sequence[Chem.Mol]) -> list[str]:
    """Canonical SMILES of each molecule: the name molecule environments give their objects."""
    return [Chem.MolToSmiles(mol) for mol in mols]


class MoleculeRewardMixin:
    """`log_reward` and `to_smiles` for environments that define `to_mol(states)`."""

    reward: MolReward | None = None
    device: torch.device
    select: Callable[[Any, torch.Tensor], Any]

    def to_mol(self, states) -> list[Chem.Mol]:
        """One sanitized RDKit molecule per state."""
        raise NotImplementedError

    def to_smiles(self, states) -> list[str]:
        """Canonical SMILES of each state's molecule."""
        return mol_names(self.to_mol(states))

    def describe(self, states) -> list[str]:
        """Each state by its molecule's SMILES (for messages)."""
        return self.to_smiles(states)

    def object_names(self, states) -> list[str]:
        """Each object by its molecule's canonical SMILES (the sample store's names)."""
        return self.to_smiles(states)

    def log_reward(self, states) -> torch.Tensor:
        """(n,) log R(x) from the reward callable on the states' molecules (0 without one)."""
        n = len(states)
        if self.reward is None:
            return torch.zeros(n, device=self.device)
        values = torch.as_tensor(self.reward(self.to_mol(states)), dtype=torch.float64)
        if values.shape != (n,):
            raise ValueError(f"the reward returned shape {tuple(values.shape)} for {n} molecules")
        check_reward(cast(Env, self), states, values)
        return values.log().float().to(self.device)

    def energy(self, states) -> torch.Tensor:
        """(n,) E(s) = -log R of the (partial) molecule built so far, the reward evaluated on
        partial molecules as in forward-looking GFlowNets; 0 for the empty graph."""
        energy = torch.zeros(len(states), device=self.device)
        built = states.n_nodes > 0
        if built.any():
            energy[built] = -self.log_reward(self.select(states, built))
        return energy

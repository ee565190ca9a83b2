"""Atom-by-atom molecule environment: a connected heavy-atom graph grown under valence masks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from gflow.envs.graphs import GraphEnv, GraphStates, one_hot
from gflow.envs.molecules import MoleculeRewardMixin, MolReward
from rdkit import Chem

from gflow.graph_layout import pair_tables

BOND_TYPES = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE)
"""Edge type e is a bond of order e + 1."""


def default_valence(symbol: str) -> int:
    """RDKit's default (lowest) valence of a neutral atom of the element."""
    table = Chem.GetPeriodicTable()
    try:
        number = table.GetAtomicNumber(symbol)
    except RuntimeError:
        raise ValueError(f"unknown element {symbol!r}") from None
    valence = table.GetDefaultValence(number)
    if number == 0 or valence < 1:
        raise ValueError(f"element {symbol!r} has no usable default valence ({valence})")
    return valence


class AtomEnv(MoleculeRewardMixin, GraphEnv):
    """Build a molecule atom by atom: the first atom of any element, then a new atom bonded to
    an existing one (single, double or triple bond), or a bond between two unbonded atoms; stop
    with at least one atom. Atoms are neutral with implicit hydrogens; masks keep the sum of
    bond orders at each atom within its element's default valence (C 4, N 3, O 2, F 1, S 2,
    Cl 1, ...), so every state is a valid, sanitizable molecule. Backward: remove a leaf atom or
    a bond that leaves the molecule connected. See `gflow.envs.molecules` for the reward."""

    def __init__(
        self,
        elements: Sequence[str] = ("C", "N", "O", "F"),
        max_atoms: int = 9,
        reward: MolReward | None = None,
        device: str | torch.device = "cpu",
    ):
        if not elements or len(set(elements)) != len(elements):
            raise ValueError(f"elements must be distinct and non-empty, got {list(elements)}")
        valences = [default_valence(symbol) for symbol in elements]
        super().__init__(
            node_types=len(elements),
            edge_types=len(BOND_TYPES),
            max_nodes=max_atoms,
            connected=True,
            min_nodes=1,
            device=device,
        )
        self.elements = tuple(elements)
        self.reward = reward
        self.valence = torch.tensor(valences, device=self.device)
        self.max_valence = max(valences)
        self.order = torch.arange(1, len(BOND_TYPES) + 1, device=self.device)
        self.node_feature_dim += self.max_valence + 1

    def free_valence(self, states: GraphStates) -> torch.Tensor:
        """(B, N) valence left at each atom (0 at absent slots)."""
        bonded = ((states.edges + 1) * (states.edges >= 0)).sum(2)
        own = self.valence[states.nodes.clamp(min=0)] * (states.nodes >= 0)
        return own - bonded

    def restrict(
        self, states: GraphStates, attach: torch.Tensor, bond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        free = self.free_valence(states)
        fits_new = self.valence[:, None] >= self.order
        attach = attach & (free[:, :, None, None] >= self.order) & fits_new
        first, second, _ = pair_tables(self.max_nodes, states.nodes.device)
        fits = (free[:, first, None] >= self.order) & (free[:, second, None] >= self.order)
        return attach, bond & fits

    def node_features(self, states: GraphStates) -> torch.Tensor:
        free = self.free_valence(states).masked_fill(states.nodes < 0, -1)
        return torch.cat(
            [super().node_features(states), one_hot(free, self.max_valence + 1)], dim=-1
        )

    def to_mol(self, states: GraphStates) -> list[Chem.Mol]:
        """One sanitized RDKit molecule per state (heavy atoms, implicit hydrogens)."""
        nodes, edges = states.nodes.tolist(), states.edges.tolist()
        mols = []
        for b, count in enumerate(states.n_nodes.tolist()):
            mol = Chem.RWMol()
            for u in range(count):
                mol.AddAtom(Chem.Atom(self.elements[nodes[b][u]]))
            for u in range(count):
                for v in range(u + 1, count):
                    if edges[b][u][v] >= 0:
                        mol.AddBond(u, v, BOND_TYPES[edges[b][u][v]])
            Chem.SanitizeMol(mol)
            mols.append(mol.GetMol())
        return mols

"""Fragment-by-fragment molecule environment (Bengio et al. 2021): a tree of fragments joined by
single bonds between listed attachment atoms."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from gflow.envs.graphs import GraphBuildingEnv, GraphStates, is_class, one_hot, remove_nodes
from gflow.envs.molecules import MoleculeRewardMixin, MolReward
from rdkit import Chem

from gflow.config import find_data
from gflow.graph_layout import GRAPH, NODE, STOP, GraphActionLayout

FRAGMENTS_72 = "seh/fragments_72.json"
"""The standard 72-fragment vocabulary, looked up with `gflow.config.find_data`."""


@dataclass(frozen=True)
class Fragment:
    """A fragment: its SMILES and the atom indices (RDKit order) where bonds may form."""

    smiles: str
    attach: tuple[int, ...]

    def mol(self) -> Chem.Mol:
        """The parsed fragment, checked against its attachment list."""
        mol = Chem.MolFromSmiles(self.smiles)
        if mol is None:
            raise ValueError(f"fragment SMILES {self.smiles!r} does not parse")
        if not self.attach or any(not 0 <= a < mol.GetNumAtoms() for a in self.attach):
            raise ValueError(
                f"fragment {self.smiles!r}: attachment atoms {list(self.attach)} must be a "
                f"non-empty list of indices below {mol.GetNumAtoms()}"
            )
        return mol


def load_fragments(path: str | os.PathLike | None = None) -> list[Fragment]:
    """Fragments from a JSON list of {"smiles": ..., "attach": [...]}; by default the 72-fragment
    vocabulary found by `find_data("seh/fragments_72.json")`."""
    source = find_data(FRAGMENTS_72, path)
    try:
        entries = json.loads(Path(source).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{source} is not a JSON file of fragments: {err}") from None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("smiles"), str)
        and isinstance(e.get("attach"), list)
        for e in entries
    ):
        raise ValueError(f"{source}: expected a JSON list of {{'smiles': str, 'attach': [int]}}")
    return [Fragment(e["smiles"], tuple(int(a) for a in e["attach"])) for e in entries]


class FragmentEnv(MoleculeRewardMixin, GraphBuildingEnv):
    """Build a molecule from fragments: the first fragment of any type, then a new fragment
    bonded by a single bond from one of its attachment atoms (slot b) to a free attachment atom
    (slot k) of an existing fragment i; each slot bonds at most once; stop with at least one
    fragment. Backward: remove a leaf fragment (or the last one). Nodes are fragment types, and
    the edge between fragments u and v carries u's slot at edges[u, v] and v's at edges[v, u].

    Forward layout: [first fragment t (T) | per node i: slot k x (fragment, slot) pair m
    (K x M) | stop], K the largest slot count, M the total number of slots; a factored head
    picks (i, k), then m (`fine_actions` = M). `fragments` is a
    list of `Fragment`, a JSON path, or None for the 72-fragment vocabulary.
    """

    symmetric_edges = False

    def __init__(
        self,
        fragments: Sequence[Fragment] | str | os.PathLike | None = None,
        max_fragments: int = 9,
        reward: MolReward | None = None,
        device: str | torch.device = "cpu",
    ):
        if fragments is None or isinstance(fragments, (str, os.PathLike)):
            fragments = load_fragments(fragments)
        if not fragments:
            raise ValueError("the fragment vocabulary is empty")
        if max_fragments < 1:
            raise ValueError(f"max_fragments must be >= 1, got {max_fragments}")
        self.fragments = list(fragments)
        self.mols = [f.mol() for f in self.fragments]
        self.reward = reward
        self.max_nodes = max_fragments
        slots = [len(f.attach) for f in self.fragments]
        self.n_types, self.max_slots, self.n_pairs = len(slots), max(slots), sum(slots)
        self.forward_layout = GraphActionLayout(
            max_fragments, self.n_types, self.max_slots * self.n_pairs, 0
        )
        self.fine_actions = self.n_pairs
        self.backward_layout = GraphActionLayout(max_fragments, 0, 1, 0, stop=False)
        self.node_feature_dim = self.n_types + self.max_slots
        self.edge_feature_dim = 1 + 2 * self.max_slots
        self._setup(device)
        self.slot_count = torch.tensor(slots, device=self.device)
        self.slot_offset = torch.nn.functional.pad(self.slot_count.cumsum(0), (1, 0))[:-1]
        self.pair_fragment = torch.repeat_interleave(
            torch.arange(self.n_types, device=self.device), self.slot_count
        )
        self.pair_slot = (
            torch.arange(self.n_pairs, device=self.device) - self.slot_offset[self.pair_fragment]
        )

    # --- labels and features ---------------------------------------------------------------

    def node_labels(self, states: GraphStates) -> torch.Tensor:
        return states.nodes

    def edge_labels(self, states: GraphStates) -> torch.Tensor:
        return states.edges

    def label_counts(self) -> tuple[int, int]:
        return self.n_types, self.max_slots**2 + 1

    def free_slots(self, states: GraphStates) -> torch.Tensor:
        """(B, N, K) bool: slot k of fragment i exists and is not bonded."""
        used = is_class(states.edges, self.max_slots).any(2)
        exists = torch.arange(self.max_slots, device=states.nodes.device) < self.slot_count[
            states.nodes.clamp(min=0)
        ].unsqueeze(-1)
        return exists & (states.nodes >= 0).unsqueeze(-1) & ~used

    def node_features(self, states: GraphStates) -> torch.Tensor:
        free = self.free_slots(states).float()
        return torch.cat([one_hot(states.nodes, self.n_types), free], dim=-1)

    def edge_features(self, states: GraphStates) -> torch.Tensor:
        absent = (states.edges < 0).float().unsqueeze(-1)
        own = one_hot(states.edges, self.max_slots)
        other = one_hot(states.edges.transpose(1, 2), self.max_slots)
        return torch.cat([absent, own, other], dim=-1)

    # --- masks and steps -------------------------------------------------------------------

    def forward_mask(self, states: GraphStates) -> torch.Tensor:
        count = states.n_nodes
        graph = (count == 0)[:, None].expand(-1, self.n_types)
        room = (count < self.max_nodes)[:, None, None]
        node = (self.free_slots(states) & room)[..., None].expand(-1, -1, -1, self.n_pairs)
        return self.forward_layout.assemble(graph, node, None, count >= 1)

    def backward_mask(self, states: GraphStates) -> torch.Tensor:
        degree = (states.edges >= 0).sum(2)
        leaf = (degree == 1) | (states.n_nodes == 1)[:, None]
        return leaf & (states.nodes >= 0)

    def _split(self, sub: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-node sub-action -> (slot k of the existing fragment, (fragment, slot) pair m)."""
        return sub // self.n_pairs, sub % self.n_pairs

    def step(self, states: GraphStates, actions: torch.Tensor) -> GraphStates:
        act = self.forward_layout.decode(actions)
        if (act.kind == STOP).any():
            raise ValueError("step got the stop action; stop ends the trajectory instead")
        out = states.clone()
        rows = torch.arange(len(states), device=actions.device)
        count = states.n_nodes
        first = act.kind == GRAPH
        out.nodes[rows[first], 0] = act.sub[first]
        grow = act.kind == NODE
        b, i, pos = rows[grow], act.node[grow], count[grow]
        slot, pair = self._split(act.sub[grow])
        out.nodes[b, pos] = self.pair_fragment[pair]
        out.edges[b, i, pos] = slot
        out.edges[b, pos, i] = self.pair_slot[pair]
        return out

    def backward_step(self, states: GraphStates, actions: torch.Tensor) -> GraphStates:
        if ((actions < 0) | (actions >= self.n_backward)).any():
            raise ValueError(f"backward actions must lie in [0, {self.n_backward})")
        return remove_nodes(states, actions)

    def backward_action(self, states: GraphStates, actions: torch.Tensor) -> torch.Tensor:
        act = self.forward_layout.decode(actions)
        return torch.where(act.kind == GRAPH, 0, states.n_nodes)

    def forward_action(self, states: GraphStates, actions: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(states), device=actions.device)
        node_type = states.nodes[rows, actions]
        links = states.edges[rows, actions]
        neighbour = (links >= 0).long().argmax(1)
        own_slot = links[rows, neighbour]
        their_slot = states.edges[rows, neighbour, actions]
        pair = self.slot_offset[node_type] + own_slot
        sub = their_slot * self.n_pairs + pair
        grow = self.forward_layout.node_action(neighbour - (neighbour > actions).long(), sub)
        return torch.where(links.lt(0).all(1), node_type, grow)

    # --- molecules -------------------------------------------------------------------------

    def to_mol(self, states: GraphStates) -> list[Chem.Mol]:
        """One sanitized RDKit molecule per state: the fragments joined by single bonds between
        their attachment atoms, each bond taking one hydrogen from both atoms."""
        nodes, edges = states.nodes.tolist(), states.edges.tolist()
        mols = []
        for b, count in enumerate(states.n_nodes.tolist()):
            mol = Chem.RWMol()
            start = []
            for u in range(count):
                start.append(mol.GetNumAtoms())
                mol.InsertMol(self.mols[nodes[b][u]])
            for u in range(count):
                for v in range(u + 1, count):
                    if edges[b][u][v] >= 0:
                        ends = (
                            self._atom(nodes[b], start, u, edges[b][u][v]),
                            self._atom(nodes[b], start, v, edges[b][v][u]),
                        )
                        mol.AddBond(*ends, Chem.BondType.SINGLE)
                        for index in ends:
                            atom = mol.GetAtomWithIdx(index)
                            atom.SetNumExplicitHs(max(atom.GetNumExplicitHs() - 1, 0))
            Chem.SanitizeMol(mol)
            mols.append(mol.GetMol())
        return mols

    def _atom(self, types: list[int], start: list[int], node: int, slot: int) -> int:
        """Index in the assembled molecule of `node`'s attachment atom `slot`."""
        return start[node] + self.fragments[types[node]].attach[slot]

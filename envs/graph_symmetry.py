"""Graph symmetry: canonical keys up to isomorphism and automorphism-group orders.

Graph environments act on labelled representatives of unlabelled graphs, so several actions
from one state can reach the same graph up to isomorphism. A GFlowNet whose policy is
permutation-equivariant then samples x with probability proportional to R(x) / |Aut(x)| unless
corrected (Ma et al. 2023, "Baking Symmetry into GFlowNets"; Kim et al. 2025, "Symmetry-Aware
GFlowNets"): for any pair of states, the forward actions from s reaching s' and the backward
actions from s' reaching s are in the ratio |Aut(s)| / |Aut(s')|, so along a trajectory the
corrections telescope and training with R(x) |Aut(x)| / |Aut(s0)| in place of R(x) makes the
sampler target R over isomorphism classes, for TB, DB, SubTB and FM alike.

A labelled graph here is ``(node_labels, edge_labels)``: one integer label per node and a dict
``{(u, v): label}`` holding both directions of every edge (labels may differ by direction, e.g.
the attachment point on each side of a fragment bond).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import networkx as nx
import torch
from networkx.algorithms.isomorphism import DiGraphMatcher
from rdkit import Chem

from gflow.env import Env, EnvWrapper, States

LabeledGraph = tuple[Sequence[int], Mapping[tuple[int, int], int]]
"""Node labels and directed edge labels of one graph."""

_EDGE_ATOM = 118
"""Atomic number of the pseudo-atoms that carry edge labels in the canonical-form encoding."""


def canonical_key(node_labels: Sequence[int], edge_labels: Mapping[tuple[int, int], int]) -> str:
    """A string equal for two labelled graphs exactly when they are isomorphic.

    The graph is encoded as an RDKit molecule (each node a dummy atom whose isotope is its label
    + 1, each edge u-v a chain u - e(u->v) - e(v->u) - v of pseudo-atoms carrying the directed
    labels) and RDKit's canonical SMILES of it is the key.
    """
    mol = Chem.RWMol()
    for label in node_labels:
        mol.AddAtom(_labelled_atom(0, label))
    for (u, v), label in edge_labels.items():
        if u < v:
            near = mol.AddAtom(_labelled_atom(_EDGE_ATOM, label))
            far = mol.AddAtom(_labelled_atom(_EDGE_ATOM, edge_labels[v, u]))
            mol.AddBond(u, near, Chem.BondType.SINGLE)
            mol.AddBond(near, far, Chem.BondType.SINGLE)
            mol.AddBond(far, v, Chem.BondType.SINGLE)
    return Chem.MolToSmiles(mol, canonical=True, isomericSmiles=True)


def _labelled_atom(atomic_number: int, label: int) -> Chem.Atom:
    if label < 0:
        raise ValueError(f"graph labels must be >= 0 for canonical keys, got {label}")
    atom = Chem.Atom(atomic_number)
    atom.SetIsotope(label + 1)
    atom.SetNoImplicit(True)
    return atom


def _neighbours(
    n: int, edge_labels: Mapping[tuple[int, int], int]
) -> list[list[tuple[int, int, int]]]:
    """Per node: (neighbour, label out, label in) for each incident edge."""
    adjacency: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
    for (u, v), label in edge_labels.items():
        adjacency[u].append((v, label, edge_labels[v, u]))
    return adjacency


def refine(colors: Sequence[int], adjacency: list[list[tuple[int, int, int]]]) -> list[int]:
    """Colour refinement (1-WL) to the coarsest equitable partition; colours are ranks of
    isomorphism-invariant signatures, so they are comparable between isomorphic graphs."""
    colors = list(colors)
    count = len(set(colors))
    while True:
        signatures = [
            (colors[v], tuple(sorted((out, inn, colors[u]) for u, out, inn in adjacency[v])))
            for v in range(len(colors))
        ]
        rank = {s: r for r, s in enumerate(sorted(set(signatures)))}
        colors = [rank[s] for s in signatures]
        if len(rank) == count:
            return colors
        count = len(rank)


def _individualize(colors: list[int], v: int) -> list[int]:
    out = list(colors)
    out[v] = max(colors) + 1
    return out


def automorphism_count(
    node_labels: Sequence[int], edge_labels: Mapping[tuple[int, int], int]
) -> int:
    """|Aut(G)|: the number of label-preserving permutations mapping G onto itself.

    Orbit-stabiliser along a chain of individualised nodes: |Aut| = prod |orbit of v_k in the
    stabiliser of v_1..v_{k-1}|, each orbit found by exact isomorphism tests (VF2) between the
    graph with v individualised and with each candidate w individualised.
    """
    n = len(node_labels)
    adjacency = _neighbours(n, edge_labels)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from((u, v, {"label": label}) for (u, v), label in edge_labels.items())
    colors = refine(node_labels, adjacency)
    count = 1
    while len(set(colors)) < n:
        cells: dict[int, list[int]] = {}
        for v, c in enumerate(colors):
            cells.setdefault(c, []).append(v)
        cell = next(cells[c] for c in sorted(cells) if len(cells[c]) > 1)
        pinned = refine(_individualize(colors, cell[0]), adjacency)
        orbit = 1 + sum(
            _same_orbit(graph, adjacency, pinned, refine(_individualize(colors, w), adjacency))
            for w in cell[1:]
        )
        count *= orbit
        colors = pinned
    return count


def _same_orbit(
    graph: nx.DiGraph,
    adjacency: list[list[tuple[int, int, int]]],
    first: list[int],
    second: list[int],
) -> bool:
    """Whether some automorphism maps colouring `first` onto colouring `second`."""
    if sorted(first) != sorted(second):
        return False
    if len(set(first)) == len(first):
        where = {c: v for v, c in enumerate(second)}
        image = [where[c] for c in first]
        return all(
            any(x == image[u] and out == o and inn == i for x, o, i in adjacency[image[v]])
            for v in range(len(first))
            for u, out, inn in adjacency[v]
        )
    left, right = graph.copy(), graph.copy()
    nx.set_node_attributes(left, dict(enumerate(first)), "c")
    nx.set_node_attributes(right, dict(enumerate(second)), "c")
    matcher = DiGraphMatcher(
        left,
        right,
        node_match=lambda a, b: a["c"] == b["c"],
        edge_match=lambda a, b: a["label"] == b["label"],
    )
    return matcher.is_isomorphic()


class SymmetryCorrected(EnvWrapper):
    """A graph environment (possibly wrapped, e.g. by `ConditionalEnv`) whose reward is
    log R(x) + log |Aut(x)| - log |Aut(s0)|: trained on it, an equivariant sampler draws
    isomorphism classes in proportion to R. Everything else is the wrapped environment's; its
    `env` is the uncorrected environment, whose `log_reward` is the target for exact checks.

    The wrapper goes outermost, so that a tempered or conditional reward is corrected after
    tempering (R(x)^beta |Aut(x)|).
    """

    def __init__(self, env: Env):
        super().__init__(env)
        graph_env = env
        while not hasattr(graph_env, "log_automorphisms"):
            if not hasattr(graph_env, "env"):
                raise ValueError(f"{type(env).__name__} wraps no graph environment")
            graph_env = graph_env.env
        self.graph_env = graph_env
        self.initial_log_automorphisms = float(graph_env.log_automorphisms(env.initial(1))[0])

    def exact_target(self) -> Env:
        """The uncorrected environment: the sampler trained on R(x) |Aut(x)| targets R over
        isomorphism classes, which exact evaluation measures on the uncorrected graphs."""
        return self.env

    def correction(self, states: States) -> torch.Tensor:
        """(n,) log |Aut(x)| - log |Aut(s0)|."""
        return self.graph_env.log_automorphisms(states) - self.initial_log_automorphisms

    def log_reward(self, states: States, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(n,) the corrected log reward (conditional when the wrapped reward is)."""
        args = (states,) if cond is None else (states, cond)
        return self.env.log_reward(*args) + self.correction(states)

    def energy(self, states: States) -> torch.Tensor:
        return self.env.energy(states) - self.correction(states)


"""Flat action layouts for graph environments: the vocabulary graph environments and graph
policies share (a core module: environments import it, it imports no environment).

A layout lays every action a graph state can take out in one fixed index space:
``[per-graph (G) | per-node (N x K) | per-pair (N(N-1)/2 x P) | stop]`` with N the maximum number
of nodes and pairs (i < j) in row-major upper-triangular order. Masks and logits are then dense
(n, size) tensors, so masking, sampling, log-probabilities and entropy are plain tensor ops; the
model's per-graph, per-node and per-pair outputs are scattered into place in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

GRAPH, NODE, PAIR, STOP = 0, 1, 2, 3
"""Action kinds returned by `GraphActionLayout.decode`."""


@lru_cache(maxsize=64)
def _pair_tables(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    first, second = torch.triu_indices(n, n, 1, device=device)
    position = torch.full((n, n), -1, dtype=torch.long, device=device)
    order = torch.arange(len(first), device=device)
    position[first, second] = order
    position[second, first] = order
    return first, second, position


def pair_tables(
    n: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(first, second, position) for the n(n-1)/2 pairs i < j of n nodes: the two endpoints of
    each pair and the (n, n) symmetric table of pair positions (-1 on the diagonal)."""
    return _pair_tables(n, torch.device(device))


@dataclass(frozen=True)
class Decoded:
    """Flat actions split into their kind, node(s) and sub-action (-1 where not applicable)."""

    kind: torch.Tensor
    node: torch.Tensor
    other: torch.Tensor
    sub: torch.Tensor


@dataclass(frozen=True)
class GraphActionLayout:
    """The flat index space ``[per-graph | per-node | per-pair | stop]`` of one action direction."""

    max_nodes: int
    per_graph: int = 0
    per_node: int = 0
    per_pair: int = 0
    stop: bool = True

    def __post_init__(self) -> None:
        if self.max_nodes < 1:
            raise ValueError(f"a graph action layout needs max_nodes >= 1, got {self.max_nodes}")
        if min(self.per_graph, self.per_node, self.per_pair) < 0:
            raise ValueError("per-graph, per-node and per-pair action counts must be >= 0")

    @property
    def n_pairs(self) -> int:
        """Number of node pairs i < j."""
        return self.max_nodes * (self.max_nodes - 1) // 2

    @property
    def node_start(self) -> int:
        """Index of the first per-node action."""
        return self.per_graph

    @property
    def pair_start(self) -> int:
        """Index of the first per-pair action."""
        return self.per_graph + self.max_nodes * self.per_node

    @property
    def stop_index(self) -> int:
        """Index of the stop action (== size when the layout has none)."""
        return self.pair_start + self.n_pairs * self.per_pair

    @property
    def size(self) -> int:
        """Total number of actions."""
        return self.stop_index + int(self.stop)

    def node_action(self, node: torch.Tensor, sub: torch.Tensor | int) -> torch.Tensor:
        """Flat index of per-node action `sub` on `node`."""
        return self.node_start + node * self.per_node + sub

    def pair_action(
        self, first: torch.Tensor, second: torch.Tensor, sub: torch.Tensor | int
    ) -> torch.Tensor:
        """Flat index of per-pair action `sub` on the pair {first, second} (first != second)."""
        position = pair_tables(self.max_nodes, first.device)[2][first, second]
        return self.pair_start + position * self.per_pair + sub

    def decode(self, actions: torch.Tensor) -> Decoded:
        """Split flat actions into kind (GRAPH, NODE, PAIR, STOP), nodes and sub-action."""
        if ((actions < 0) | (actions >= self.size)).any():
            raise ValueError(f"actions must lie in [0, {self.size}), got {actions.tolist()}")
        first, second, _ = pair_tables(self.max_nodes, actions.device)
        kind = torch.full_like(actions, GRAPH)
        kind[actions >= self.node_start] = NODE
        kind[actions >= self.pair_start] = PAIR
        kind[actions >= self.stop_index] = STOP
        node = torch.full_like(actions, -1)
        other = torch.full_like(actions, -1)
        sub = torch.where(kind == GRAPH, actions, torch.full_like(actions, -1))
        at_node = kind == NODE
        local = actions[at_node] - self.node_start
        node[at_node] = local // max(self.per_node, 1)
        sub[at_node] = local % max(self.per_node, 1)
        at_pair = kind == PAIR
        local = actions[at_pair] - self.pair_start
        position = local // max(self.per_pair, 1)
        node[at_pair] = first[position]
        other[at_pair] = second[position]
        sub[at_pair] = local % max(self.per_pair, 1)
        return Decoded(kind, node, other, sub)

    def assemble(
        self,
        graph: torch.Tensor | None,
        node: torch.Tensor | None,
        pair: torch.Tensor | None,
        stop: torch.Tensor | None,
    ) -> torch.Tensor:
        """Concatenate dense blocks (n, G), (n, N, K), (n, P, Kp) and (n,) into (n, size); a
        block the layout has no room for is None."""
        blocks = [
            (graph, self.per_graph, "graph"),
            (node, self.per_node, "node"),
            (pair, self.per_pair, "pair"),
        ]
        parts = [_given(block, name).flatten(1) for block, width, name in blocks if width]
        if self.stop:
            parts.append(_given(stop, "stop")[:, None])
        return torch.cat(parts, dim=1)

    def scatter(
        self,
        n_graphs: int,
        graph: torch.Tensor | None = None,
        node: torch.Tensor | None = None,
        node_graph: torch.Tensor | None = None,
        node_slot: torch.Tensor | None = None,
        pair: torch.Tensor | None = None,
        pair_graph: torch.Tensor | None = None,
        pair_slot: torch.Tensor | None = None,
        stop: torch.Tensor | None = None,
        fill: float = 0.0,
    ) -> torch.Tensor:
        """Place model outputs into a dense (n_graphs, size) tensor: `graph` (n_graphs, G), `node`
        (n_nodes, K) for the node at local index `node_slot` of graph `node_graph`, `pair`
        (n_pairs, P) for pair position `pair_slot` of graph `pair_graph`, `stop` (n_graphs,).
        Entries with no output (absent nodes and pairs) get `fill`."""
        reference = next(t for t in (graph, node, pair, stop) if t is not None)
        out = reference.new_full((n_graphs, self.size), fill)
        if self.per_graph:
            out[:, : self.per_graph] = _given(graph, "graph")
        if self.per_node and node is not None and len(node):
            rows = out[:, self.node_start : self.pair_start].view(n_graphs, self.max_nodes, -1)
            rows[_given(node_graph, "node_graph"), _given(node_slot, "node_slot")] = node
        if self.per_pair and pair is not None and len(pair):
            rows = out[:, self.pair_start : self.stop_index].view(n_graphs, self.n_pairs, -1)
            rows[_given(pair_graph, "pair_graph"), _given(pair_slot, "pair_slot")] = pair
        if self.stop:
            out[:, self.stop_index] = _given(stop, "stop")
        return out


def _given(block: torch.Tensor | None, name: str) -> torch.Tensor:
    """`block`, or a one-line error when the layout has room for it but none was given."""
    if block is None:
        raise ValueError(f"this action layout needs the {name!r} block, got None")
    return block

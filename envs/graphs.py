"""Batched graph-building environments: the padded graph-state batch, the machinery every graph
environment shares, and a generic environment that adds typed nodes and edges and sets
attributes.

States are unlabelled graphs held as labelled representatives: present nodes occupy the prefix
0..n-1 of N padded slots, adding a node appends it, removing one shifts the later nodes down.
`keys` are canonical up to isomorphism, so every method agrees with the environment's state
space of isomorphism classes. `log_reward` is the reward R(x) of the unlabelled graph; wrap an
environment in `gflow.envs.graph_symmetry.SymmetryCorrected` to make the sampler target R over those
classes (without the wrapper it samples x in proportion to R(x) / |Aut(x)|).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields

import networkx as nx
import torch
from gflow.envs.graph_symmetry import LabeledGraph, automorphism_count, canonical_key
from torch_geometric.data import Batch

from gflow.env import Env
from gflow.graph_layout import GRAPH, NODE, PAIR, STOP, GraphActionLayout, pair_tables

ENUMERATION_LIMIT = 200_000
"""Graph environments whose labelled-state count bound is at most this are enumerable."""
AUTOMORPHISM_CACHE = 100_000
"""Automorphism counts remembered per environment (by exact labelled graph)."""


@dataclass
class GraphStates:
    """A batch of graphs padded to N nodes; present nodes are always the prefix 0..n-1."""

    nodes: torch.Tensor
    """(B, N) long node type, -1 where no node."""
    edges: torch.Tensor
    """(B, N, N) long: edges[b, u, v] is the label of u's end of edge u-v, -1 where no edge."""
    node_attr: torch.Tensor
    """(B, N) long node attribute, 0 when unset."""
    edge_attr: torch.Tensor
    """(B, N, N) long symmetric edge attribute, 0 when unset."""

    def __len__(self) -> int:
        return self.nodes.shape[0]

    @property
    def n_nodes(self) -> torch.Tensor:
        """(B,) number of nodes of each graph."""
        return (self.nodes >= 0).sum(1)

    def index(self, index: torch.Tensor) -> GraphStates:
        """The graphs at `index` (bool mask or integer indices)."""
        return GraphStates(*(getattr(self, f.name)[index] for f in fields(self)))

    def clone(self) -> GraphStates:
        """A deep copy."""
        return GraphStates(*(getattr(self, f.name).clone() for f in fields(self)))

    def assign(self, mask: torch.Tensor, other: GraphStates) -> None:
        """In place: replace the graphs where `mask` holds by `other` (one per true entry)."""
        for f in fields(self):
            getattr(self, f.name)[mask] = getattr(other, f.name)

    @staticmethod
    def cat(batches: Sequence[GraphStates]) -> GraphStates:
        """Concatenate batches with the same padding."""
        return GraphStates(
            *(torch.cat([getattr(b, f.name) for b in batches]) for f in fields(GraphStates))
        )

    def to(self, device: torch.device | str) -> GraphStates:
        """The batch on another device."""
        return GraphStates(*(getattr(self, f.name).to(device) for f in fields(self)))


def empty_graphs(n: int, max_nodes: int, device: torch.device) -> GraphStates:
    """`n` graphs with no node."""
    square = (n, max_nodes, max_nodes)
    return GraphStates(
        nodes=torch.full((n, max_nodes), -1, dtype=torch.long, device=device),
        edges=torch.full(square, -1, dtype=torch.long, device=device),
        node_attr=torch.zeros(n, max_nodes, dtype=torch.long, device=device),
        edge_attr=torch.zeros(square, dtype=torch.long, device=device),
    )


def remove_nodes(states: GraphStates, node: torch.Tensor) -> GraphStates:
    """Remove node `node[b]` of every graph b with its edges, shifting later nodes down."""
    n, slots = states.nodes.shape
    position = torch.arange(slots, device=node.device)
    source = position[None, :] + (position[None, :] >= node[:, None]).long()
    kept = source < slots
    source = source.clamp(max=slots - 1)
    rows = torch.arange(n, device=node.device)[:, None, None]
    pair_kept = kept[:, :, None] & kept[:, None, :]
    square = (rows, source[:, :, None], source[:, None, :])
    return GraphStates(
        nodes=states.nodes.gather(1, source).masked_fill(~kept, -1),
        edges=states.edges[square].masked_fill(~pair_kept, -1),
        node_attr=states.node_attr.gather(1, source).masked_fill(~kept, 0),
        edge_attr=states.edge_attr[square].masked_fill(~pair_kept, 0),
    )


def one_hot(values: torch.Tensor, classes: int) -> torch.Tensor:
    """Float one-hot of `values` in [0, classes); negative values give all zeros."""
    return is_class(values, classes).float()


def is_class(values: torch.Tensor, classes: int) -> torch.Tensor:
    """(..., classes) bool: entry k says `values` == k (one comparison: half the time of
    `torch.nn.functional.one_hot`, which also validates and casts)."""
    return values.unsqueeze(-1) == torch.arange(classes, device=values.device)


def bridges(states: GraphStates) -> torch.Tensor:
    """(B, N, N) bool: which edges disconnect their (connected) graph when removed.

    An edge of a connected graph is a bridge exactly when the effective resistance between its
    ends, with unit resistance per edge, is 1; it is read off the inverse of L + J/n.
    """
    present = states.nodes >= 0
    adjacency = (states.edges >= 0).double()
    laplacian = torch.diag_embed(adjacency.sum(2)) - adjacency
    count = present.sum(1).clamp(min=1).double()
    both = (present[:, :, None] & present[:, None, :]).double()
    system = laplacian + both / count[:, None, None] + torch.diag_embed((~present).double())
    inverse = torch.linalg.inv(system)
    diagonal = inverse.diagonal(dim1=1, dim2=2)
    resistance = diagonal[:, :, None] + diagonal[:, None, :] - 2 * inverse
    return (states.edges >= 0) & (resistance > 1 - 1e-6)


class GraphBuildingEnv(Env):
    """What every graph environment shares: the state batch, canonical keys, featurization into
    one torch-geometric `Batch`, the automorphism correction, networkx conversion and
    enumeration. Subclasses define the action layouts, masks, steps, labels and features."""

    max_nodes: int
    forward_layout: GraphActionLayout
    backward_layout: GraphActionLayout
    node_feature_dim: int
    edge_feature_dim: int
    graph_feature_dim: int = 2
    policy_kind = "graph-transformer"
    symmetric_edges: bool = True
    """Whether edges[u, v] == edges[v, u] always (False: each end has its own label)."""

    def _setup(self, device: str | torch.device) -> None:
        """Finish construction once the layouts are set."""
        self.device = torch.device(device)
        self.n_actions = self.forward_layout.size
        self.n_backward = self.backward_layout.size
        self.feature_dim = self.node_feature_dim
        self._automorphisms: dict[Hashable, float] = {}

    # --- state batch -----------------------------------------------------------------------

    def initial(self, n: int) -> GraphStates:
        return empty_graphs(n, self.max_nodes, self.device)

    def size(self, states: GraphStates) -> int:
        return len(states)

    def cat(self, batches: Sequence[GraphStates]) -> GraphStates:
        return GraphStates.cat(batches)

    def select(self, states: GraphStates, index: torch.Tensor) -> GraphStates:
        return states.index(index)

    def states_to_data(self, states: GraphStates) -> dict[str, torch.Tensor]:
        """The batch as a dict of its tensors (plain data for checkpoints)."""
        return {f.name: getattr(states, f.name) for f in fields(GraphStates)}

    def states_from_data(self, data: dict[str, torch.Tensor]) -> GraphStates:
        """The batch `states_to_data` encoded."""
        return GraphStates(**{f.name: data[f.name] for f in fields(GraphStates)})

    def where(self, cond: torch.Tensor, a: GraphStates, b: GraphStates) -> GraphStates:
        out = []
        for f in fields(GraphStates):
            x, y = getattr(a, f.name), getattr(b, f.name)
            out.append(torch.where(cond.view(-1, *([1] * (x.dim() - 1))), x, y))
        return GraphStates(*out)

    # --- labels, keys, symmetry ------------------------------------------------------------

    def node_labels(self, states: GraphStates) -> torch.Tensor:
        """(B, N) integer label of each node: everything an isomorphism must preserve."""
        raise NotImplementedError

    def edge_labels(self, states: GraphStates) -> torch.Tensor:
        """(B, N, N) integer label of u's end of each edge u-v (-1 where no edge)."""
        raise NotImplementedError

    def labeled_graphs(self, states: GraphStates) -> list[LabeledGraph]:
        """Each graph as (node labels, {(u, v): label}) for canonical keys and automorphisms."""
        counts = states.n_nodes.tolist()
        labels = self.node_labels(states).tolist()
        edge_labels = self.edge_labels(states)
        b, u, v = (edge_labels >= 0).nonzero(as_tuple=True)
        values = edge_labels[b, u, v].tolist()
        graphs: list[LabeledGraph] = [(labels[i][: counts[i]], {}) for i in range(len(states))]
        for g, x, y, label in zip(b.tolist(), u.tolist(), v.tolist(), values, strict=True):
            graphs[g][1][x, y] = label
        return graphs

    def keys(self, states: GraphStates) -> list[str]:
        """Canonical keys: equal exactly when two graphs are isomorphic."""
        return [canonical_key(*graph) for graph in self.labeled_graphs(states)]

    def describe(self, states: GraphStates) -> list[str]:
        """Each graph by its canonical key."""
        return self.keys(states)

    def log_automorphisms(self, states: GraphStates) -> torch.Tensor:
        """(B,) log |Aut(G)| of each graph."""
        out = []
        for nodes, edges in self.labeled_graphs(states):
            key = (tuple(nodes), tuple(sorted(edges.items())))
            if key not in self._automorphisms:
                if len(self._automorphisms) >= AUTOMORPHISM_CACHE:
                    self._automorphisms.clear()
                self._automorphisms[key] = math.log(automorphism_count(nodes, edges))
            out.append(self._automorphisms[key])
        return torch.tensor(out, dtype=torch.float32, device=self.device)

    # --- features --------------------------------------------------------------------------

    def node_features(self, states: GraphStates) -> torch.Tensor:
        """(B, N, node_feature_dim) float features of every node slot."""
        raise NotImplementedError

    def edge_features(self, states: GraphStates) -> torch.Tensor:
        """(B, N, N, edge_feature_dim) float features of every ordered node pair (u, v),
        describing u's end of the edge, or the absence of one."""
        raise NotImplementedError

    def graph_features(self, states: GraphStates) -> torch.Tensor:
        """(B, graph_feature_dim) float features of whole graphs: fill ratio and emptiness."""
        n = states.n_nodes.float()
        return torch.stack([n / self.max_nodes, (n == 0).float()], dim=1)

    def featurize(self, states: GraphStates) -> Batch:
        """One torch-geometric `Batch`: x, edge_index (both directions), edge_attr, batch, ptr,
        node_slot (local node index), graph_attr, forward_mask (B, forward layout size; what a
        policy with a stop gate reads), and for layouts with per-pair actions pair_index (2, P)
        over i < j, pair_batch, pair_slot (pair position), pair_attr."""
        present = states.nodes >= 0
        count = present.sum(1)
        ptr = torch.nn.functional.pad(count.cumsum(0), (1, 0))
        graph, slot = present.nonzero(as_tuple=True)
        edge_features = self.edge_features(states)
        eb, eu, ev = (states.edges >= 0).nonzero(as_tuple=True)
        batch = Batch(
            x=self.node_features(states)[graph, slot],
            edge_index=torch.stack([ptr[eb] + eu, ptr[eb] + ev]),
            edge_attr=edge_features[eb, eu, ev],
            batch=graph,
            ptr=ptr,
            node_slot=slot,
            graph_attr=self.graph_features(states),
            forward_mask=self.forward_mask(states),
        )
        batch._num_graphs = len(states)
        if self.forward_layout.per_pair or self.backward_layout.per_pair:
            first, second, _ = pair_tables(self.max_nodes, states.nodes.device)
            valid = present[:, first] & present[:, second]
            pb, position = valid.nonzero(as_tuple=True)
            i, j = first[position], second[position]
            batch.pair_index = torch.stack([ptr[pb] + i, ptr[pb] + j])
            batch.pair_batch = pb
            batch.pair_slot = position
            batch.pair_attr = 0.5 * (edge_features[pb, i, j] + edge_features[pb, j, i])
        return batch

    # --- conversion and enumeration --------------------------------------------------------

    def to_networkx(self, states: GraphStates) -> list[nx.Graph]:
        """Each graph as networkx: nodes 0..n-1 with `type` and `attr`; edges with `attr` and
        `type` (symmetric edges) or `ends` = {u: label of u's end, v: label of v's end}."""
        nodes, attrs = states.nodes.tolist(), states.node_attr.tolist()
        edges, edge_attrs = states.edges.tolist(), states.edge_attr.tolist()
        out = []
        for b, count in enumerate(states.n_nodes.tolist()):
            g = nx.Graph()
            for u in range(count):
                g.add_node(u, type=nodes[b][u], attr=attrs[b][u])
            for u in range(count):
                for v in range(u + 1, count):
                    if edges[b][u][v] >= 0:
                        data = {"attr": edge_attrs[b][u][v]}
                        if self.symmetric_edges:
                            data["type"] = edges[b][u][v]
                        else:
                            data["ends"] = {u: edges[b][u][v], v: edges[b][v][u]}
                        g.add_edge(u, v, **data)
            out.append(g)
        return out

    def from_networkx(self, graphs: Sequence[nx.Graph]) -> GraphStates:
        """States from networkx graphs in the format of `to_networkx` (nodes in their order)."""
        states = empty_graphs(len(graphs), self.max_nodes, torch.device("cpu"))
        for b, g in enumerate(graphs):
            if g.number_of_nodes() > self.max_nodes:
                raise ValueError(f"graph {b} has {g.number_of_nodes()} nodes > {self.max_nodes}")
            index = {node: i for i, node in enumerate(g.nodes)}
            for node, data in g.nodes(data=True):
                states.nodes[b, index[node]] = data["type"]
                states.node_attr[b, index[node]] = data.get("attr", 0)
            for x, y, data in g.edges(data=True):
                u, v = index[x], index[y]
                ends = data["ends"] if "ends" in data else {x: data["type"], y: data["type"]}
                states.edges[b, u, v], states.edges[b, v, u] = ends[x], ends[y]
                states.edge_attr[b, u, v] = states.edge_attr[b, v, u] = data.get("attr", 0)
        return states.to(self.device)

    def label_counts(self) -> tuple[int, int]:
        """(distinct node labels, distinct states of a node pair) for the enumeration bound."""
        raise NotImplementedError

    def is_enumerable(self) -> bool:
        """Whether the labelled-state bound sum_n a^n b^(n(n-1)/2) is within ENUMERATION_LIMIT."""
        a, b = self.label_counts()
        bound = sum(a**n * b ** (n * (n - 1) // 2) for n in range(self.max_nodes + 1))
        return bound <= ENUMERATION_LIMIT

    def enumerate_states(self) -> GraphStates:
        """One representative of every reachable isomorphism class, by breadth-first search."""
        if not self.is_enumerable():
            raise NotImplementedError(f"{type(self).__name__} is too large to enumerate")
        frontier = self.initial(1)
        seen = set(self.keys(frontier))
        found = [frontier]
        while len(frontier):
            moves = self.forward_mask(frontier)
            moves[:, self.stop] = False
            parent, action = moves.nonzero(as_tuple=True)
            children = self.step(self.select(frontier, parent), action)
            fresh = []
            for i, key in enumerate(self.keys(children)):
                if key not in seen:
                    seen.add(key)
                    fresh.append(i)
            frontier = self.select(
                children, torch.tensor(fresh, dtype=torch.long, device=self.device)
            )
            found.append(frontier)
        return self.cat(found)


class GraphEnv(GraphBuildingEnv):
    """Build a graph with typed nodes and edges and categorical node and edge attributes.

    Forward actions (layout ``[graph | node | pair | stop]``):
    - per graph: add a node of type t (T actions); with `connected`, only into the empty graph;
    - per node i: with `connected`, add a node of type t joined to i by an edge of type e
      (T x E actions); then set the unset attribute of i to value v (node_attrs actions);
    - per pair i < j: add an edge of type e (E actions), set the unset attribute of the edge to
      value v (edge_attrs actions);
    - stop, once the graph has at least `min_nodes` nodes.
    Backward actions undo one of them: per node, remove it (isolated, or with `connected` a leaf,
    with no attribute set) or unset its attribute; per pair, remove the edge (not a bridge with
    `connected`, attribute unset) or unset its attribute. With `connected` every state is a
    connected graph.

    The reward is `log_reward_fn(states)` -> (B,) log R (it must be invariant under node
    relabelling); by default R = 1 for every graph.
    """

    def __init__(
        self,
        node_types: int = 2,
        edge_types: int = 1,
        max_nodes: int = 4,
        node_attrs: int = 0,
        edge_attrs: int = 0,
        connected: bool = False,
        min_nodes: int = 1,
        log_reward_fn: Callable[[GraphStates], torch.Tensor] | None = None,
        device: str | torch.device = "cpu",
    ):
        if node_types < 1 or edge_types < 1 or max_nodes < 1:
            raise ValueError(
                f"graph env needs node_types, edge_types, max_nodes >= 1, got {node_types=} "
                f"{edge_types=} {max_nodes=}"
            )
        if node_attrs < 0 or edge_attrs < 0 or not 0 <= min_nodes <= max_nodes:
            raise ValueError(
                f"need node_attrs, edge_attrs >= 0 and 0 <= min_nodes <= max_nodes, got "
                f"{node_attrs=} {edge_attrs=} {min_nodes=}"
            )
        self.node_types, self.edge_types, self.max_nodes = node_types, edge_types, max_nodes
        self.node_attrs, self.edge_attrs = node_attrs, edge_attrs
        self.connected, self.min_nodes = bool(connected), min_nodes
        self.log_reward_fn = log_reward_fn
        self.attach_actions = node_types * edge_types if connected else 0
        self.forward_layout = GraphActionLayout(
            max_nodes, node_types, self.attach_actions + node_attrs, edge_types + edge_attrs
        )
        self.backward_layout = GraphActionLayout(
            max_nodes, 0, 1 + (node_attrs > 0), 1 + (edge_attrs > 0), stop=False
        )
        self.node_feature_dim = node_types + node_attrs + 1
        self.edge_feature_dim = 1 + edge_types + edge_attrs + 1
        self._setup(device)

    # --- labels and features ---------------------------------------------------------------

    def node_labels(self, states: GraphStates) -> torch.Tensor:
        return states.nodes * (self.node_attrs + 1) + states.node_attr

    def edge_labels(self, states: GraphStates) -> torch.Tensor:
        labels = states.edges * (self.edge_attrs + 1) + states.edge_attr
        return labels.masked_fill(states.edges < 0, -1)

    def label_counts(self) -> tuple[int, int]:
        return self.node_types * (self.node_attrs + 1), self.edge_types * (self.edge_attrs + 1) + 1

    def node_features(self, states: GraphStates) -> torch.Tensor:
        attr = states.node_attr.masked_fill(states.nodes < 0, -1)
        return torch.cat(
            [one_hot(states.nodes, self.node_types), one_hot(attr, self.node_attrs + 1)], dim=-1
        )

    def edge_features(self, states: GraphStates) -> torch.Tensor:
        absent = (states.edges < 0).float().unsqueeze(-1)
        attr = states.edge_attr.masked_fill(states.edges < 0, -1)
        return torch.cat(
            [absent, one_hot(states.edges, self.edge_types), one_hot(attr, self.edge_attrs + 1)],
            dim=-1,
        )

    def log_reward(self, states: GraphStates) -> torch.Tensor:
        if self.log_reward_fn is None:
            return torch.zeros(len(states), device=self.device)
        return self.log_reward_fn(states).to(self.device, torch.float32)

    # --- masks -----------------------------------------------------------------------------

    def restrict(
        self, states: GraphStates, attach: torch.Tensor, bond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hook for subclasses: narrow the legal attach (B, N, T, E) and add-edge (B, P, E)
        actions (e.g. by valence). The generic environment allows all of them."""
        return attach, bond

    def forward_mask(self, states: GraphStates) -> torch.Tensor:
        n_graphs, slots = states.nodes.shape
        present = states.nodes >= 0
        count = present.sum(1)
        room = count < self.max_nodes
        add = (count == 0) if self.connected else room
        graph = add[:, None].expand(n_graphs, self.node_types)
        attach = (present & room[:, None]) & self.connected
        attach = attach[:, :, None, None].expand(-1, -1, self.node_types, self.edge_types)
        set_attr = (present & (states.node_attr == 0))[:, :, None].expand(-1, -1, self.node_attrs)
        first, second, _ = pair_tables(slots, states.nodes.device)
        both = present[:, first] & present[:, second]
        edge = states.edges[:, first, second]
        bond = (both & (edge < 0))[:, :, None].expand(-1, -1, self.edge_types)
        attach, bond = self.restrict(states, attach, bond)
        unset = (edge >= 0) & (states.edge_attr[:, first, second] == 0)
        set_edge = unset[:, :, None].expand(-1, -1, self.edge_attrs)
        node = torch.cat([attach.flatten(2)[..., : self.attach_actions], set_attr], dim=2)
        pair = torch.cat([bond, set_edge], dim=2)
        return self.forward_layout.assemble(graph, node, pair, count >= self.min_nodes)

    def backward_mask(self, states: GraphStates) -> torch.Tensor:
        present = states.nodes >= 0
        has_edge = states.edges >= 0
        degree = has_edge.sum(2)
        plain = present & (states.node_attr == 0)
        if self.connected:
            edge_attr_free = (states.edge_attr * has_edge).sum(2) == 0
            leaf = (degree == 1) & edge_attr_free
            remove = plain & (leaf | (states.n_nodes == 1)[:, None])
        else:
            remove = plain & (degree == 0)
        node = [remove[:, :, None]]
        if self.node_attrs:
            node.append((states.node_attr > 0)[:, :, None])
        first, second, _ = pair_tables(self.max_nodes, states.nodes.device)
        removable = has_edge & (states.edge_attr == 0)
        if self.connected:
            removable = removable & ~bridges(states)
        pair = [removable[:, first, second, None]]
        if self.edge_attrs:
            pair.append((states.edge_attr[:, first, second] > 0)[:, :, None])
        return self.backward_layout.assemble(None, torch.cat(node, 2), torch.cat(pair, 2), None)

    # --- steps -----------------------------------------------------------------------------

    def step(self, states: GraphStates, actions: torch.Tensor) -> GraphStates:
        act = self.forward_layout.decode(actions)
        if (act.kind == STOP).any():
            raise ValueError("step got the stop action; stop ends the trajectory instead")
        out = states.clone()
        rows = torch.arange(len(states), device=actions.device)
        count = states.n_nodes
        add = act.kind == GRAPH
        out.nodes[rows[add], count[add]] = act.sub[add]
        attach = (act.kind == NODE) & (act.sub < self.attach_actions)
        b, i, pos, sub = rows[attach], act.node[attach], count[attach], act.sub[attach]
        out.nodes[b, pos] = sub // self.edge_types
        out.edges[b, i, pos] = sub % self.edge_types
        out.edges[b, pos, i] = sub % self.edge_types
        set_attr = (act.kind == NODE) & (act.sub >= self.attach_actions)
        out.node_attr[rows[set_attr], act.node[set_attr]] = (
            act.sub[set_attr] - self.attach_actions + 1
        )
        pair = act.kind == PAIR
        bond = pair & (act.sub < self.edge_types)
        b, i, j, sub = rows[bond], act.node[bond], act.other[bond], act.sub[bond]
        out.edges[b, i, j] = sub
        out.edges[b, j, i] = sub
        set_edge = pair & (act.sub >= self.edge_types)
        b, i, j = rows[set_edge], act.node[set_edge], act.other[set_edge]
        value = act.sub[set_edge] - self.edge_types + 1
        out.edge_attr[b, i, j] = value
        out.edge_attr[b, j, i] = value
        return out

    def backward_step(self, states: GraphStates, actions: torch.Tensor) -> GraphStates:
        act = self.backward_layout.decode(actions)
        out = states.clone()
        rows = torch.arange(len(states), device=actions.device)
        node, pair = act.kind == NODE, act.kind == PAIR
        remove = node & (act.sub == 0)
        unset = node & (act.sub == 1)
        out.node_attr[rows[unset], act.node[unset]] = 0
        cut = pair & (act.sub == 0)
        unset_edge = pair & (act.sub == 1)
        for mask, table, value in ((cut, out.edges, -1), (unset_edge, out.edge_attr, 0)):
            b, i, j = rows[mask], act.node[mask], act.other[mask]
            table[b, i, j] = value
            table[b, j, i] = value
        if remove.any():
            out.assign(remove, remove_nodes(states.index(remove), act.node[remove]))
        return out

    def backward_action(self, states: GraphStates, actions: torch.Tensor) -> torch.Tensor:
        act = self.forward_layout.decode(actions)
        layout = self.backward_layout
        grows = (act.kind == GRAPH) | ((act.kind == NODE) & (act.sub < self.attach_actions))
        node = torch.where(grows, states.n_nodes, act.node).clamp(min=0)
        node_action = layout.node_action(node, (~grows).long())
        pair_sub = (act.sub >= self.edge_types).long()
        pair_action = layout.pair_action(act.node, act.other, pair_sub)
        return torch.where(act.kind == PAIR, pair_action, node_action)

    def forward_action(self, states: GraphStates, actions: torch.Tensor) -> torch.Tensor:
        act = self.backward_layout.decode(actions)
        layout = self.forward_layout
        rows = torch.arange(len(states), device=actions.device)
        i = act.node.clamp(min=0)
        node_type = states.nodes[rows, i]
        links = states.edges[rows, i]
        neighbour = (links >= 0).long().argmax(1)
        edge_type = links[rows, neighbour]
        isolated = links.lt(0).all(1)
        add = node_type
        attach = layout.node_action(
            neighbour - (neighbour > i).long(), node_type * self.edge_types + edge_type
        )
        removal = torch.where(isolated, add, attach)
        set_attr = layout.node_action(i, self.attach_actions + states.node_attr[rows, i] - 1)
        node_action = torch.where(act.sub == 0, removal, set_attr)
        j = act.other
        bond = layout.pair_action(i, j, states.edges[rows, i, j])
        set_edge = layout.pair_action(i, j, self.edge_types + states.edge_attr[rows, i, j] - 1)
        pair_action = torch.where(act.sub == 0, bond, set_edge)
        return torch.where(act.kind == PAIR, pair_action, node_action)

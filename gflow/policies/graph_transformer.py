"""Graph transformer policy: TransformerConv layers with edge features over each graph plus one
virtual node per graph that carries the conditioning, read out into a graph action layout."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import TransformerConv

from gflow.factored import FactoredLayout, FactoredLogits, ForwardLogits, cat_logits
from gflow.graph_layout import GraphActionLayout
from gflow.policies.base import OutputRecorder, Policy, PolicyOutput
from gflow.policies.mlp import mlp


class _Block(nn.Module):
    """Pre-norm residual block: graph attention over edges plus a summed message (attention
    alone averages, so it cannot count neighbours), then a feed-forward layer."""

    def __init__(self, hidden: int, heads: int, edge_dim: int):
        super().__init__()
        self.norm_attention = nn.LayerNorm(hidden)
        self.attention = TransformerConv(
            hidden, hidden // heads, heads=heads, concat=True, edge_dim=edge_dim
        )
        self.message = nn.Linear(hidden, hidden)
        self.message_edge = nn.Linear(edge_dim, hidden, bias=False)
        self.norm_ff = nn.LayerNorm(hidden)
        self.feed_forward = mlp([hidden, 2 * hidden, hidden])

    def forward(
        self, h: torch.Tensor, edge_index: torch.Tensor, edges: torch.Tensor
    ) -> torch.Tensor:
        x = self.norm_attention(h)
        source, target = edge_index
        messages = self.message(x).index_select(0, source) + self.message_edge(edges)
        summed = torch.zeros_like(x).index_add_(0, target, messages)
        h = h + self.attention(x, edge_index, edges) + summed
        return h + self.feed_forward(self.norm_ff(h))


class _Heads(nn.Module):
    """Per-graph, per-node and per-pair output heads for one action layout; with `stop_gate`
    the stop output is a gate (see `GraphTransformerPolicy`)."""

    def __init__(
        self,
        layout: GraphActionLayout,
        hidden: int,
        extra_graph: int = 0,
        stop_gate: bool = False,
    ):
        super().__init__()
        if stop_gate and not layout.stop:
            raise ValueError("stop_gate needs a layout with a stop action")
        self.layout = layout
        self.stop_gate = stop_gate
        graph_width = layout.per_graph + int(layout.stop) + extra_graph
        self.graph = mlp([2 * hidden, hidden, graph_width]) if graph_width else None
        self.node = mlp([3 * hidden, hidden, layout.per_node]) if layout.per_node else None
        self.pair = mlp([5 * hidden, hidden, layout.per_pair]) if layout.per_pair else None

    def forward(
        self,
        batch: Batch,
        g: torch.Tensor,
        node_in: torch.Tensor | None,
        pair_in: torch.Tensor | None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(dense logits (n, size), extra per-graph outputs (n, extra_graph)); `mask` is the
        legal actions of this layout for the stop gate (default: the features' forward_mask)."""
        layout = self.layout
        graph_out = g[:, :0] if self.graph is None else self.graph(g)
        width = layout.per_graph
        stop = graph_out[:, width] if layout.stop else None
        logits = layout.scatter(
            len(g),
            graph=graph_out[:, :width],
            node=None if self.node is None else self.node(node_in),
            node_graph=batch.batch,
            node_slot=batch.node_slot,
            pair=None if self.pair is None else self.pair(pair_in),
            pair_graph=getattr(batch, "pair_batch", None),
            pair_slot=getattr(batch, "pair_slot", None),
            stop=stop,
        )
        if self.stop_gate:
            if mask is None:
                mask = getattr(batch, "forward_mask", None)
            if mask is None:
                raise ValueError(
                    "stop_gate needs features carrying forward_mask (graph envs' featurize)"
                )
            logits = _gate_stop(logits, mask, layout.stop_index)
        return logits, graph_out[:, width + int(layout.stop) :]


def _gate_stop(logits: torch.Tensor, mask: torch.Tensor, stop: int) -> torch.Tensor:
    """The logits with the stop entry (the last column) read as a gate: stop's output plus the
    logsumexp of the other legal actions' logits, so that softmax over the legal actions stops
    with probability sigmoid(stop's output) and otherwise picks among the rest by their softmax.
    Where stop is the only legal action its output is left as it is."""
    others, going = mask[:, :stop], logits[:, :stop]
    # a finite fill keeps the gradients of rows with no other legal action finite; logsumexp as
    # max - log_softmax at the max, since the fused log_softmax kernel is several times faster
    masked = going.masked_fill(~others, torch.finfo(logits.dtype).min)
    top, at = masked.max(dim=1, keepdim=True)
    rest = (top - masked.log_softmax(dim=1).gather(1, at)).squeeze(1)
    rest = torch.where(others.any(dim=1), rest, torch.zeros_like(rest))
    return torch.cat([going, (logits[:, stop] + rest)[:, None]], dim=1)


class GraphTransformerPolicy(Policy):
    """A graph transformer producing forward logits, backward logits (with `learn_pb`), state
    log-flow and log Z, for states featurized as a torch-geometric `Batch` by a graph
    environment (`gflow.envs.graphs.GraphBuildingEnv`).

    Each layer is a TransformerConv attending over the graph's edges (with edge features) and
    over a virtual node linked to every node of its graph (edges flagged as virtual), plus a
    summed message over the same edges; the virtual node starts from the graph features and
    the conditioning, which is also added to every node's input. Readout:
    per graph [virtual node, mean of nodes]; per node [node, graph]; per pair i < j
    [h_i + h_j, h_i * h_j, pair features, graph], so outputs are permutation-equivariant.

    `stop_gate`: the stop logit is the stop output plus the logsumexp of the other legal forward
    logits (from the features' `forward_mask`), so the policy stops with probability
    sigmoid(stop output) and otherwise continues with the softmax of the rest. The family of
    distributions is the same; what changes is where training starts: with a plain stop logit
    an untrained policy stops with probability about 1 / (number of legal actions), so with a
    large vocabulary (the 72 fragments' thousands of attachments) it nearly always grows to the
    size limit, while the gate starts at one half whatever the vocabulary.

    `fine_actions` (an environment's `fine_actions`, e.g. fragments' (fragment, slot) pairs):
    the forward head is factored (`gflow.factored`). It scores the coarse actions (per node,
    the per-node actions / fine_actions slots k) and a fine head gives the logits of the fine
    choice m of a coarse node action from [node readout, embedding of k], evaluated only where
    sampling or scoring asks; forward outputs are then `FactoredLogits`.
    """

    def __init__(
        self,
        node_dim: int,
        edge_dim: int,
        graph_dim: int,
        forward_layout: GraphActionLayout,
        backward_layout: GraphActionLayout,
        hidden: int = 128,
        layers: int = 4,
        heads: int = 4,
        cond_dim: int = 0,
        learn_pb: bool = False,
        stop_gate: bool = False,
        fine_actions: int = 0,
    ):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
        if layers < 1:
            raise ValueError(f"the graph transformer needs layers >= 1, got {layers}")
        self.cond_dim = cond_dim
        self.node_in = nn.Linear(node_dim, hidden)
        self.pair_in = nn.Linear(edge_dim, hidden)
        self.virtual_in = nn.Linear(graph_dim + cond_dim, hidden)
        self.cond_in = nn.Linear(cond_dim, hidden) if cond_dim else None
        self.edge_dim = edge_dim
        self.blocks = nn.ModuleList(_Block(hidden, heads, edge_dim + 2) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.factors = FactoredLayout(forward_layout, fine_actions) if fine_actions else None
        head_layout = forward_layout if self.factors is None else self.factors.coarse
        self.forward_heads = _Heads(head_layout, hidden, extra_graph=1, stop_gate=stop_gate)
        if self.factors is not None:
            self.slot_embedding = nn.Embedding(head_layout.per_node, hidden)
            self.fine_head = mlp([4 * hidden, hidden, fine_actions])
        self.backward_head = _Heads(backward_layout, hidden) if learn_pb else None
        self.uses_pairs = bool(forward_layout.per_pair or (learn_pb and backward_layout.per_pair))
        if cond_dim:
            self.log_z_net = mlp([cond_dim, hidden, 1])
        else:
            self.log_z_param = nn.Parameter(torch.zeros(1))

    @classmethod
    def for_env(cls, env, **options) -> GraphTransformerPolicy:
        """A policy sized for a graph environment; options as in the constructor."""
        return cls(
            env.node_feature_dim,
            env.edge_feature_dim,
            env.graph_feature_dim,
            env.forward_layout,
            env.backward_layout,
            **options,
        )

    def forward(self, features: Batch, cond: torch.Tensor | None = None) -> PolicyOutput:
        g, node_in, pair_in = self._encode(features, cond)
        forward_logits, log_flow = self._forward_head(features, g, node_in, pair_in)
        backward_logits = None
        if self.backward_head is not None:
            backward_logits = self.backward_head(features, g, node_in, pair_in)[0]
        return PolicyOutput(forward_logits, backward_logits, log_flow.squeeze(1))

    def forward_logits(self, features: Batch, cond: torch.Tensor | None = None) -> ForwardLogits:
        """Only the forward logits (what sampling needs), skipping the backward head."""
        return self._forward_head(features, *self._encode(features, cond))[0]

    def _forward_head(
        self,
        features: Batch,
        g: torch.Tensor,
        node_in: torch.Tensor,
        pair_in: torch.Tensor | None,
    ) -> tuple[ForwardLogits, torch.Tensor]:
        """(forward logits, dense or factored; per-graph log-flow outputs (n, 1))."""
        if self.factors is None:
            return self.forward_heads(features, g, node_in, pair_in)
        mask = getattr(features, "forward_mask", None)
        coarse_mask = None if mask is None else self.factors.coarse_mask(mask)
        coarse, log_flow = self.forward_heads(features, g, node_in, pair_in, coarse_mask)
        logits = FactoredLogits(coarse, node_in, features.ptr[:-1], self._fine, self.factors)
        return logits, log_flow

    def _fine(self, nodes: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """Fine logits (r, fine_actions) from node readouts (r, 3 * hidden) and coarse slots k."""
        return self.fine_head(torch.cat([nodes, self.slot_embedding(slot)], dim=1))

    def recorder(self) -> OutputRecorder | None:
        """Keeps the sampling passes' outputs with their autograd graphs, so that scoring reuses
        them (`_GraphRecorder`); None for a subclass that computes its outputs differently."""
        cls = type(self)
        methods = (cls.forward, cls.forward_logits)
        if methods != (GraphTransformerPolicy.forward, GraphTransformerPolicy.forward_logits):
            return None
        return _GraphRecorder(self)

    def _encode(
        self, features: Batch, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Run the layers: per-graph, per-node and per-pair readout inputs."""
        if self.cond_dim and cond is None:
            raise ValueError("this policy is conditional: pass a conditioning tensor")
        n_graphs, n_nodes = features.num_graphs, features.x.shape[0]
        graph_of = features.batch
        graph_in = features.graph_attr
        h = self.node_in(features.x)
        if self.cond_in is not None and cond is not None:
            cond = cond.to(h.dtype)
            graph_in = torch.cat([graph_in, cond], dim=1)
            h = h + self.cond_in(cond).index_select(0, graph_of)
        h = torch.cat([h, self.virtual_in(graph_in)])
        nodes = torch.arange(n_nodes, device=h.device)
        virtual = n_nodes + graph_of
        edge_index = torch.cat(
            [features.edge_index, torch.stack([nodes, virtual]), torch.stack([virtual, nodes])], 1
        )
        n_edges = len(features.edge_attr)
        edges = torch.zeros(n_edges + 2 * n_nodes, self.edge_dim + 2, device=h.device)
        edges[:n_edges, :-2] = features.edge_attr
        edges[n_edges : n_edges + n_nodes, -2] = 1.0
        edges[n_edges + n_nodes :, -1] = 1.0
        for block in self.blocks:
            h = block(h, edge_index, edges)
        h = self.norm(h)
        real, g_virtual = h[:n_nodes], h[n_nodes:]
        count = torch.zeros(n_graphs, device=h.device).index_add_(
            0, graph_of, torch.ones(n_nodes, device=h.device)
        )
        total = torch.zeros_like(g_virtual).index_add_(0, graph_of, real)
        g = torch.cat([g_virtual, total / count.clamp(min=1)[:, None]], dim=1)
        node_in = torch.cat([real, g.index_select(0, graph_of)], dim=1)
        pair_in = self._pairs(features, real, g) if self.uses_pairs else None
        return g, node_in, pair_in

    def _pairs(self, features: Batch, real: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Symmetric pair inputs [h_i + h_j, h_i * h_j, pair features, graph] for every pair."""
        first, second = (real.index_select(0, index) for index in features.pair_index)
        return torch.cat(
            [
                first + second,
                first * second,
                self.pair_in(features.pair_attr),
                g.index_select(0, features.pair_batch),
            ],
            dim=1,
        )

    def log_z(self, cond: torch.Tensor | None, n: int) -> torch.Tensor:
        if self.cond_dim:
            if cond is None:
                raise ValueError("this policy is conditional: pass a conditioning tensor")
            dtype = next(self.log_z_net.parameters()).dtype
            return self.log_z_net(cond.to(dtype)).squeeze(1)
        return self.log_z_param.expand(n)

    def log_z_parameters(self) -> list[nn.Parameter]:
        """Parameters of log Z, which usually train with a larger learning rate."""
        return list(self.log_z_net.parameters()) if self.cond_dim else [self.log_z_param]


class _GraphRecorder(OutputRecorder):
    """Runs the whole policy (every head) with autograd on while sampling, keeps the outputs and
    gives them back concatenated: scoring then needs no second pass over the visited states, and
    the backward pass runs through the sampling passes' own graphs. The draws are made from the
    same forward logits as without recording; the outputs equal a fresh pass's up to float
    rounding (the same rows in smaller batches)."""

    def __init__(self, policy: GraphTransformerPolicy):
        self.policy = policy
        self.kept: list[PolicyOutput] = []
        self.uniform_pb = policy.backward_head is None

    def forward_logits(self, features: Batch, cond: torch.Tensor | None = None) -> ForwardLogits:
        with torch.enable_grad():
            out = self.policy(features, cond)
        self.kept.append(out)
        return out.forward_logits.detach()

    def outputs(self) -> PolicyOutput | None:
        kept, self.kept = self.kept, []
        if not kept:
            return None
        backward = [out.backward_logits for out in kept]
        forward = [out.forward_logits for out in kept]
        return PolicyOutput(
            cat_logits(forward),
            None if backward[0] is None else torch.cat(backward),  # type: ignore[arg-type]
            torch.cat([out.log_flow for out in kept]),
        )

"""Graph action layouts and the batched graph categorical, against a slow per-graph reference."""

import math

import pytest
import torch
from graph_categorical import GraphCategorical

from gflow.graph_layout import (
    GRAPH,
    NODE,
    PAIR,
    STOP,
    GraphActionLayout,
    pair_tables,
)

LAYOUT = GraphActionLayout(max_nodes=5, per_graph=3, per_node=2, per_pair=4)


def test_layout_sizes_and_decode_round_trip():
    assert LAYOUT.n_pairs == 10
    assert LAYOUT.size == 3 + 5 * 2 + 10 * 4 + 1
    act = LAYOUT.decode(torch.arange(LAYOUT.size))
    graph, node, pair = act.kind == GRAPH, act.kind == NODE, act.kind == PAIR
    assert graph.sum() == 3 and node.sum() == 10 and pair.sum() == 40
    assert act.kind[-1] == STOP
    assert torch.equal(LAYOUT.node_action(act.node[node], act.sub[node]), torch.arange(3, 13))
    back = LAYOUT.pair_action(act.node[pair], act.other[pair], act.sub[pair])
    assert torch.equal(back, torch.arange(13, 53))
    assert (act.node[pair] < act.other[pair]).all()
    swapped = LAYOUT.pair_action(act.other[pair], act.node[pair], act.sub[pair])
    assert torch.equal(swapped, back)


def test_decode_rejects_out_of_range():
    with pytest.raises(ValueError, match="actions must lie"):
        LAYOUT.decode(torch.tensor([LAYOUT.size]))


def random_outputs(counts: list[int], generator: torch.Generator) -> dict:
    """Per-graph, per-node and per-pair model outputs for graphs with `counts` nodes."""
    layout = LAYOUT
    node_graph = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    node_slot = torch.cat([torch.arange(c) for c in counts])
    first, second, position = pair_tables(layout.max_nodes)
    pair_graph, pair_slot = [], []
    for b, c in enumerate(counts):
        for p in range(layout.n_pairs):
            if first[p] < c and second[p] < c:
                pair_graph.append(b)
                pair_slot.append(p)
    n_pairs = len(pair_graph)
    return dict(
        n_graphs=len(counts),
        graph=torch.randn(len(counts), layout.per_graph, generator=generator),
        node=torch.randn(len(node_graph), layout.per_node, generator=generator),
        node_graph=node_graph,
        node_slot=node_slot,
        pair=torch.randn(n_pairs, layout.per_pair, generator=generator),
        pair_graph=torch.tensor(pair_graph, dtype=torch.long),
        pair_slot=torch.tensor(pair_slot, dtype=torch.long),
        stop=torch.randn(len(counts), generator=generator),
    )


def reference(out: dict, legal: dict) -> list[dict[tuple, float]]:
    """Per graph, a Python loop over its legal (kind, node, other, sub) actions: log-softmax of
    their raw outputs, with no dense layout involved."""
    first, second, _ = pair_tables(LAYOUT.max_nodes)
    result = []
    for b in range(out["n_graphs"]):
        scores = {}
        for k in range(LAYOUT.per_graph):
            scores[(GRAPH, -1, -1, k)] = float(out["graph"][b, k])
        for row in (out["node_graph"] == b).nonzero().flatten().tolist():
            for k in range(LAYOUT.per_node):
                scores[(NODE, int(out["node_slot"][row]), -1, k)] = float(out["node"][row, k])
        for row in (out["pair_graph"] == b).nonzero().flatten().tolist():
            p = int(out["pair_slot"][row])
            for k in range(LAYOUT.per_pair):
                scores[(PAIR, int(first[p]), int(second[p]), k)] = float(out["pair"][row, k])
        scores[(STOP, -1, -1, -1)] = float(out["stop"][b])
        scores = {a: s for a, s in scores.items() if legal[a, b]}
        top = max(scores.values())
        norm = top + math.log(sum(math.exp(s - top) for s in scores.values()))
        result.append({a: s - norm for a, s in scores.items()})
    return result


def make_batch(seed: int):
    generator = torch.Generator().manual_seed(seed)
    counts = [0, 1, 2, 5, 3, 4]
    out = random_outputs(counts, generator)
    logits = LAYOUT.scatter(**out, fill=123.0)
    act = LAYOUT.decode(torch.arange(LAYOUT.size))
    exists = torch.ones(len(counts), LAYOUT.size, dtype=torch.bool)
    count = torch.tensor(counts)[:, None]
    exists &= ~((act.kind == NODE) & (act.node[None, :] >= count))
    exists &= ~((act.kind == PAIR) & (act.other[None, :] >= count))
    mask = exists & (torch.rand(exists.shape, generator=generator) < 0.6)
    mask[:, -1] = True
    columns = (act.kind.tolist(), act.node.tolist(), act.other.tolist(), act.sub.tolist())
    keys = list(zip(*columns, strict=True))
    legal = {(key, b): bool(mask[b, a]) for a, key in enumerate(keys) for b in range(len(counts))}
    return out, logits, mask, keys, legal


def test_scatter_places_outputs_and_fills_absent_slots():
    out, logits, _, keys, _ = make_batch(0)
    act = LAYOUT.decode(torch.arange(LAYOUT.size))
    # graph 0 has no node: every per-node and per-pair entry is the fill value
    assert (logits[0, (act.kind == NODE) | (act.kind == PAIR)] == 123.0).all()
    # graph 3 has all 5 nodes: nothing is filled
    assert not (logits[3] == 123.0).any()
    assert torch.equal(logits[:, -1], out["stop"])


def test_log_probs_and_entropy_match_per_graph_reference():
    out, logits, mask, keys, legal = make_batch(1)
    dist = GraphCategorical(logits, mask)
    ref = reference(out, legal)
    for b, table in enumerate(ref):
        legal_actions = mask[b].nonzero().flatten().tolist()
        assert len(legal_actions) == len(table)
        for a in legal_actions:
            got = float(dist.log_prob(torch.full((len(ref),), a))[b])
            assert got == pytest.approx(table[keys[a]], abs=1e-5)
        entropy = -sum(math.exp(lp) * lp for lp in table.values())
        assert float(dist.entropy()[b]) == pytest.approx(entropy, abs=1e-5)
    assert torch.isinf(dist.log_probs[~mask]).all()


def test_sample_counts_match_per_graph_reference():
    torch.manual_seed(0)
    out, logits, mask, keys, legal = make_batch(2)
    ref = reference(out, legal)
    draws = 20000
    dist = GraphCategorical(logits.repeat(draws, 1), mask.repeat(draws, 1))
    samples = dist.sample().view(draws, len(ref))
    for b, table in enumerate(ref):
        counts = torch.bincount(samples[:, b], minlength=LAYOUT.size).float() / draws
        assert mask[b][counts > 0].all()
        for a in mask[b].nonzero().flatten().tolist():
            p = math.exp(table[keys[a]])
            assert abs(float(counts[a]) - p) < 5 * math.sqrt(p * (1 - p) / draws) + 1e-3


def test_categorical_rejects_rows_without_legal_actions():
    with pytest.raises(ValueError, match="at least one legal action"):
        GraphCategorical(torch.zeros(2, 3), torch.tensor([[True, False, False], [False] * 3]))

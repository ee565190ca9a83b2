"""Graph environments: the state batch, canonical keys, automorphisms, forward/backward
consistency, featurization, the graph transformer, and the symmetry correction checked exactly."""

import itertools
import math
import random

import networkx as nx
import pytest
import torch
from gflow.envs.graph_symmetry import SymmetryCorrected, automorphism_count, canonical_key
from gflow.envs.graphs import GraphEnv, GraphStates, bridges

from gflow.conditioning import ConditionalEnv, Conditioning, TemperatureDistribution
from gflow.exact import distribution_errors, exact_report, state_graph, terminal_distribution
from gflow.objectives import get_objective
from gflow.policies.base import Policy, PolicyOutput
from gflow.policies.graph_transformer import GraphTransformerPolicy
from gflow.sampling import sample_backward, sample_forward
from gflow.scoring import score


def assert_consistent(env, states) -> int:
    """Every legal forward action is undone by its backward action, and every legal backward
    action is redone by its forward action, up to isomorphism (canonical keys); returns the
    number of backward actions checked."""
    keys = env.keys(states)
    moves = env.forward_mask(states)
    moves[:, env.stop] = False
    row, action = moves.nonzero(as_tuple=True)
    parents = env.select(states, row)
    children = env.step(parents, action)
    back = env.backward_action(parents, action)
    assert env.backward_mask(children)[torch.arange(len(row)), back].all()
    assert env.keys(env.backward_step(children, back)) == [keys[i] for i in row.tolist()]
    assert torch.equal(env.forward_action(children, back), action)
    assert all(child != keys[i] for child, i in zip(env.keys(children), row.tolist(), strict=True))
    row, back = env.backward_mask(states).nonzero(as_tuple=True)
    here = env.select(states, row)
    parents = env.backward_step(here, back)
    action = env.forward_action(here, back)
    assert env.forward_mask(parents)[torch.arange(len(row)), action].all()
    assert env.keys(env.step(parents, action)) == [keys[i] for i in row.tolist()]
    assert torch.equal(env.is_initial(states), states.n_nodes == 0)
    return len(row)


def edge_reward(states: GraphStates) -> torch.Tensor:
    """An isomorphism-invariant log reward: edges and type-1 nodes are rewarded."""
    edges = (states.edges >= 0).sum((1, 2)) / 2
    return 0.6 * edges + 0.8 * (states.nodes == 1).sum(1) - 0.2 * states.n_nodes


# --- state batch, keys, automorphisms ------------------------------------------------------


def test_state_batch_operations():
    env = GraphEnv(node_types=2, max_nodes=3)
    s0 = env.initial(2)
    one = env.step(s0, torch.tensor([0, 1]))
    assert one.n_nodes.tolist() == [1, 1] and one.nodes[:, 0].tolist() == [0, 1]
    both = env.cat([s0, one])
    assert env.size(both) == 4
    picked = env.select(both, torch.tensor([False, False, True, True]))
    assert torch.equal(picked.nodes, one.nodes)
    mixed = env.where(torch.tensor([True, False]), one, s0)
    assert mixed.n_nodes.tolist() == [1, 0]


def random_labelled_graph(rng: random.Random, n: int, directed: bool) -> tuple[list, dict]:
    labels = [rng.randint(0, 1) for _ in range(n)]
    edges = {}
    for u, v in itertools.combinations(range(n), 2):
        if rng.random() < 0.5:
            edges[u, v] = rng.randint(0, 1)
            edges[v, u] = rng.randint(0, 1) if directed else edges[u, v]
    return labels, edges


def brute_force_automorphisms(labels: list, edges: dict) -> int:
    n = len(labels)
    return sum(
        all(labels[p[i]] == labels[i] for i in range(n))
        and all(edges.get((p[u], p[v])) == label for (u, v), label in edges.items())
        for p in itertools.permutations(range(n))
    )


def test_automorphism_counts_match_brute_force():
    rng = random.Random(0)
    for trial in range(300):
        labels, edges = random_labelled_graph(rng, rng.randint(0, 6), directed=trial % 2 == 1)
        assert automorphism_count(labels, edges) == brute_force_automorphisms(labels, edges)


def test_automorphism_count_of_a_highly_symmetric_tree():
    """C(C(C)(C)C)4 as an unlabelled tree: (3!)^4 * 4! automorphisms."""
    edges = {}
    for k in range(4):
        hub = 1 + 4 * k
        for u, v in [(0, hub)] + [(hub, hub + 1 + m) for m in range(3)]:
            edges[u, v] = edges[v, u] = 0
    assert automorphism_count([0] * 17, edges) == 6**4 * 24


def test_canonical_keys_are_invariant_and_separate_classes():
    rng = random.Random(1)
    seen: dict[str, nx.DiGraph] = {}
    for trial in range(400):
        labels, edges = random_labelled_graph(rng, rng.randint(1, 5), directed=trial % 2 == 1)
        perm = list(range(len(labels)))
        rng.shuffle(perm)
        moved = [0] * len(labels)
        for i, p in enumerate(perm):
            moved[p] = labels[i]
        moved_edges = {(perm[u], perm[v]): label for (u, v), label in edges.items()}
        key = canonical_key(labels, edges)
        assert key == canonical_key(moved, moved_edges)
        graph = nx.DiGraph()
        graph.add_nodes_from((i, {"label": x}) for i, x in enumerate(labels))
        graph.add_edges_from((u, v, {"label": x}) for (u, v), x in edges.items())
        if key in seen:
            assert nx.is_isomorphic(
                seen[key], graph, node_match=dict.__eq__, edge_match=dict.__eq__
            )
        seen[key] = graph


def isomorphism_classes(node_types: int, max_nodes: int, connected: bool) -> int:
    """Count typed graphs with up to max_nodes nodes up to isomorphism, by brute force."""
    classes: dict[tuple, list[nx.Graph]] = {}
    for n in range(max_nodes + 1):
        pairs = list(itertools.combinations(range(n), 2))
        for types in itertools.product(range(node_types), repeat=n):
            for chosen in itertools.product([False, True], repeat=len(pairs)):
                g = nx.Graph()
                g.add_nodes_from((i, {"type": t}) for i, t in enumerate(types))
                g.add_edges_from(p for p, c in zip(pairs, chosen, strict=True) if c)
                if connected and n and not nx.is_connected(g):
                    continue
                bucket = classes.setdefault((n, tuple(sorted(types)), g.number_of_edges()), [])
                match = lambda a, b: a["type"] == b["type"]  # noqa: E731
                if not any(nx.is_isomorphic(g, h, node_match=match) for h in bucket):
                    bucket.append(g)
    return sum(len(b) for b in classes.values())


@pytest.mark.parametrize("connected", [False, True])
def test_enumeration_lists_every_isomorphism_class_once(connected):
    env = GraphEnv(node_types=2, max_nodes=4, connected=connected)
    states = env.enumerate_states()
    assert len(set(env.keys(states))) == len(states)
    assert len(states) == isomorphism_classes(2, 4, connected)


# --- consistency, conversion, features -----------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        dict(node_types=2, max_nodes=4),
        dict(node_types=2, max_nodes=4, connected=True, edge_types=2),
        dict(node_types=1, max_nodes=3, node_attrs=2, edge_attrs=1, edge_types=2),
        dict(node_types=2, max_nodes=3, node_attrs=1, edge_attrs=2, connected=True),
    ],
)
def test_forward_and_backward_steps_are_consistent(options):
    env = GraphEnv(**options)
    states = env.enumerate_states()
    assert assert_consistent(env, states) > 0
    assert not env.backward_mask(env.initial(1)).any()


def test_connected_env_never_disconnects():
    env = GraphEnv(node_types=2, max_nodes=4, connected=True)
    states = env.enumerate_states()
    assert all(nx.is_connected(g) for g in env.to_networkx(states) if g.number_of_nodes())


def test_bridges_match_networkx():
    rng = random.Random(2)
    graphs = []
    while len(graphs) < 50:
        g = nx.gnp_random_graph(rng.randint(2, 7), 0.45, seed=rng.randint(0, 10**6))
        if nx.is_connected(g):
            nx.set_node_attributes(g, 0, "type")
            nx.set_edge_attributes(g, 0, "type")
            graphs.append(g)
    env = GraphEnv(node_types=1, max_nodes=7, connected=True)
    found = bridges(env.from_networkx(graphs))
    for b, g in enumerate(graphs):
        expected = {frozenset(e) for e in nx.bridges(g)}
        got = {frozenset((u, v)) for u, v in found[b].nonzero().tolist()}
        assert got == expected


def test_networkx_round_trip():
    env = GraphEnv(node_types=2, max_nodes=3, node_attrs=1, edge_attrs=1, edge_types=2)
    states = env.enumerate_states()
    back = env.from_networkx(env.to_networkx(states))
    for name in ("nodes", "edges", "node_attr", "edge_attr"):
        assert torch.equal(getattr(back, name), getattr(states, name))


def test_featurize_builds_one_batch():
    env = GraphEnv(node_types=2, max_nodes=4, edge_types=2)
    states = env.enumerate_states()
    batch = env.featurize(states)
    counts = states.n_nodes
    assert batch.num_graphs == len(states)
    assert batch.x.shape == (int(counts.sum()), env.node_feature_dim)
    assert batch.edge_index.shape[1] == int((states.edges >= 0).sum())
    assert batch.edge_attr.shape == (batch.edge_index.shape[1], env.edge_feature_dim)
    assert batch.pair_index.shape[1] == int((counts * (counts - 1) // 2).sum())
    assert torch.equal(batch.batch[batch.edge_index[0]], batch.batch[batch.edge_index[1]])
    assert torch.equal(batch.node_slot, torch.cat([torch.arange(int(c)) for c in counts]))


# --- graph transformer ---------------------------------------------------------------------


def permuted(states: GraphStates, perm: torch.Tensor) -> GraphStates:
    """The same graphs with node i moved to perm[i] (perm fixes padding slots)."""
    inverse = torch.argsort(perm)
    return GraphStates(
        states.nodes[:, inverse],
        states.edges[:, inverse][:, :, inverse],
        states.node_attr[:, inverse],
        states.edge_attr[:, inverse][:, :, inverse],
    )


def test_graph_transformer_is_permutation_equivariant():
    torch.manual_seed(0)
    env = GraphEnv(node_types=2, max_nodes=4, connected=True, node_attrs=1, edge_attrs=1)
    graphs = [nx.Graph(), nx.Graph()]
    graphs[0].add_nodes_from([(0, {"type": 0}), (1, {"type": 1, "attr": 1}), (2, {"type": 0})])
    graphs[0].add_node(3, type=1)
    graphs[0].add_edges_from([(0, 1, {"type": 0}), (1, 2, {"type": 0, "attr": 1})])
    graphs[0].add_edge(2, 3, type=0)
    graphs[1].add_nodes_from((i, {"type": i % 2}) for i in range(4))
    graphs[1].add_edges_from([(0, 1), (0, 2), (0, 3), (2, 3)], type=0)
    states = env.from_networkx(graphs)
    policy = GraphTransformerPolicy.for_env(env, hidden=32, layers=2, heads=4, learn_pb=True)
    perm = torch.tensor([2, 0, 3, 1])
    out, moved = policy(env.featurize(states)), policy(env.featurize(permuted(states, perm)))
    layout = env.forward_layout
    act = layout.decode(torch.arange(layout.size))
    image = act.kind.clone()
    mapped = torch.arange(layout.size)
    node = act.kind == 1
    mapped[node] = layout.node_action(perm[act.node[node]], act.sub[node])
    pair = act.kind == 2
    mapped[pair] = layout.pair_action(perm[act.node[pair]], perm[act.other[pair]], act.sub[pair])
    assert image.shape == mapped.shape
    torch.testing.assert_close(
        moved.forward_logits[:, mapped], out.forward_logits, atol=1e-4, rtol=0
    )
    torch.testing.assert_close(moved.log_flow, out.log_flow, atol=1e-4, rtol=0)
    assert out.backward_logits.shape == (len(states), env.n_backward)


def test_graph_transformer_conditioning_and_log_z():
    env = GraphEnv(node_types=2, max_nodes=3)
    policy = GraphTransformerPolicy.for_env(env, hidden=16, layers=1, heads=2, cond_dim=3)
    states = env.enumerate_states()
    cond = torch.randn(len(states), 3)
    out = policy(env.featurize(states), cond)
    assert out.forward_logits.shape == (len(states), env.n_actions)
    assert policy.log_z(cond, len(states)).shape == (len(states),)
    with pytest.raises(ValueError, match="conditional"):
        policy(env.featurize(states))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_transformer_runs_on_cuda():
    env = GraphEnv(node_types=2, max_nodes=4, device="cuda")
    policy = GraphTransformerPolicy.for_env(env, hidden=32, layers=2).cuda()
    rollout = sample_forward(env, policy, 16)
    assert score(env, policy, rollout).log_pf.is_cuda


# --- symmetry correction -------------------------------------------------------------------


def test_symmetry_correction_adds_log_automorphisms_after_tempering():
    env = GraphEnv(node_types=1, max_nodes=3, log_reward_fn=edge_reward)
    states = env.enumerate_states()
    corrected = SymmetryCorrected(env)
    aut = torch.tensor([math.log(automorphism_count(*g)) for g in env.labeled_graphs(states)])
    torch.testing.assert_close(corrected.log_reward(states), env.log_reward(states) + aut)
    conditioning = Conditioning(temperature=TemperatureDistribution("uniform", (1.0, 4.0)))
    tempered = SymmetryCorrected(ConditionalEnv(env, conditioning))
    cond = conditioning.sample(len(states))
    beta = conditioning.decode(cond).beta
    assert tempered.conditional
    torch.testing.assert_close(
        tempered.log_reward(states, cond), beta * env.log_reward(states) + aut
    )
    assert corrected.forward_layout is env.forward_layout


class TransitionTable(GraphEnv):
    """Featurizes a state as ids of its isomorphism class and of the (class, child class) pair
    each action leads to, so that a table policy over those ids is equivariant by construction
    and can represent any policy over isomorphism classes."""

    def __init__(self, **options):
        super().__init__(**options)
        self.ids: dict = {}
        self.rows: dict = {}

    def featurize(self, states: GraphStates) -> torch.Tensor:
        raw = torch.cat([states.nodes, states.edges.flatten(1)], dim=1).tolist()
        for b, key in enumerate(map(tuple, raw)):
            if key not in self.rows:
                self.rows[key] = self._row(states.index(torch.tensor([b])))
        return torch.stack([self.rows[key] for key in map(tuple, raw)])

    def _row(self, one: GraphStates) -> torch.Tensor:
        key = self.keys(one)[0]
        mask = self.forward_mask(one)[0]
        row = torch.full((1 + self.n_actions,), -1)
        row[0] = self.ids.setdefault(key, len(self.ids))
        moves = mask.nonzero().flatten()
        moves = moves[moves != self.stop]
        children = self.keys(self.step(one.index(torch.zeros(len(moves), dtype=torch.long)), moves))
        for a, child in zip(moves.tolist(), children, strict=True):
            row[1 + a] = self.ids.setdefault((key, child), len(self.ids))
        if mask[self.stop]:
            row[-1] = self.ids.setdefault((key, "stop"), len(self.ids))
        return row


class TablePolicy(Policy):
    """Logits and flows looked up in a table by the ids of `TransitionTable`."""

    def __init__(self, size: int = 5000):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(size))
        self.flows = torch.nn.Parameter(torch.zeros(size))
        self.log_z_param = torch.nn.Parameter(torch.zeros(1))

    def forward(self, features: torch.Tensor, cond: torch.Tensor | None = None) -> PolicyOutput:
        ids = features[:, 1:]
        logits = torch.where(ids >= 0, self.logits[ids.clamp(min=0)], 0.0)
        return PolicyOutput(logits, None, self.flows[features[:, 0]])

    def log_z(self, cond: torch.Tensor | None, n: int) -> torch.Tensor:
        return self.log_z_param.expand(n)

    def log_z_parameters(self) -> list[torch.nn.Parameter]:
        return [self.log_z_param]


def train_tb(env, policy, steps: int, lr: float, log_z_lr: float, batch: int = 32) -> None:
    objective = get_objective("tb")
    log_z = {id(p) for p in policy.log_z_parameters()}
    optimizer = torch.optim.Adam(
        [
            {"params": [p for p in policy.parameters() if id(p) not in log_z], "lr": lr},
            {"params": policy.log_z_parameters(), "lr": log_z_lr},
        ]
    )
    for _ in range(steps):
        rollout = sample_forward(env, policy, batch, epsilon=0.1)
        loss = objective.loss(score(env, policy, rollout))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_symmetry_correction_targets_reward_over_isomorphism_classes():
    """Exact check on graphs of up to 4 nodes of 2 types (119 isomorphism classes): with the
    correction, TB learns P(x) = R(x)/Z over classes; without it, P(x) is R(x)/|Aut(x)| / Z'."""
    results = {}
    for corrected in (True, False):
        torch.manual_seed(0)
        env = TransitionTable(node_types=2, max_nodes=4, log_reward_fn=edge_reward)
        policy = TablePolicy()
        train_tb(SymmetryCorrected(env) if corrected else env, policy, 250, 0.1, 0.1)
        graph = state_graph(env)
        results[corrected] = (exact_report(env, policy, graph), graph, env, policy)
    assert results[True][0]["exact_tv"] < 0.05
    assert abs(results[True][0]["log_z_error"]) < 0.05
    assert results[False][0]["exact_tv"] > 0.2
    _, graph, env, policy = results[False]
    learned = terminal_distribution(graph, env, policy)
    biased = env.log_reward(graph.states).double() - env.log_automorphisms(graph.states).double()
    stoppable = graph.forward_mask[:, env.stop]
    biased = torch.where(stoppable, biased, -math.inf).softmax(0)
    assert distribution_errors(learned, biased)["tv"] < 0.05


def test_short_tb_run_with_the_graph_transformer_improves_the_exact_fit():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    env = GraphEnv(node_types=2, max_nodes=3, log_reward_fn=edge_reward)
    policy = GraphTransformerPolicy.for_env(env, hidden=32, layers=2, heads=2)
    graph = state_graph(env)
    before = exact_report(env, policy, graph)["exact_tv"]
    train_tb(SymmetryCorrected(env), policy, 100, 3e-3, 5e-2)
    after = exact_report(env, policy, graph)["exact_tv"]
    assert after < 0.5 * before


@pytest.mark.slow
def test_graph_transformer_reaches_the_target_over_isomorphism_classes():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    env = GraphEnv(node_types=2, max_nodes=4, log_reward_fn=edge_reward)
    policy = GraphTransformerPolicy.for_env(env, hidden=64, layers=3, heads=4)
    train_tb(SymmetryCorrected(env), policy, 2000, 3e-3, 5e-2)
    train_tb(SymmetryCorrected(env), policy, 500, 3e-4, 5e-3)
    assert exact_report(env, policy)["exact_tv"] < 0.05


def assert_chains(env, rollout) -> None:
    """Each trajectory starts at s0, each forward action leads from s_t to a graph isomorphic to
    s_t+1 (actions refer to the labelling of s_t), the last state is the object, then stop."""
    mask = rollout.state_mask
    owner = torch.arange(mask.shape[0]).expand(mask.shape[1], -1)[mask.T]
    step = torch.arange(mask.shape[1])[:, None].expand(-1, mask.shape[0])[mask.T]
    here = (step + 1 < rollout.lengths[owner]) & rollout.done[owner]
    index = here.nonzero().flatten()
    action = rollout.actions[owner[index], step[index]]
    following = {(int(b), int(t)): i for i, (b, t) in enumerate(zip(owner, step, strict=True))}
    after = torch.tensor([following[int(owner[i]), int(step[i]) + 1] for i in index])
    moved = env.step(env.select(rollout.states, index), action)
    assert env.keys(moved) == env.keys(env.select(rollout.states, after))
    assert env.is_initial(env.select(rollout.states, step == 0)).all()
    last = rollout.actions[torch.arange(len(rollout.lengths)), rollout.lengths - 1]
    assert (last[rollout.done] == env.stop).all()
    final = torch.tensor([following[b, int(rollout.lengths[b]) - 1] for b in range(len(last))])
    assert env.keys(env.select(rollout.states, final)) == env.keys(rollout.terminal)


def test_forward_and_backward_rollouts_are_chains_up_to_isomorphism():
    torch.manual_seed(3)
    env = GraphEnv(node_types=2, max_nodes=5, connected=True, node_attrs=1, edge_attrs=1)
    policy = GraphTransformerPolicy.for_env(env, hidden=16, layers=1, heads=2, learn_pb=True)
    forward = sample_forward(env, policy, 32, epsilon=1.0)
    assert_chains(env, forward)
    for backward_policy in (None, policy):
        rollout = sample_backward(env, backward_policy, forward.terminal)
        assert_chains(env, rollout)
        traj = score(env, policy, rollout)
        assert torch.isfinite(traj.log_pf).all() and torch.isfinite(traj.log_pb).all()

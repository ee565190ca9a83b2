"""Order-preserving objectives: order targets and losses by hand, scoring of objective values,
and exact checks that training preserves the order and concentrates on the maximal objects."""

import math
import time

import pytest
import torch
from gflow.envs.hypergrid import HyperGrid

from gflow.exact import state_graph, terminal_distribution
from gflow.objectives import (
    get_objective,
    order_preserving_detailed_balance,
    order_preserving_subtrajectory_balance,
    order_preserving_trajectory_balance,
)
from gflow.objectives.order_preserving import maximal_targets, preference_matrix
from gflow.policies.mlp import MLPPolicy
from gflow.sampling import masked_log_softmax, sample_forward
from gflow.scoring import score
from gflow.trajectories import Trajectories


def test_pareto_preferences_and_maximal_objects():
    objectives = torch.tensor([[1.0, 2.0], [2.0, 1.0], [0.0, 0.0], [2.0, 2.0]])
    beats = preference_matrix(objectives)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[3, :3] = True  # (2, 2) dominates every other point
    expected[0, 2] = expected[1, 2] = True
    assert torch.equal(beats, expected)
    groups = torch.tensor([[True, True], [True, True], [True, True], [True, False]])
    targets = maximal_targets(beats, groups)
    assert torch.equal(targets[:, 0], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert torch.equal(targets[:, 1], torch.tensor([0.5, 0.5, 0.0, 0.0]))  # without (2, 2)


def tiny_batch() -> Trajectories:
    """Complete s0 -> s1 -> stop, complete s0 -> stop, complete s0 -> s1 -> stop, and an
    incomplete s0 -> s1; objective values 0.5, 0.9, 0.9 (a tie at the top) and a meaningless 7."""
    return Trajectories(
        log_pf=torch.tensor([[-0.5, -1.0], [-0.2, 0.0], [-0.4, -0.6], [-0.7, 0.0]]),
        log_pb=torch.tensor([[-0.3, 0.0], [0.0, 0.0], [-0.2, 0.0], [-0.1, 0.0]]),
        log_flow=torch.tensor([[1.0, 0.7, 5.0], [1.0, 5.0, 0.0], [1.0, 0.5, 5.0], [1.0, 0.3, 0.0]]),
        log_z=torch.ones(4),
        log_reward=torch.zeros(4),
        lengths=torch.tensor([2, 1, 2, 1]),
        done=torch.tensor([True, True, True, False]),
        reward_components=torch.tensor([[0.5], [0.9], [0.9], [7.0]]),
        backward_kl=torch.tensor([[0, 0.2, 0], [0, 0, 0], [0, 0.4, 0], [0, 0.3, 0]]),
    )


TB_LOG_R = [1.0 - 0.5 - 1.0 + 0.3, 1.0 - 0.2, 1.0 - 0.4 - 0.6 + 0.2]
DB_LOG_R = [0.7 - 1.0, 1.0 - 0.2, 0.5 - 0.6]  # log F(x) + log P_F(stop | x)
MOVES = [1.0 - 0.5 - 0.7 + 0.3, 1.0 - 0.4 - 0.5 + 0.2, 1.0 - 0.7 - 0.3 + 0.1]  # non-terminal DB


def set_kl(log_r: list[float], target: list[float]) -> float:
    """KL(target || softmax(log_r)) by hand."""
    norm = math.log(sum(math.exp(v) for v in log_r))
    return sum(p * (math.log(p) - (v - norm)) for p, v in zip(target, log_r, strict=True) if p > 0)


def pair_kl(d: float, t: float) -> float:
    """KL from Bernoulli(t) to Bernoulli(sigmoid(d)) by hand."""
    q = 1 / (1 + math.exp(-d))
    return sum(a * math.log(a / b) for a, b in ((t, q), (1 - t, 1 - q)) if a > 0)


def test_op_tb_by_hand():
    value = order_preserving_trajectory_balance(tiny_batch()).item()
    assert value == pytest.approx(set_kl(TB_LOG_R, [0.0, 0.5, 0.5]))


def test_op_tb_pairwise_by_hand():
    r = TB_LOG_R
    target = {(0, 1): 0.0, (0, 2): 0.0, (1, 2): 0.5}  # 0 loses to both, 1 and 2 tie
    terms = [pair_kl(r[i] - r[j], t) + pair_kl(r[j] - r[i], 1 - t) for (i, j), t in target.items()]
    value = order_preserving_trajectory_balance(tiny_batch(), pairwise=True).item()
    assert value == pytest.approx(sum(terms) / 6)


def test_op_db_by_hand():
    balance = sum(r * r for r in MOVES) / 3
    expected = balance + 0.1 * set_kl(DB_LOG_R, [0.0, 0.5, 0.5])
    assert order_preserving_detailed_balance(tiny_batch(), lam_op=0.1).item() == pytest.approx(
        expected
    )


def test_op_subtb_by_hand():
    lam = 0.5
    # one-transition sub-trajectories end with every stop (the DB form); two-transition ones
    # exist for the first and third objects only, and there 0.9 beats 0.5
    one, two = set_kl(DB_LOG_R, [0.0, 0.5, 0.5]), set_kl(TB_LOG_R[::2], [0.0, 1.0])
    order = (one + lam * two) / (1 + lam)
    balance = sum(r * r for r in MOVES) / 3  # one pair of states per trajectory that has one
    value = order_preserving_subtrajectory_balance(tiny_batch(), lam=lam, lam_op=0.1).item()
    assert value == pytest.approx(balance + 0.1 * order)


def test_backward_kl_term_and_custom_order():
    batch = tiny_batch()
    kl = (0.2 + 0.4 + 0.3) / 3  # mean over the real states after s0
    plain = order_preserving_trajectory_balance(batch).item()
    assert order_preserving_trajectory_balance(batch, backward_kl=2.0).item() == pytest.approx(
        plain + 2.0 * kl
    )
    smaller_first = get_objective("op-tb", prefer=lambda a, b: a[..., 0] < b[..., 0])
    assert smaller_first.loss(batch).item() == pytest.approx(set_kl(TB_LOG_R, [1.0, 0.0, 0.0]))


def test_bad_orders_and_batches_raise():
    batch = tiny_batch()
    with pytest.raises(ValueError, match="not a strict order"):
        order_preserving_trajectory_balance(batch, prefer=lambda a, b: a[..., 0] <= b[..., 0])
    with pytest.raises(ValueError, match="bool tensor"):
        order_preserving_trajectory_balance(batch, prefer=lambda a, b: a[..., 0] - b[..., 0])
    batch.reward_components = torch.tensor([[0.5], [math.nan], [0.9], [7.0]])
    with pytest.raises(ValueError, match="NaN"):
        order_preserving_trajectory_balance(batch)
    batch.reward_components = None
    with pytest.raises(ValueError, match="reward_components"):
        order_preserving_detailed_balance(batch)
    batch = tiny_batch()
    batch.done = torch.zeros(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="complete trajectory"):
        order_preserving_subtrajectory_balance(batch)


class TwoObjectiveGrid(HyperGrid):
    """A hypergrid whose objects are compared by their two coordinates (Pareto order)."""

    def reward_components(self, states: torch.Tensor) -> torch.Tensor:
        return states.float()


def test_score_provides_objectives_and_backward_kl():
    torch.manual_seed(0)
    env = TwoObjectiveGrid(2, 5)
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=16, learn_pb=True)
    rollout = sample_forward(env, policy, 16, max_steps=4)
    assert rollout.done.any() and (~rollout.done).any()
    traj = score(env, policy, rollout, {"reward_components", "backward_kl"})
    assert torch.equal(traj.reward_components[rollout.done], rollout.terminal[rollout.done].float())
    plain = score(HyperGrid(2, 5), policy, rollout, {"reward_components", "backward_kl"})
    assert torch.equal(plain.reward_components[:, 0], rollout.log_reward)
    t, b = rollout.state_mask.T.nonzero(as_tuple=True)
    with torch.no_grad():
        out = policy(env.featurize(rollout.states))
    mask = env.backward_mask(rollout.states)
    log_pb = masked_log_softmax(out.backward_logits, mask)
    for i in range(len(t)):
        legal = log_pb[i][mask[i]]
        expected = float((-math.log(len(legal)) - legal).mean()) if len(legal) else 0.0
        assert traj.backward_kl[b[i], t[i]].item() == pytest.approx(expected, abs=1e-6)
    uniform = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=16)
    assert not score(env, uniform, rollout, {"reward_components", "backward_kl"}).backward_kl.any()


def train(name: str, pairwise: bool, epsilon: float, steps: int = 300, every: int = 50) -> dict:
    """OP training on hypergrid 2D H=8 with a minimal loop (one thread: tiny matrices on shared
    cores); the exact mass on the maximal objects at every checkpoint, the seen objects, and the
    final exact P_T."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(name, pairwise, epsilon, steps, every)
    finally:
        torch.set_num_threads(threads)


def _train(name: str, pairwise: bool, epsilon: float, steps: int, every: int) -> dict:
    torch.manual_seed(0)
    env = HyperGrid(2, 8, r0=0.1)
    graph = state_graph(env)
    log_r = env.log_reward(graph.states)
    top = log_r == log_r.max()
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=64)
    log_z = policy.log_z_parameters()
    rest = [p for p in policy.parameters() if all(p is not q for q in log_z)]
    opt = torch.optim.Adam([{"params": rest, "lr": 1e-2}, {"params": log_z, "lr": 1e-1}])
    objective = get_objective(name, op_pairwise=pairwise)
    seen = torch.zeros(graph.n, dtype=torch.bool)
    position = {key: i for i, key in enumerate(env.keys(graph.states))}
    mass, start = [float(terminal_distribution(graph, env, policy)[top].sum())], time.perf_counter()
    for step in range(1, steps + 1):
        rollout = sample_forward(env, policy, 32, epsilon=epsilon)
        seen[[position[k] for k in env.keys(rollout.terminal)]] = True
        traj = score(env, policy, rollout, objective.needs)
        loss = objective.loss(traj)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0:
            mass.append(float(terminal_distribution(graph, env, policy)[top].sum()))
    p_t = terminal_distribution(graph, env, policy)
    share = float(log_r[top].exp().sum() / log_r.exp().sum())
    return {"mass": mass, "share": share, "seen": seen, "p_t": p_t, "log_r": log_r,
            "seconds": time.perf_counter() - start}


@pytest.mark.parametrize("name", ["op-tb", "op-db", "op-subtb"])
def test_sampler_concentrates_on_maximal_objects(name):
    """The sparsification of the paper: the exact probability of the 4 maximal objects grows
    during training, far past their share R/Z (0.46) under reward-proportional sampling."""
    result = train(name, pairwise=False, epsilon=0.05)
    mass = result["mass"]
    print(name, [round(m, 3) for m in mass], f"{result['seconds']:.1f}s")
    assert mass[0] < result["share"] < 0.7 < mass[-1]
    half = len(mass) // 2
    assert sum(mass[:half]) / half < sum(mass[half:]) / (len(mass) - half)


@pytest.mark.parametrize("name", ["op-tb", "op-db"])
def test_learned_reward_preserves_order_on_seen_pairs(name):
    """With the pairwise loss and exploration that keeps every object in the batches, the
    learned reward Z P_T(x) orders every pair of seen objects with different rewards as R does."""
    result = train(name, pairwise=True, epsilon=0.3)
    seen = result["seen"]
    p_t, log_r = result["p_t"][seen], result["log_r"][seen]
    better = log_r[:, None] > log_r[None, :]
    print(name, int(seen.sum()), "seen objects", int(better.sum()), "ordered pairs")
    assert int(better.sum()) > 500
    assert (p_t[:, None] > p_t[None, :])[better].all()

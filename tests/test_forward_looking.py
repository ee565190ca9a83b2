"""Forward-looking objectives: values by hand, scoring of energies, and exact convergence from
complete and from incomplete trajectories."""

import time

import pytest
import torch
from gflow.envs.hypergrid import HyperGrid
from gflow.envs.sets import SetGeneration

from gflow.env import Env
from gflow.exact import exact_report, state_graph
from gflow.objectives import (
    detailed_balance,
    forward_looking_detailed_balance,
    forward_looking_subtrajectory_balance,
    get_objective,
    subtrajectory_balance,
)
from gflow.policies.mlp import MLPPolicy
from gflow.sampling import masked_log_softmax, sample_forward
from gflow.scoring import score
from gflow.trajectories import Trajectories

# Two trajectories of 2 transitions. A is complete: s0 -> s1 -> stop, stop legal at s0 and s1.
# B is incomplete: s0 -> s1 -> s2, stop legal at s0 and s2 only. log F~ and E per state:
FT = {"A": [None, 0.3], "B": [None, 0.3, 0.6]}
ENERGY = {"A": [0.5, -0.4], "B": [0.5, 0.1, 0.9]}
LOG_Z, PF_STOP_S0 = 1.0, -2.0
PF = {"A": [-0.5, -1.0], "B": [-0.6, -0.8]}  # A's second transition is the stop
PB = {"A": [-0.3, 0.0], "B": [-0.1, -0.7]}
PF_STOP_B2 = -0.4


def tiny_batch() -> Trajectories:
    """The batch above, with log F = log F~ - E at states after s0 and log Z at s0."""
    flow_a = [LOG_Z, FT["A"][1] - ENERGY["A"][1], -ENERGY["A"][1]]  # sink: log R(s1) = -E(s1)
    flow_b = [LOG_Z, FT["B"][1] - ENERGY["B"][1], FT["B"][2] - ENERGY["B"][2]]
    return Trajectories(
        log_pf=torch.tensor([PF["A"], PF["B"]]),
        log_pb=torch.tensor([PB["A"], PB["B"]]),
        log_flow=torch.tensor([flow_a, flow_b]),
        log_z=torch.tensor([LOG_Z, LOG_Z]),
        log_reward=torch.tensor([-ENERGY["A"][1], 0.0]),
        lengths=torch.tensor([2, 2]),
        done=torch.tensor([True, False]),
        energy=torch.tensor([ENERGY["A"] + [0.0], ENERGY["B"]]),
        log_pf_stop=torch.tensor([[PF_STOP_S0, PF["A"][1], 0.0], [PF_STOP_S0, 0.0, PF_STOP_B2]]),
        can_stop=torch.tensor([[True, True, False], [True, False, True]]),
    )


def move(ft_s: float, pf: float, ft_next: float, pb: float, e_next: float, e_s: float) -> float:
    """The paper's FL-DB residual of one transition."""
    return ft_s + pf - ft_next - pb + e_next - e_s


FT_S0 = LOG_Z + ENERGY["A"][0]  # log F~(s0) = log Z + E(s0): log Z stays the flow of s0
MOVES = [
    move(FT_S0, PF["A"][0], FT["A"][1], PB["A"][0], ENERGY["A"][1], ENERGY["A"][0]),
    move(FT_S0, PF["B"][0], FT["B"][1], PB["B"][0], ENERGY["B"][1], ENERGY["B"][0]),
    move(FT["B"][1], PF["B"][1], FT["B"][2], PB["B"][1], ENERGY["B"][2], ENERGY["B"][1]),
]
STOPS = [FT_S0 + PF_STOP_S0, FT["A"][1] + PF["A"][1], FT_S0 + PF_STOP_S0, FT["B"][2] + PF_STOP_B2]


def test_fl_db_by_hand():
    expected = sum(r * r for r in MOVES + STOPS) / 7
    assert forward_looking_detailed_balance(tiny_batch()).item() == pytest.approx(expected)


def test_fl_subtb_by_hand():
    lam = 0.5
    m, s = MOVES, STOPS
    # (residual, transitions) of every sub-trajectory; a stop edge counts as one transition
    subs_a = [(m[0], 1), (s[0], 1), (s[1], 1), (m[0] + s[1], 2)]
    subs_b = [(m[1], 1), (m[2], 1), (m[1] + m[2], 2), (s[2], 1), (s[3], 1), (m[2] + s[3], 2)]
    subs_b.append((m[1] + m[2] + s[3], 3))

    def mean(subs):
        return sum(lam**k * r * r for r, k in subs) / sum(lam**k for _, k in subs)

    expected = (mean(subs_a) + mean(subs_b)) / 2
    value = forward_looking_subtrajectory_balance(tiny_batch(), lam=lam).item()
    assert value == pytest.approx(expected)


def test_stop_only_at_objects_gives_db_and_subtb():
    """Where stop is legal only at full sets, FL-DB and FL-SubTB are DB and SubTB on the
    forward-looking flows."""
    torch.manual_seed(0)
    env = SetGeneration(6, 3)
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=16, learn_pb=True)
    traj = score(env, policy, sample_forward(env, policy, 16), {"forward_looking_flows"})
    assert torch.equal(traj.can_stop.sum(1), torch.ones(16, dtype=torch.long))
    fl_db = forward_looking_detailed_balance(traj)
    assert fl_db.item() == pytest.approx(detailed_balance(traj).item(), rel=1e-5)
    fl_subtb = forward_looking_subtrajectory_balance(traj, lam=0.8)
    assert fl_subtb.item() == pytest.approx(subtrajectory_balance(traj, lam=0.8).item(), rel=1e-5)


def test_score_builds_forward_looking_flows():
    torch.manual_seed(1)
    env = HyperGrid(2, 5)
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=16)
    rollout = sample_forward(env, policy, 24, max_steps=3)
    assert (~rollout.done).any() and rollout.done.any()
    traj = score(env, policy, rollout, {"forward_looking_flows"})
    plain = score(env, policy, rollout)
    t, b = rollout.state_mask.T.nonzero(as_tuple=True)  # step-major, as rollout.states
    with torch.no_grad():
        out = policy(env.featurize(rollout.states))
        log_pf = masked_log_softmax(out.forward_logits, env.forward_mask(rollout.states))
        log_p_stop = log_pf[:, env.stop]
    energy = env.energy(rollout.states)
    assert torch.allclose(traj.energy[b, t], energy)
    after = t > 0
    assert torch.allclose(traj.log_flow[b[after], t[after]], (out.log_flow - energy)[after])
    assert torch.allclose(traj.log_flow[:, 0], plain.log_flow[:, 0])  # log Z at s0
    sink = rollout.lengths[rollout.done]
    assert torch.equal(traj.log_flow[rollout.done, sink], rollout.log_reward[rollout.done])
    assert traj.can_stop[b, t].all() and traj.can_stop.sum() == len(t)  # stop legal everywhere
    assert torch.allclose(traj.log_pf_stop[b, t], log_p_stop)


class ShiftedEnergy(HyperGrid):
    """A broken environment: its energy is not -log R on terminal states."""

    def energy(self, states: torch.Tensor) -> torch.Tensor:
        return -self.log_reward(states) + 1.0


class NoEnergy(HyperGrid):
    """A hypergrid without intermediate energies."""

    energy = Env.energy


def test_bad_inputs_raise():
    torch.manual_seed(2)
    env = ShiftedEnergy(2, 4)
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=8)
    rollout = sample_forward(env, policy, 8)
    with pytest.raises(ValueError, match="differs from -log R"):
        score(env, policy, rollout, {"forward_looking_flows"})
    with pytest.raises(ValueError, match="flow matching"):
        score(env, policy, rollout, {"edge_flows", "forward_looking_flows"})
    with pytest.raises(ValueError, match="forward_looking_flows"):
        forward_looking_detailed_balance(score(env, policy, rollout))
    with pytest.raises(ValueError, match="forward_looking_flows"):
        forward_looking_subtrajectory_balance(score(env, policy, rollout))
    with pytest.raises(ValueError, match="no intermediate energy"):
        score(NoEnergy(2, 4), policy, rollout, {"forward_looking_flows"})


def train(env: Env, name: str, steps: int, batch: int, max_steps: int | None) -> dict:
    """A minimal loop: `steps` Adam steps of objective `name` on on-policy rollouts cut after
    `max_steps`; returns the exact report, the number of complete trajectories seen and the time."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and the cores are shared
    try:
        return _train(env, name, steps, batch, max_steps)
    finally:
        torch.set_num_threads(threads)


def _train(env: Env, name: str, steps: int, batch: int, max_steps: int | None) -> dict:
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=64)
    log_z = policy.log_z_parameters()
    rest = [p for p in policy.parameters() if all(p is not q for q in log_z)]
    opt = torch.optim.Adam([{"params": rest, "lr": 1e-2}, {"params": log_z, "lr": 1e-1}])
    objective = get_objective(name)
    complete, start = 0, time.perf_counter()
    for _ in range(steps):
        rollout = sample_forward(env, policy, batch, epsilon=0.05, max_steps=max_steps)
        complete += int(rollout.done.sum())
        traj = score(env, policy, rollout, objective.needs)
        loss = objective.loss(traj)
        opt.zero_grad()
        loss.backward()
        opt.step()
    report = exact_report(env, policy, state_graph(env))
    return {**report, "complete": complete, "seconds": time.perf_counter() - start}


@pytest.mark.parametrize("name", ["fl-db", "fl-subtb"])
def test_forward_looking_reaches_target_on_hypergrid(name):
    result = train(HyperGrid(2, 8, r0=0.1), name, steps=300, batch=32, max_steps=None)
    print(name, result)
    assert result["exact_tv"] < 0.05


@pytest.mark.parametrize("name", ["fl-db", "fl-subtb"])
def test_forward_looking_learns_from_incomplete_trajectories_only(name):
    """Rollouts cut after |S| additions never take the stop action, so no batch holds a
    terminal reward; the energies of partial sets and full sets still teach the target."""
    env = SetGeneration(8, 4)
    result = train(env, name, steps=200, batch=32, max_steps=env.set_size)
    print(name, result)
    assert result["complete"] == 0
    assert result["exact_tv"] < 0.05


def test_plain_db_cannot_learn_from_incomplete_trajectories():
    """The control: without energies the same incomplete batches carry no reward."""
    env = SetGeneration(8, 4)
    result = train(env, "db", steps=200, batch=32, max_steps=env.set_size)
    print(result)
    assert result["complete"] == 0
    assert result["exact_tv"] > 0.15

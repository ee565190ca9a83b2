"""Bit-sequence and set environments: rewards, energies, modes, enumeration and exact targets."""

import argparse
import itertools
import math

import pytest
import torch
from gflow.envs.bitseq import BLOCKS, BitSequence
from gflow.envs.registry import ENVIRONMENTS
from gflow.envs.sets import SIZES, SetGeneration

from gflow.cli.envs import add_env_options, env_options
from gflow.exact import exact_report, state_graph, target_distribution, terminal_distribution
from gflow.objectives import get_objective
from gflow.policies.mlp import MLPPolicy
from gflow.sampling import sample_forward
from gflow.scoring import score


def hamming_to_modes(env: BitSequence, bits: list[int]) -> int:
    """Reference: smallest Hamming distance from a full bit list to the modes."""
    return min(sum(a != b for a, b in zip(bits, m, strict=True)) for m in env.modes.int().tolist())


def uniform_policy(env) -> MLPPolicy:
    """A policy whose logits are all zero: uniform over legal actions."""
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=8)
    for p in policy.parameters():
        torch.nn.init.zeros_(p)
    return policy


# --- bit sequences ---------------------------------------------------------------------------


def test_bitseq_modes_are_distinct_blocks_and_reproducible():
    env = BitSequence()
    assert env.modes.shape == (60, 120)
    assert len({tuple(m) for m in env.modes.int().tolist()}) == 60
    blocks = {tuple(int(c) for c in b) for b in BLOCKS}
    for mode in env.modes.int().tolist():
        assert all(tuple(mode[i : i + 8]) in blocks for i in range(0, 120, 8))
    assert torch.equal(BitSequence(seed=0).modes, env.modes)
    assert not torch.equal(BitSequence(seed=1).modes, env.modes)
    assert len(BitSequence(8, 2).modes) == 5  # only 5 sequences of one block exist


@pytest.mark.parametrize("beta", [1.0, 3.0])
def test_bitseq_reward_at_modes_and_against_reference(beta):
    env = BitSequence(beta=beta)
    at_modes = env.log_reward(env.to_states(env.modes))
    assert torch.allclose(at_modes, torch.full((60,), beta))
    gen = torch.Generator().manual_seed(0)
    flips = torch.rand(40, 120, generator=gen) < torch.linspace(0, 0.5, 40)[:, None]
    bits = (env.modes[torch.arange(40) % 60].bool() ^ flips).float()
    log_r = env.log_reward(env.to_states(bits))
    expected = [beta * (1 - hamming_to_modes(env, row) / 120) for row in bits.int().tolist()]
    assert torch.allclose(log_r, torch.tensor(expected))


def test_bitseq_states_and_bits_round_trip():
    env = BitSequence(16, 4)
    bits = torch.randint(0, 2, (10, 16), generator=torch.Generator().manual_seed(3)).float()
    assert torch.equal(env.bits(env.to_states(bits)), bits)


def test_bitseq_prefix_energy_is_best_completion():
    env = BitSequence(8, 2, beta=2.0)
    states = env.enumerate_states()
    full = env.forward_mask(states)[:, env.stop]
    terminal, term_energy = states[full], env.energy(states[full])
    for state, energy in zip(states, env.energy(states), strict=True):
        placed = int((state >= 0).sum())
        extends = (terminal[:, :placed] == state[:placed]).all(dim=1)
        assert torch.isclose(energy, term_energy[extends].min())
    assert torch.allclose(env.energy(terminal), -env.log_reward(terminal))


def test_bitseq_energy_never_decreases_along_a_trajectory():
    env = BitSequence(beta=2.0)
    state = env.initial(32)
    energy = env.energy(state)
    assert torch.allclose(energy, torch.full((32,), -2.0))
    gen = torch.Generator().manual_seed(1)
    for _ in range(env.n_words):
        state = env.step(state, torch.randint(0, env.vocab, (32,), generator=gen))
        nxt = env.energy(state)
        assert (nxt >= energy - 1e-6).all()
        energy = nxt


def test_bitseq_masks_and_modes_found():
    env = BitSequence(16, 4, mode_threshold=2)
    s0 = env.initial(1)
    assert env.forward_mask(s0).tolist() == [[True] * 16 + [False]]
    full = env.to_states(env.modes[:1])
    assert env.forward_mask(full).tolist() == [[False] * 16 + [True]]
    assert env.backward_mask(s0).tolist() == [[False]] and env.backward_mask(full).tolist() == [
        [True]
    ]
    assert env.modes_found(env.to_states(env.modes)) == len(env.modes)
    near = env.modes[:1].clone()
    near[0, :3] = 1 - near[0, :3]  # 3 bits from mode 0
    hits = env.mode_hits(env.to_states(near))
    expected = [
        sum(a != b for a, b in zip(near[0].tolist(), m, strict=True)) <= 2
        for m in env.modes.tolist()
    ]
    assert hits.tolist() == expected and not hits[0]
    assert env.mode_hits(env.to_states(near), threshold=3)[0]
    assert env.modes_found(env.initial(0)) == 0


@pytest.mark.parametrize(
    "kwargs", [{"length": 12}, {"length": 8, "word_size": 3}, {"length": 0}, {"beta": 0.0}]
)
def test_bitseq_rejects_impossible_settings(kwargs):
    with pytest.raises(ValueError, match="bitseq"):
        BitSequence(**kwargs)


def test_bitseq_enumeration_sizes():
    env = BitSequence(8, 2)
    states = env.enumerate_states()
    assert len(states) == env.n_states() == 1 + 4 + 16 + 64 + 256
    assert int(env.forward_mask(states)[:, env.stop].sum()) == 4**4
    assert not BitSequence().is_enumerable()
    with pytest.raises(ValueError, match="over"):
        BitSequence().enumerate_states()


def test_bitseq_exact_target_and_uniform_sampler():
    env = BitSequence(8, 2, beta=2.0)
    graph = state_graph(env)
    target, log_z = target_distribution(graph, env)
    words = list(itertools.product(range(4), repeat=4))
    log_r = [
        2.0 * (1 - hamming_to_modes(env, [(w >> s) & 1 for w in seq for s in (1, 0)]) / 8)
        for seq in words
    ]
    assert log_z == pytest.approx(math.log(sum(math.exp(v) for v in log_r)))
    assert float(target.sum()) == pytest.approx(1.0)
    p_uniform = terminal_distribution(graph, env, uniform_policy(env))
    stoppable = graph.forward_mask[:, env.stop]
    assert torch.allclose(p_uniform[stoppable], torch.full((256,), 1 / 256, dtype=torch.float64))


# --- sets ------------------------------------------------------------------------------------


def test_sets_reward_is_exp_minus_sum_of_energies():
    env = SetGeneration.preset("small", seed=4)
    assert env.energies.shape == (30,) and env.energies.abs().max() <= 1
    gen = torch.Generator().manual_seed(0)
    members = torch.rand(8, 30, generator=gen).argsort(dim=1)[:, :20]
    states = env.initial(8).scatter(1, members, 1)
    expected = [-sum(float(env.energies[i]) for i in row) for row in members.tolist()]
    assert torch.allclose(env.log_reward(states), torch.tensor(expected), atol=1e-5)
    partial = env.initial(1).scatter(1, members[:1, :5], 1)
    assert float(env.energy(partial)) == pytest.approx(sum(env.energies[members[0, :5]].tolist()))
    assert torch.equal(SetGeneration(30, 20, seed=4).energies, env.energies)
    assert not torch.equal(SetGeneration(30, 20, seed=5).energies, env.energies)


def test_sets_masks_steps_and_presets():
    env = SetGeneration(5, 2)
    s = env.step(env.step(env.initial(1), torch.tensor([3])), torch.tensor([1]))
    assert s.tolist() == [[0, 1, 0, 1, 0]]
    assert env.forward_mask(s).tolist() == [[False] * 5 + [True]]
    one = env.backward_step(s, torch.tensor([3]))
    assert one.tolist() == [[0, 1, 0, 0, 0]]
    assert env.forward_mask(one).tolist() == [[True, False, True, True, True, False]]
    assert env.backward_mask(one).tolist() == [[False, True, False, False, False]]
    assert {
        k: (SetGeneration.preset(k).universe, SetGeneration.preset(k).set_size) for k in SIZES
    } == {
        "small": (30, 20),
        "medium": (80, 60),
        "large": (100, 80),
    }
    with pytest.raises(ValueError, match="unknown sets size"):
        SetGeneration.preset("huge")
    with pytest.raises(ValueError, match="set_size"):
        SetGeneration(3, 4)


def test_sets_exact_target_on_tiny_instance():
    env = SetGeneration(6, 3, seed=2)
    graph = state_graph(env)
    assert graph.n == env.n_states() == 1 + 6 + 15 + 20
    target, log_z = target_distribution(graph, env)
    energies = env.energies.tolist()
    combos = list(itertools.combinations(range(6), 3))
    exact = torch.tensor([math.exp(-sum(energies[i] for i in c)) for c in combos])
    assert log_z == pytest.approx(math.log(float(exact.sum())), rel=1e-6)
    stoppable = graph.forward_mask[:, env.stop]
    members = [tuple(row.nonzero().squeeze(1).tolist()) for row in graph.states[stoppable]]
    assert sorted(members) == combos
    by_set = dict(zip(members, target[stoppable].tolist(), strict=True))
    for c, r in zip(combos, (exact / exact.sum()).tolist(), strict=True):
        assert by_set[c] == pytest.approx(r, rel=1e-5)
    p_uniform = terminal_distribution(graph, env, uniform_policy(env))
    assert torch.allclose(p_uniform[stoppable], torch.full((20,), 1 / 20, dtype=torch.float64))


@pytest.fixture
def one_thread():
    """Small-batch training runs faster on one thread, and much faster on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_tb(env, steps: int) -> dict[str, float]:
    """Trajectory balance for `steps` batches of 64; the exact report of the trained sampler."""
    torch.manual_seed(0)
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=64)
    trunk = [p for name, p in policy.named_parameters() if "log_z" not in name]
    opt = torch.optim.Adam(
        [{"params": trunk, "lr": 1e-3}, {"params": policy.log_z_parameters(), "lr": 1e-1}]
    )
    loss_fn = get_objective("tb").loss
    for _ in range(steps):
        loss = loss_fn(score(env, policy, sample_forward(env, policy, 64, epsilon=0.05)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return exact_report(env, policy)


def test_tb_learns_tiny_sets_exactly(one_thread):
    report = train_tb(SetGeneration(6, 3, seed=2), 300)
    assert report["exact_tv"] < 0.05 and report["log_z_error"] < 0.05


@pytest.mark.slow
def test_tb_learns_tiny_bitseq_exactly(one_thread):
    report = train_tb(BitSequence(8, 2, beta=3.0), 1000)
    assert report["exact_tv"] < 0.05 and report["log_z_error"] < 0.05


# --- registry ---------------------------------------------------------------------------------


def build(name: str, flags: list[str]):
    """An environment built by the registry from command-line flags."""
    parser, spec = argparse.ArgumentParser(), ENVIRONMENTS[name]
    add_env_options(parser, spec)
    return spec(**env_options(parser.parse_args(flags), spec))


def test_registry_builds_bitseq_and_sets():
    bits = build("bitseq", ["--length", "16", "--word-bits", "4", "--exponent", "2"])
    assert (bits.length, bits.word_size, bits.beta, bits.mode_threshold) == (16, 4, 2.0, 4)
    sets = build("sets", ["--size", "medium", "--env-seed", "3"])
    assert (sets.universe, sets.set_size) == (80, 60)
    assert torch.equal(sets.energies, SetGeneration(80, 60, seed=3).energies)
    tiny = build("sets", ["--universe", "6", "--set-size", "3"])
    assert (tiny.universe, tiny.set_size) == (6, 3)

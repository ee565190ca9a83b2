"""Sequence multi-objective environments: token-sequence masks and enumeration, N-gram counts and
normalizers by hand and by brute force, ViennaRNA DNA folding objectives, the environment
checker, exact conditional targets and registry entries."""

import argparse
import itertools
import json
import math

import pytest
import RNA
import torch
from gflow.envs.aptamers import DNAAptamers, structure_counts
from gflow.envs.ngrams import AMINO_ACIDS, NGrams, max_occurrences, smallest_period
from gflow.envs.registry import ENVIRONMENTS
from gflow.envs.sequences import MultiObjectiveSequence, TokenSequence

from gflow.checker import check_env
from gflow.cli import main
from gflow.cli.envs import add_env_options, env_options
from gflow.conditioning import ConditionalEnv, Conditioning, TemperatureDistribution
from gflow.exact import distribution_errors, state_graph, target_distribution, terminal_distribution
from gflow.objectives import get_objective
from gflow.policies.mlp import MLPPolicy
from gflow.sampling import sample_forward
from gflow.scoring import score

HAIRPIN = "GCGCGCGCAAAAGCGCGCGCTTTTTTTTTT"
"""A self-complementary 8-pair stem closed by an AAAA loop, then a T tail."""
TWO_HAIRPINS = "GCGCGAAAGCGCTTTTGCGCGAAAGCGCTT"
"""Two 4-pair GCGC stems with GAAA loops, separated by TTTT."""


def occurrences(text: str, gram: str) -> int:
    """Overlapping occurrences of `gram` in `text`, counted position by position."""
    return sum(text.startswith(gram, i) for i in range(len(text)))


def tiny() -> NGrams:
    """An enumerable instance: alphabet AB, lengths 2 to 4, objectives AB and BA."""
    return NGrams(["AB", "BA"], "AB", 2, 4)


def test_masks_respect_min_and_max_length():
    env = tiny()
    s = env.initial(1)
    stop_legal = []
    for length in range(5):
        mask = env.forward_mask(s)
        stop_legal.append(bool(mask[0, env.stop]))
        assert mask[0, : env.n_tokens].all() == (length < 4)
        assert bool(env.backward_mask(s)[0, 0]) == (length > 0)
        if length < 4:
            s = env.step(s, torch.tensor([length % 2]))
    assert stop_legal == [False, False, True, True, True]
    assert env.to_strings(s) == ["ABAB"]
    assert torch.equal(env.backward_step(s, torch.tensor([0])), env.from_strings(["ABA"]))
    assert env.forward_action(s, torch.tensor([0])).item() == 1


def test_enumeration_and_checker_on_a_tiny_instance():
    env = tiny()
    states = env.enumerate_states()
    assert len(states) == env.n_states() == 1 + 2 + 4 + 8 + 16
    assert len(set(env.keys(states))) == len(states)
    assert check_env(env).enumerated == 31
    assert not NGrams().is_enumerable()
    with pytest.raises(ValueError, match="over"):
        NGrams().enumerate_states()


def test_checker_passes_the_default_tasks():
    assert check_env(NGrams(["AV", "VC", "CA"]), n_trajectories=16).max_length == 37
    assert check_env(DNAAptamers(8, 12), n_trajectories=16).max_length <= 13


def test_strings_round_trip_and_bad_strings_are_named():
    env = NGrams()
    texts = ["AV" * 16, "WYV" * 12, "C" * 33]
    assert env.to_strings(env.from_strings(texts)) == texts
    with pytest.raises(ValueError, match="'B', not in the alphabet"):
        env.from_strings(["AVB"])
    with pytest.raises(ValueError, match="longer than max_length 36"):
        env.from_strings(["A" * 37])
    with pytest.raises(ValueError, match="distinct ASCII"):
        MultiObjectiveSequence("AAB", 1, 2, 1)
    with pytest.raises(ValueError, match="min_length"):
        TokenSequence(4, 5, 3)


def test_ngram_counts_by_hand():
    env = NGrams(["AV", "VC", "A", "AVA"], min_length=4, max_length=12)
    states = env.from_strings(["AVAVCA", "VVVV", "AVCAVAVAA"])
    assert env.counts(states).tolist() == [[2, 1, 3, 1], [0, 0, 0, 0], [3, 1, 5, 2]]
    assert env.scale.tolist() == [6, 6, 12, 5]  # AV, VC, AVA: period 2, A: period 1
    expected = torch.tensor(
        [[2 / 6, 1 / 6, 3 / 12, 1 / 5], [0, 0, 0, 0], [3 / 6, 1 / 6, 5 / 12, 2 / 5]]
    )
    assert torch.allclose(env.reward_components(states), expected)


def test_ngram_counts_match_a_reference_on_random_sequences():
    env = NGrams(["AV", "VC", "CA", "A", "AVA", "CCC"], "AVC", 1, 20)
    gen = torch.Generator().manual_seed(0)
    states = env.initial(200)
    lengths = torch.randint(1, 21, (200,), generator=gen)
    for i, t in enumerate(lengths.tolist()):
        states[i, :t] = torch.randint(0, 3, (t,), generator=gen)
    texts = env.to_strings(states)
    reference = [[occurrences(x, g) for g in env.ngrams] for x in texts]
    assert env.counts(states).tolist() == reference


def test_max_occurrences_is_the_brute_force_maximum():
    length = 7
    texts = ["".join(c) for c in itertools.product("AB", repeat=length)]
    for gram in ["A", "AB", "AA", "ABA", "AAB", "ABAB", "AAA", "ABBA", "BBBBBBBB"]:
        best = max(occurrences(x, gram) for x in texts)
        assert max_occurrences(gram, length) == best, gram
    assert [smallest_period(g) for g in ["A", "AB", "AA", "ABA", "ABAB", "ABC"]] == [
        1,
        2,
        1,
        2,
        2,
        3,
    ]
    assert NGrams(["AV", "AA"]).scale.tolist() == [18, 35]


def test_paper_scaling_clips_at_one():
    env = NGrams(["AV", "VC"], max_count=8)
    states = env.from_strings(["AV" * 16, "AVC" * 11])
    assert env.counts(states).tolist() == [[16, 0], [11, 11]]
    assert torch.equal(env.reward_components(states), torch.tensor([[1.0, 0.0], [1.0, 1.0]]))


def test_scalar_reward_is_the_floored_equal_weight_sum():
    env = NGrams(["AV", "VC"])
    states = env.from_strings(["AV" * 16, "W" * 32, "AVC" * 11])
    r = env.reward_components(states)
    assert torch.allclose(env.log_reward(states), r.mean(1).clamp(min=1e-6).log())
    assert env.log_reward(states)[1].item() == pytest.approx(math.log(1e-6))


def test_objectives_need_complete_sequences():
    env = NGrams()
    with pytest.raises(ValueError, match="at least 32 tokens; row 1 has 31"):
        env.reward_components(env.from_strings(["A" * 32, "A" * 31]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ngrams": []}, "distinct non-empty"),
        ({"ngrams": ["AV", "AV"]}, "distinct non-empty"),
        ({"ngrams": ["AB"]}, "must use the alphabet"),
        ({"ngrams": ["A" * 37]}, "fit in max_length"),
        ({"max_count": 0}, "max_count"),
    ],
)
def test_bad_ngram_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NGrams(**kwargs)


def test_structure_counts_by_hand():
    pairs, hairpins = structure_counts(
        ["((((....))))", "((..((...))..((...))..))", "....", "((...))((...))", "(.(...).)"]
    )
    assert pairs.tolist() == [4, 6, 0, 4, 2]
    assert hairpins.tolist() == [1, 2, 0, 2, 1]  # a multiloop closes two hairpin loops


def test_dna_folding_of_hairpins():
    env = DNAAptamers()
    structures, energies = env.fold([HAIRPIN, TWO_HAIRPINS, "A" * 30])
    assert structures == [
        "((((((((....))))))))..........",
        "((((....))))....((((....))))..",
        "." * 30,
    ]
    assert energies[2] == 0.0
    # ViennaRNA 2.8, DNA Mathews 2004 at 37 C; the RNA default folds HAIRPIN to -17.9
    assert energies[0] == pytest.approx(-13.8, abs=0.05)
    assert RNA.fold(HAIRPIN)[1] < energies[0] - 1
    r = env.reward_components(env.from_strings([HAIRPIN, TWO_HAIRPINS, "A" * 30]))
    expected = [
        [-energies[0] / 60, 8 / 16, 1 / 8],
        [-energies[1] / 60, 8 / 16, 2 / 8],
        [0.0, 0.0, 0.0],
    ]
    assert torch.allclose(r, torch.tensor(expected))


def test_dna_parameters_leave_vienna_global_state_alone():
    before = RNA.fold(HAIRPIN)
    DNAAptamers()
    assert RNA.fold(HAIRPIN) == before


def test_aptamer_objective_subsets_and_scales():
    env = DNAAptamers(objectives=["hairpins", "energy"], scales=[2, 20])
    r = env.reward_components(env.from_strings([HAIRPIN, TWO_HAIRPINS]))
    assert env.n_reward_components == 2
    assert r[:, 0].tolist() == [0.5, 1.0]
    assert r[0, 1].item() == pytest.approx(13.8 / 20, abs=0.003)
    with pytest.raises(ValueError, match="distinct objectives"):
        DNAAptamers(objectives=["energy", "loops"])
    with pytest.raises(ValueError, match="2 positive finite scales"):
        DNAAptamers(objectives=["energy", "pairs"], scales=[1.0])
    with pytest.raises(ValueError, match="temperature"):
        DNAAptamers(temperature=float("nan"))


def test_folding_is_cached_and_deduplicated(monkeypatch):
    env = DNAAptamers(cache_size=2)
    folded = []
    fold = env.fold
    monkeypatch.setattr(env, "fold", lambda seqs: folded.extend(seqs) or fold(seqs))
    first = env.reward_components(env.from_strings([HAIRPIN, HAIRPIN, TWO_HAIRPINS]))
    assert folded == [HAIRPIN, TWO_HAIRPINS]
    again = env.reward_components(env.from_strings([TWO_HAIRPINS, HAIRPIN]))
    assert folded == [HAIRPIN, TWO_HAIRPINS]
    assert torch.equal(again, first[[2, 0]])
    # evicts the least recently used: TWO_HAIRPINS
    env.reward_components(env.from_strings(["A" * 30]))
    env.reward_components(env.from_strings([HAIRPIN, TWO_HAIRPINS]))
    assert folded == [HAIRPIN, TWO_HAIRPINS, "A" * 30, TWO_HAIRPINS]


def brute_force_target(env: NGrams, w: list[float], beta: float) -> dict[str, float]:
    """R(x | w, beta) / Z over every complete sequence, computed string by string."""
    rewards = {}
    for t in range(env.min_length, env.max_length + 1):
        for chars in itertools.product(env.alphabet, repeat=t):
            x = "".join(chars)
            r = [
                min(occurrences(x, g) / float(s), 1.0)
                for g, s in zip(env.ngrams, env.scale, strict=True)
            ]
            rewards[x] = max(sum(wi * ri for wi, ri in zip(w, r, strict=True)), 1e-6) ** beta
    z = sum(rewards.values())
    return {x: v / z for x, v in rewards.items()}


def test_exact_conditional_targets_on_a_tiny_instance():
    env = tiny()
    cond = Conditioning(2, TemperatureDistribution("constant", (2.0,)), beta_encoding="raw")
    graph = state_graph(ConditionalEnv(env, cond))
    texts = env.to_strings(graph.states)
    targets = []
    for w in ([0.2, 0.8], [0.9, 0.1]):
        target, _ = target_distribution(graph, ConditionalEnv(env, cond).at(cond.condition(w)))
        expected = brute_force_target(env, w, 2.0)
        assert len(expected) == 28
        got = {x: p for x, p in zip(texts, target.tolist(), strict=True) if p > 0}
        assert got.keys() == expected.keys()
        assert all(got[x] == pytest.approx(expected[x], rel=1e-6) for x in expected)
        targets.append(target)
    assert distribution_errors(*targets)["tv"] > 0.2


def test_conditional_tb_learns_the_tiny_ngram_targets():
    torch.manual_seed(0)
    env = tiny()
    # a reward floor of 0.05 keeps log R within a few nats, so 400 steps of batch 64 suffice
    cond = Conditioning(
        2, TemperatureDistribution("constant", (2.0,)), beta_encoding="raw", floor=0.05
    )
    cenv = ConditionalEnv(env, cond)
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, 64, cond_dim=cond.cond_dim)
    log_z = policy.log_z_parameters()
    rest = [p for p in policy.parameters() if all(p is not q for q in log_z)]
    opt = torch.optim.Adam([{"params": rest, "lr": 3e-3}, {"params": log_z, "lr": 3e-2}])
    tb = get_objective("tb")
    for _ in range(400):
        rows = cond.sample(64)
        loss = tb.loss(score(cenv, policy, sample_forward(cenv, policy, 64, rows, epsilon=0.05)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    graph = state_graph(cenv)
    targets = []
    for w in ([0.2, 0.8], [0.9, 0.1]):
        c = cond.condition(w)
        target, true_log_z = target_distribution(graph, cenv.at(c))
        learned = terminal_distribution(graph, cenv, policy, c)
        assert distribution_errors(learned, target)["tv"] < 0.1
        assert abs(policy.log_z(c, 1).item() - true_log_z) < 0.2
        targets.append(target)
    # no single (unconditional) distribution is within 0.1 of both targets
    assert distribution_errors(*targets)["tv"] > 0.2


def test_conditional_rewards_of_aptamers():
    env = DNAAptamers()
    cond = Conditioning(3, TemperatureDistribution("constant", (4.0,)))
    rows = cond.condition([0.5, 0.25, 0.25])
    states = env.from_strings([HAIRPIN])
    r = env.reward_components(states)[0]
    expected = 4.0 * math.log(0.5 * r[0] + 0.25 * r[1] + 0.25 * r[2])
    got = ConditionalEnv(env, cond).at(rows).log_reward(states).item()
    assert got == pytest.approx(expected, rel=1e-5)


def build(name: str, argv: list[str]):
    """The registry's environment `name` from command-line flags `argv`, on the CPU."""
    parser, spec = argparse.ArgumentParser(), ENVIRONMENTS[name]
    add_env_options(parser, spec)
    return spec(**env_options(parser.parse_args(argv), spec))


def test_registry_builds_both_tasks():
    ngrams = build("ngrams", ["--ngrams", "AV, VC,CA"])
    assert isinstance(ngrams, NGrams) and ngrams.ngrams == ["AV", "VC", "CA"]
    assert ngrams.alphabet == AMINO_ACIDS and (ngrams.min_length, ngrams.max_length) == (32, 36)
    tiny_args = ["--ngrams", "AB", "--alphabet", "AB", "--max-length", "4", "--min-length", "2"]
    assert build("ngrams", tiny_args).is_enumerable()
    apt = build("dna-aptamers", ["--objectives", "energy"])
    assert isinstance(apt, DNAAptamers) and apt.objective_names == ["energy"]
    assert (apt.min_length, apt.max_length) == (30, 30)


@pytest.mark.parametrize(
    "argv",
    [
        [
            "ngrams",
            "--ngrams",
            "AB,BA",
            "--alphabet",
            "AB",
            "--min-length",
            "2",
            "--max-length",
            "4",
        ],
        ["dna-aptamers", "--min-length", "8", "--max-length", "10", "--objectives", "pairs,energy"],
    ],
    ids=["ngrams", "dna-aptamers"],
)
def test_gflow_train_runs_both_tasks(argv, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--steps", "3", "--batch-size", "8", "--out", str(out), "--quiet", "--threads", "1"]
    assert main(["train", *argv, *common]) == 0
    assert json.loads((out / "metrics.json").read_text())["env"]["name"] == argv[0]
    assert argv[0] in capsys.readouterr().out

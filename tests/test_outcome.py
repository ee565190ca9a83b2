"""OC-GFN: outcome codes, matching and the sparse reward by hand, teleportation by hand, exact
success after pre-training, the exact and amortized marginal after fine-tuning, resume, CLI."""

import json
import math

import pytest
import torch
from gflow.envs.bitseq import BitSequence
from gflow.envs.hypergrid import HyperGrid

import gflow.cli
from gflow.checkpoint import seed_everything
from gflow.exact import distribution_errors, exact_report, state_graph, target_distribution
from gflow.finetune import (
    FinetuneOptions,
    FinetuneTrainer,
    MarginalModel,
    OutcomePosterior,
    build_model,
    conversion_distribution,
    marginal_logits,
    outcome_terms,
)
from gflow.objectives import get_objective
from gflow.objectives.balance import detailed_balance, trajectory_balance
from gflow.objectives.outcome import outcome_objective, teleport
from gflow.outcome import (
    OutcomeConditioning,
    outcome_env,
    relabel,
    success_rates,
    terminal_objects,
)
from gflow.policies.mlp import MLPPolicy
from gflow.pretrain import PretrainOptions, PretrainTrainer
from gflow.sampling import masked_log_softmax, sample_forward
from gflow.training import ModelConfig, TrainConfig, build_policy, start_or_resume
from gflow.trajectories import Trajectories

FAST = dict(batch_size=16, lr=5e-3, lr_log_z=5e-2, epsilon=0.05, top_k=0)


def conditional_policy(env, hidden=32):
    return MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden, 2, env.feature_dim)


def test_exact_match_and_floored_reward():
    env = HyperGrid(2, 4)
    cond = OutcomeConditioning(env, log_floor=-7.0)
    x = torch.tensor([[1, 2], [3, 0], [0, 0]])
    y = torch.tensor([[1, 2], [0, 3], [0, 0]])
    assert cond.matches(x, cond.encode(y)).tolist() == [True, False, True]
    assert cond.log_reward(x, cond.encode(y)).tolist() == [0.0, -7.0, 0.0]
    assert cond.cond_dim == env.feature_dim


def test_custom_match_within_hamming_radius():
    env = BitSequence(8, 2, n_modes=2)

    def near(states, codes):
        return (env.bits(states) != codes).sum(dim=1) <= 1

    cond = OutcomeConditioning(env, encode=env.bits, match=near)
    x = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 3], [3, 3, 3, 3]])
    codes = cond.encode(torch.zeros(4, 4, dtype=torch.long))  # the all-zero sequence
    assert cond.matches(x, codes).tolist() == [True, True, False, False]  # 0, 1, 2, 8 bits off


def test_bad_outcome_inputs_are_named():
    env = HyperGrid(2, 3)
    with pytest.raises(ValueError, match="log_floor must be finite and < 0"):
        OutcomeConditioning(env, log_floor=0.0)
    cond = OutcomeConditioning(env)
    with pytest.raises(ValueError, match=r"outcome codes must be \(2, 6\)"):
        cond.matches(torch.zeros(2, 2, dtype=torch.long), torch.zeros(3, 6))
    with pytest.raises(ValueError, match="pool is empty"):
        cond.sample(1)
    wrong = OutcomeConditioning(env, match=lambda s, c: torch.ones(len(s)))
    with pytest.raises(ValueError, match="match must return"):
        wrong.matches(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 6))
    with pytest.raises(ValueError, match="not one-to-one"):
        outcome_env(env, encode=lambda s: s.sum(1, keepdim=True).float(), enumerate_outcomes=True)
    with pytest.raises(ValueError, match="needs outcome codes"):
        outcome_env(env).log_reward(torch.zeros(1, 2, dtype=torch.long))


class NoReward(HyperGrid):
    """A hypergrid whose own reward must never be evaluated."""

    def log_reward(self, states):
        raise AssertionError("pre-training evaluated the task reward")


def test_pretraining_is_reward_free_and_relabels_in_hindsight():
    env = outcome_env(NoReward(2, 4), enumerate_outcomes=True)
    policy = conditional_policy(env)
    targets = env.conditioning.sample_outcomes(64)
    codes = env.conditioning.encode(targets)
    rollout = sample_forward(env, policy, 64, codes)
    hit = (rollout.terminal == targets).all(dim=1)
    assert rollout.log_reward.tolist() == torch.where(hit, 0.0, -10.0).tolist()
    relabelled = relabel(env, rollout)
    assert torch.equal(relabelled.cond, env.conditioning.encode(rollout.terminal))
    assert (relabelled.log_reward == 0).all() and relabelled.actions is rollout.actions
    at = env.at(codes[:1])
    assert at.log_reward(targets[:1]).item() == 0.0 and not at.conditional


def scored(log_reward):
    """Two hand-made trajectories: 2 moves + stop (log R given), and 1 move + stop (log R 0)."""
    return Trajectories(
        log_pf=torch.tensor([[-0.5, -0.2, -0.1], [-0.3, -0.4, 0.0]]),
        log_pb=torch.tensor([[-0.7, -0.6, 0.0], [-0.9, 0.0, 0.0]]),
        log_flow=torch.tensor([[1.0, 0.4, 0.3, log_reward], [1.0, 0.8, 0.0, 0.0]]),
        log_z=torch.tensor([1.0, 1.0]),
        log_reward=torch.tensor([log_reward, 0.0]),
        lengths=torch.tensor([3, 2]),
        done=torch.tensor([True, True]),
    )


def test_teleportation_by_hand():
    plain, moved = scored(-2.0), teleport(scored(-2.0))
    # a move: F(s) P_F(s'|s) = F(s') P_B(s|s') R(x|y); the stop keeps F(x) P_F(stop|x) = R(x|y)
    f, pf, pb = plain.log_flow[0], plain.log_pf[0], plain.log_pb[0]
    expected = [
        (f[0] + pf[0] - f[1] - pb[0] + 2.0) ** 2,
        (f[1] + pf[1] - f[2] - pb[1] + 2.0) ** 2,
        (f[2] + pf[2] + 2.0) ** 2,
    ]
    other = teleport(scored(-2.0))
    other.done = torch.tensor([True, False])  # leave only the first trajectory's terms
    residual = other.log_flow[0, :-1] + other.log_pf[0] - other.log_flow[0, 1:] - other.log_pb[0]
    assert residual.pow(2).tolist() == pytest.approx([float(e) for e in expected])
    # TB sees R^L: log Z + sum log P_F - sum log P_B - 3 log R
    tb = (plain.log_r_theta[0] + 6.0) ** 2 + (plain.log_r_theta[1]) ** 2
    assert trajectory_balance(moved).item() == pytest.approx(float(tb) / 2)
    hit = scored(0.0)  # a hit (log R = 0) is left as it was
    assert detailed_balance(teleport(hit)).item() == detailed_balance(hit).item()


def test_success_rates_agree_with_sampling():
    seed_everything(0)
    env = outcome_env(HyperGrid(2, 3), enumerate_outcomes=True)
    policy = conditional_policy(env)
    outcomes = terminal_objects(env)[[0, 4, 8]]
    rates = success_rates(state_graph(env), env, policy, outcomes)
    n = 20_000
    for outcome, rate in zip(outcomes, rates, strict=True):
        codes = env.conditioning.encode(outcome.expand(n, -1))
        hits = (sample_forward(env, policy, n, codes).log_reward == 0).float().mean()
        assert abs(float(hits) - float(rate)) < 4 * math.sqrt(0.25 / n) + 1e-3


def pretrain(env, steps, objective=None, options=None, hidden=64, **changes):
    objective = objective or outcome_objective("db")
    config = TrainConfig(steps=steps, eval_every=0, **(FAST | changes))
    seed_everything(config.seed)
    policy = build_policy(env, ModelConfig(hidden=hidden), config.device)
    trainer = PretrainTrainer(env, policy, objective, config, options)
    return policy, start_or_resume(trainer, quiet=True)


@pytest.fixture(scope="module")
def pretrained():
    """An OC-GFN pre-trained on hypergrid 5x5 (25 outcomes)."""
    env = outcome_env(HyperGrid(2, 5, r0=0.1), enumerate_outcomes=True)
    policy, metrics = pretrain(env, 600)
    return env, policy, metrics


def test_pretrained_sampler_reaches_requested_outcomes(pretrained):
    env, policy, metrics = pretrained
    rates = success_rates(state_graph(env), env, policy, terminal_objects(env))
    assert len(rates) == 25 and float(rates.mean()) >= 0.9, rates
    assert metrics["exact_success"] == pytest.approx(float(rates.mean()))
    assert metrics["exact_success_min"] == pytest.approx(float(rates.min()))


def test_teleportation_reaches_outcomes_quickly():
    env = outcome_env(HyperGrid(2, 5), enumerate_outcomes=True)
    objective = outcome_objective("db", teleportation=True)
    options = PretrainOptions(swapped=False)
    _, metrics = pretrain(env, 300, objective, options, epsilon=0.0)
    assert objective.name == "oc-db-ot" and metrics["exact_success"] >= 0.9, metrics


def test_stop_edge_and_initial_flow_choices(pretrained):
    env, policy, _ = pretrained
    base, outcomes = env.env, terminal_objects(env)
    codes = env.conditioning.encode(outcomes)
    s0 = base.initial(3)
    out = policy(base.featurize(s0), codes[:3])
    logp = masked_log_softmax(out.forward_logits, base.forward_mask(s0))
    terms = outcome_terms(base, policy, s0, codes[:3])
    assert torch.allclose(terms, policy.log_z(codes[:3], 3)[:, None] + logp)  # F(s0|y) = Z(y)
    # the stop edge at x carries (almost) only the flow toward y = x: the sum over every y in
    # N(stop | x) equals its y = x term
    log_r = base.log_reward(outcomes)
    logits = marginal_logits(base, policy, outcomes, codes, log_r)
    own = outcome_terms(base, policy, outcomes, codes)[:, base.stop] + log_r
    assert float((logits[:, base.stop] - own).max()) < 0.01


def test_exact_conversion_samples_the_new_reward(pretrained):
    env, policy, _ = pretrained
    base, outcomes = env.env, terminal_objects(env)
    graph = state_graph(base)
    target, _ = target_distribution(graph, base)
    p = conversion_distribution(
        graph, base, policy, env.conditioning.encode(outcomes), base.log_reward(outcomes)
    )
    assert distribution_errors(p, target)["tv"] < 0.1


@pytest.mark.parametrize("samples", [4, 0])
def test_finetuning_reaches_the_new_reward(pretrained, samples):
    # samples 4: the amortized predictor (N, Q) of the paper; 0: log N on the exact sum
    env, policy, _ = pretrained
    base = env.env
    config = TrainConfig(steps=300, eval_every=50, **FAST)
    options = FinetuneOptions(distill_steps=200, samples=samples)
    seed_everything(1)
    model = build_model(base, policy, options, ModelConfig(hidden=64), config.device)
    trainer = FinetuneTrainer(
        base,
        model,
        get_objective("tb"),
        config,
        options,
        env.conditioning.encode,
        terminal_objects(base),
    )
    metrics = start_or_resume(trainer, quiet=True)
    tv = {e["step"]: e["exact_tv"] for e in metrics["eval_history"]}
    assert tv[200] < 0.1, tv  # the amortized marginal alone
    # then trajectory balance improves on it. After the exact-sum distillation (samples 0) the
    # first TB steps overshoot (Adam's moments come from a converged regression) and 100 TB
    # steps end at TV 0.013-0.040 over config seeds 0-7 (0.035 at seed 0), against 0.007-0.022
    # after the amortized one: 0.03 held only for some seeds, 0.045 holds for all eight.
    assert tv[300] < min(tv[200], 0.03 if samples else 0.045), tv
    assert exact_report(base, model)["exact_tv"] == tv[300]
    frozen = dict(policy.named_parameters())
    assert all(torch.equal(p, frozen[n]) for n, p in model.pretrained.named_parameters())


def test_sampler_starts_from_the_pretrained_network(pretrained):
    env, policy, _ = pretrained
    model = build_model(env.env, policy, FinetuneOptions(), ModelConfig(hidden=64, layers=2))
    first = model.sampler.trunk[0][0].weight
    assert torch.equal(first, policy.trunk[0][0].weight[:, : env.feature_dim])
    assert torch.equal(model.sampler.forward_head.weight, policy.forward_head.weight)
    conditional = conditional_policy(env)
    with pytest.raises(ValueError, match="unconditional"):
        MarginalModel(conditional, OutcomePosterior(1, 1, 1), policy)


def test_bad_training_setups_are_named():
    env = HyperGrid(2, 3)
    config = TrainConfig()
    with pytest.raises(ValueError, match="needs an OutcomeEnv"):
        PretrainTrainer(env, build_policy(env), outcome_objective(), config)
    oenv = outcome_env(env, enumerate_outcomes=True)
    replay = TrainConfig(replay_capacity=4)
    with pytest.raises(ValueError, match="set replay off"):
        PretrainTrainer(oenv, build_policy(oenv), outcome_objective(), replay)
    with pytest.raises(ValueError, match="enable positives"):
        PretrainOptions(positives=False, swapped=True)
    with pytest.raises(ValueError, match="q_epsilon"):
        FinetuneOptions(q_epsilon=2.0)
    with pytest.raises(ValueError, match="base must be one of"):
        outcome_objective("fm")


def test_resume_restores_the_outcome_pool(tmp_path):
    options = PretrainOptions(hindsight=True, explore=2)

    def run(out, steps):
        env = outcome_env(HyperGrid(2, 4), capacity=6)
        small = dict(hidden=16, checkpoint_every=10, out=str(out), batch_size=4)
        return pretrain(env, steps, options=options, **small)[0]

    whole = run(tmp_path / "whole", 25)
    run(tmp_path / "split", 14)
    resumed = run(tmp_path / "split", 25)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def call(argv, capsys, monkeypatch):
    """`gflow ARGV` in-process, with the OC-GFN commands registered: status, stdout, stderr."""
    commands = gflow.cli.COMMANDS + ("gflow.cli.pretrain", "gflow.cli.finetune")
    monkeypatch.setattr(gflow.cli, "COMMANDS", tuple(dict.fromkeys(commands)))
    try:
        code = gflow.cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_pretrain_then_finetune(tmp_path, capsys, monkeypatch):
    grid = ["hypergrid", "--height", "4", "--r0", "0.1"]
    quiet = ["--quiet", "--device", "cpu", "--threads", "1", "--eval-every", "5"]
    pre, fine = tmp_path / "pre", tmp_path / "fine"
    argv = ["pretrain", *grid, "--hidden", "16", "--steps", "10", "--out", str(pre), *quiet]
    code, out, err = call(argv, capsys, monkeypatch)
    assert code == 0, err
    assert "exact success" in out and (pre / "checkpoint.pt").is_file()
    metrics = json.loads((pre / "metrics.json").read_text())
    assert metrics["objective"] == "oc-db" and metrics["env"]["outcome"]["enumerate"]
    tune = ["--from", str(pre), "--steps", "10", "--distill-steps", "6", "--out", str(fine)]
    argv = ["finetune", *grid, *tune, "--reward", "env", *quiet]
    code, out, err = call(argv, capsys, monkeypatch)
    assert code == 0, err
    metrics = json.loads((fine / "metrics.json").read_text())
    hidden = metrics["policy"]["options"]["hidden"]
    assert metrics["steps"] == 10 and hidden == 16 and "exact_tv" in metrics
    assert metrics["objective_options"]["distill_steps"] == 6
    bad = [
        ["pretrain", *grid, "--objective", "fm", "--out", str(tmp_path / "x"), *quiet],
        ["finetune", *grid, "--from", str(tmp_path / "nowhere"), *quiet],
        ["finetune", "hypergrid", "--height", "5", "--from", str(pre), *quiet],
        ["finetune", *grid, "--from", str(pre), "--distill-steps", "2000", *quiet],
    ]
    for argv in bad:
        code, _, err = call(argv, capsys, monkeypatch)
        assert code == 2 and len(err.strip().splitlines()) == 1, err

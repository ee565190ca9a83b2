"""Rewards are checked where they enter training: NaN, infinite, negative or zero rewards stop it
with an error naming the reward, the object and the step; a reward scale that overflows the loss
is reported as such; NaN logits are an error naming the policy output, and sampling never draws
a masked action."""

import math
import re

import pytest
import torch
from gflow.envs.hypergrid import HyperGrid
from gflow.envs.molecules.atoms import AtomEnv

from gflow.guards import LogitsError, RewardError
from gflow.objectives import get_objective
from gflow.sampling import sample_actions, sample_backward, sample_forward
from gflow.training import ModelConfig, TrainConfig, build_policy, train


class BadCornerGrid(HyperGrid):
    """A hypergrid whose log reward is `bad` wherever the first coordinate is at its maximum."""

    def __init__(self, bad: float):
        super().__init__(ndim=2, height=3, r0=0.1)
        self.bad = bad

    def log_reward(self, states):
        good = super().log_reward(states)
        return torch.where(states[:, 0] == self.height - 1, torch.full_like(good, self.bad), good)


def fit(env, steps=5, model=None):
    config = TrainConfig(steps=steps, batch_size=16, eval_every=0)
    torch.manual_seed(0)
    policy = build_policy(env, model or ModelConfig(hidden=8))
    return train(env, policy, get_objective("tb"), config, quiet=True)


@pytest.mark.parametrize(
    "bad, problem",
    [
        (math.nan, "log R is NaN (a NaN or negative reward)"),
        (math.inf, "log R is +inf (an infinite reward)"),
        (-math.inf, "log R is -inf (a zero reward; GFlowNets need R > 0)"),
    ],
)
def test_bad_reward_stops_training_naming_reward_object_and_step(bad, problem):
    env = BadCornerGrid(bad)
    with pytest.raises(RewardError) as info:
        fit(env)
    message = str(info.value)
    found = re.fullmatch(
        r"at step (\d+): bad reward from BadCornerGrid: (.*) for object \[(\d), (\d)\]", message
    )
    assert found is not None, message
    assert int(found.group(1)) >= 1 and found.group(2) == problem
    named = torch.tensor([[int(found.group(3)), int(found.group(4))]])
    value = float(env.log_reward(named)[0])
    assert value == bad or (math.isnan(value) and math.isnan(bad))


def test_negative_molecule_reward_names_the_reward_callable_and_smiles():
    def minus_one_with_oxygen(mols):
        return [-1.0 if any(a.GetSymbol() == "O" for a in m.GetAtoms()) else 1.0 for m in mols]

    env = AtomEnv(max_atoms=2, reward=minus_one_with_oxygen)
    with pytest.raises(RewardError) as info:
        fit(env, steps=20, model=ModelConfig(hidden=8, layers=1, heads=1))
    message = str(info.value)
    found = re.fullmatch(
        r"at step \d+: bad reward from AtomEnv reward minus_one_with_oxygen: the reward is "
        r"negative \(-1\) for object (\S+) \(rewards must be finite and > 0\)",
        message,
    )
    assert found is not None, message
    assert "O" in found.group(1)


def test_replayed_log_rewards_are_checked():
    env = HyperGrid(2, 3, r0=0.1)
    objects = torch.tensor([[1, 2], [2, 2]])
    with pytest.raises(RewardError, match=r"log R is NaN .* for object \[2, 2\]"):
        sample_backward(env, None, objects, log_reward=torch.tensor([0.0, math.nan]))
    huge = torch.tensor([3e38, 3e38])  # finite, though their sum overflows
    assert torch.equal(sample_backward(env, None, objects, log_reward=huge).log_reward, huge)


class HugeScaleGrid(HyperGrid):
    """A hypergrid whose log rewards are finite but around 1e30: their square overflows."""

    def log_reward(self, states):
        return super().log_reward(states) + 1e30


def test_reward_scale_overflow_is_reported_as_such():
    with pytest.raises(FloatingPointError) as info:
        fit(HugeScaleGrid(2, 3, r0=0.1))
    message = str(info.value)
    assert not isinstance(info.value, RewardError)
    assert message.startswith("at step 1: the loss overflowed (inf): log R reaches 1e+30")
    assert "too large a reward scale" in message


def nan_head(policy, name):
    with torch.no_grad():
        getattr(policy, name).bias.fill_(math.nan)
    return policy


def test_nan_forward_logits_are_an_error_naming_the_output():
    env = HyperGrid(2, 3, r0=0.1)
    policy = nan_head(build_policy(env, ModelConfig(hidden=8)), "forward_head")
    with pytest.raises(LogitsError, match="the policy's forward logits are NaN at legal action"):
        sample_forward(env, policy, 4)
    config = TrainConfig(steps=3)
    with pytest.raises(LogitsError, match=r"^at step 1: the policy's forward logits are NaN"):
        train(env, policy, get_objective("tb"), config, quiet=True)


def test_nan_backward_logits_are_an_error_naming_the_output():
    env = HyperGrid(2, 3, r0=0.1)
    policy = nan_head(build_policy(env, ModelConfig(hidden=8, learn_pb=True)), "backward_head")
    with pytest.raises(LogitsError, match="the policy's backward logits are NaN at legal action"):
        sample_backward(env, policy, torch.tensor([[2, 1], [1, 1]]))


def test_no_legal_action_and_all_minus_infinity_are_named():
    mask = torch.tensor([[True, False], [False, False]])
    with pytest.raises(LogitsError, match="row 1 has no legal action"):
        sample_actions(torch.zeros(2, 2), mask, output="forward logits")
    logits = torch.tensor([[-math.inf, 0.0]])
    with pytest.raises(LogitsError, match="-inf at every legal action of row 0"):
        sample_actions(logits, torch.tensor([[True, False]]))


def test_masked_actions_are_never_drawn():
    generator = torch.Generator().manual_seed(0)
    for trial in range(200):
        rows, width = 64, 1 + trial % 9
        mask = torch.rand(rows, width, generator=generator) < 0.4
        mask[torch.arange(rows), torch.randint(width, (rows,), generator=generator)] = True
        logits = torch.randn(rows, width, generator=generator) * 10.0 ** (trial % 40 - 5)
        wild = torch.tensor([math.nan, math.inf, -math.inf, 1e38])
        junk = wild[torch.randint(4, (rows, width), generator=generator)]
        logits = torch.where(mask, logits, junk)  # anything at all where an action is illegal
        temperature, epsilon = (0.5, 1.0, 3.0)[trial % 3], (0.0, 0.1, 1.0)[trial % 3]
        action = sample_actions(logits, mask, temperature, epsilon)
        assert mask[torch.arange(rows), action].all(), trial


def test_a_zero_exponential_draw_never_picks_a_masked_action(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "exponential_", lambda self, *a, **k: self.zero_())
    mask = torch.tensor([[False, True, False, True], [True, False, False, False]])
    action = sample_actions(torch.zeros(2, 4), mask)
    assert mask[torch.arange(2), action].all()

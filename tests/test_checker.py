"""The environment checker passes the built-in environments and names what is wrong in broken ones;
`gflow check-env` exits 0 / 1 / 2."""

from pathlib import Path

import pytest
from broken_envs import (
    BadBackwardStep,
    CrashingFeatures,
    DuplicateStates,
    IllegalAction,
    NegativeReward,
    NeverStops,
    ZeroReward,
)
from gflow.envs.bitseq import BitSequence
from gflow.envs.graph_symmetry import SymmetryCorrected
from gflow.envs.graphs import GraphEnv
from gflow.envs.hypergrid import HyperGrid
from gflow.envs.molecules.atoms import AtomEnv
from gflow.envs.molecules.fragments import FragmentEnv
from gflow.envs.sets import SetGeneration

import gflow
import gflow.cli
from gflow.checker import EnvCheckError, check_env

BROKEN = str(Path(__file__).with_name("broken_envs.py"))


@pytest.mark.parametrize(
    "env",
    [
        HyperGrid(2, 8, 0.1),
        HyperGrid(3, 4),
        BitSequence(8, 2),
        BitSequence(8, 4),
        SetGeneration(6, 3),
    ],
    ids=["hypergrid-2x8", "hypergrid-3x4", "bitseq-8-2", "bitseq-8-4", "sets-6-3"],
)
def test_enumerable_builtins_pass_on_every_state(env):
    report = check_env(env, n_trajectories=32)
    assert report.enumerated == len(env.enumerate_states()) == report.states
    assert report.edges > 0 and f"all {report.enumerated} enumerated states" in report.summary()


@pytest.mark.parametrize(
    "env, length",
    [(BitSequence(), 16), (SetGeneration.preset("small"), 21), (SetGeneration.preset("large"), 81)],
    ids=["bitseq-120-8", "sets-small", "sets-large"],
)
def test_standard_sizes_pass(env, length):
    report = check_env(env, n_trajectories=4, seed=1)
    assert report.enumerated is None
    assert report.max_length == report.mean_length == length


def test_bad_backward_step_is_named():
    with pytest.raises(EnvCheckError, match="backward action 0 from there gives") as info:
        check_env(BadBackwardStep(2, 4))
    assert "forward action 0 at state 0 [0, 0] leads to 1 [1, 0]" in str(info.value)
    assert (info.value.key, info.value.action) == (0, 0)


def test_mask_allowing_an_illegal_action_is_named():
    env = IllegalAction(6, 3)
    with pytest.raises(EnvCheckError, match="leaves the state unchanged") as info:
        check_env(env)
    element = info.value.action
    state = env.initial(1)
    state[0, element] = 1
    assert f"forward action {element} at state {state[0].tolist()}" in str(info.value)
    assert info.value.key == env.keys(state)[0]


@pytest.mark.parametrize(
    "env, value", [(ZeroReward(2, 8, 0.1), "-inf"), (NegativeReward(6, 3), "nan")], ids=str
)
def test_non_positive_reward_is_named(env, value):
    with pytest.raises(EnvCheckError, match=f"log_reward is {value} at terminal state") as info:
        check_env(env)
    states = env.enumerate_states()
    index = env.keys(states).index(info.value.key)
    assert not env.log_reward(states[index : index + 1]).isfinite().any()


def test_other_contract_breaks_are_named():
    with pytest.raises(EnvCheckError, match=r"lists state 0 \[0, 0\] twice"):
        check_env(DuplicateStates(2, 3))
    with pytest.raises(EnvCheckError, match=r"did not stop within 50 steps .* state \[50\]"):
        check_env(NeverStops(), max_steps=50)
    crash = r"featurize raised RuntimeError at state \d+ \[(3, \d|\d, 3)\]: feature table"
    with pytest.raises(EnvCheckError, match=crash):
        check_env(CrashingFeatures(2, 5))


def test_lazy_export_and_seeded_reports():
    assert gflow.check_env is check_env
    a = check_env(SetGeneration.preset("small"), n_trajectories=8, seed=3)
    b = check_env(SetGeneration.preset("small"), n_trajectories=8, seed=3)
    assert (a.states, a.edges) == (b.states, b.edges)


@pytest.fixture
def cli(monkeypatch):
    """gflow.cli.main with only the check-env command registered."""
    monkeypatch.setattr(gflow.cli, "COMMANDS", ("gflow.cli.check_env",))
    return gflow.cli.main


def test_cli_passes_with_exit_0(cli, capsys):
    assert (
        cli(
            [
                "check-env",
                "gflow.envs.sets:SetGeneration",
                *("--arg", "universe=6", "--arg", "set_size=3"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("OK SetGeneration:") and "all 42 enumerated states" in out


def test_cli_reports_a_failed_check_with_exit_1(cli, capsys):
    assert (
        cli(["check-env", f"{BROKEN}:BadBackwardStep", "--arg", "ndim=2", "--arg", "height=4"]) == 1
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("FAIL BadBackwardStep:")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["gflow.envs.nope:Env"], "cannot import gflow.envs.nope"),
        (["gflow.envs.hypergrid:Nope"], "has no class Nope"),
        (["gflow.envs.hypergrid"], "expected module:Class"),
        (["gflow.envs.hypergrid:HyperGrid", "--arg", "depth=3"], "cannot build"),
        (["gflow.envs.hypergrid:HyperGrid", "--arg", "height=1"], "height >= 2"),
        (["gflow.envs.hypergrid:HyperGrid", "--arg", "novalue"], "KEY=VALUE"),
    ],
)
def test_cli_bad_usage_exits_2(cli, capsys, argv, message):
    assert cli(["check-env", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


class NaNNodeFeatures(GraphEnv):
    """A graph env whose node features are NaN once a graph has two nodes."""

    def node_features(self, states):
        features = super().node_features(states)
        return features.masked_fill((states.n_nodes >= 2)[:, None, None], float("nan"))


@pytest.mark.parametrize(
    "env, enumerated",
    [
        (GraphEnv(node_types=2, max_nodes=3), 29),
        (SymmetryCorrected(GraphEnv(node_types=1, max_nodes=3, connected=True, node_attrs=1)), 16),
        (AtomEnv(max_atoms=3), 118),
        (FragmentEnv(max_fragments=2), None),
    ],
    ids=["graphs", "graphs-connected-symmetry", "atoms-3", "frags-2"],
)
def test_graph_envs_pass(env, enumerated):
    report = check_env(env, n_trajectories=8, use_enumeration=enumerated is not None)
    assert report.enumerated == enumerated
    assert report.edges > 0 and report.max_length >= 3


def test_graph_features_are_checked():
    with pytest.raises(EnvCheckError, match=r"non-finite x at state .*: \[nan"):
        check_env(NaNNodeFeatures(node_types=2, max_nodes=3), n_trajectories=4)

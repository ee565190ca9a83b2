"""Plug-ins from the user's own files: a loss, an environment class and a molecule reward, each
named as path/to/file.py:name on the command line (files written outside the repository), and
objectives registered or passed from Python."""

import json
import math
import re
import textwrap
from pathlib import Path

import pytest
import torch
from gflow.envs.hypergrid import HyperGrid
from rdkit import Chem
from test_cli_train import QUIET, call

from gflow.errors import UsageError
from gflow.exact import exact_report
from gflow.objectives import (
    OBJECTIVES,
    Objective,
    ObjectiveSpec,
    as_objective,
    get_objective,
    objective,
    register_objective,
)
from gflow.plugins import checked_reward, load, load_reward, parse_options, resolve_objective
from gflow.scoring import score
from gflow.training import ModelConfig, TrainConfig, build_policy, train

README = Path(__file__).resolve().parents[1] / "README.md"
GRID = ["hypergrid", "--height", "6", "--r0", "0.1", "--hidden", "64", "--lr", "3e-3"]
FIT = ["--steps", "300", "--batch-size", "32", "--epsilon", "0.05", "--eval-every", "0"]

USER_LOSSES = '''
import torch

from gflow.objectives import objective


def my_tb(traj):
    """Trajectory balance written by hand."""
    log_z_pf = traj.log_z + (traj.log_pf * traj.transition_mask).sum(1)
    log_r_pb = traj.log_reward + (traj.log_pb * traj.transition_mask).sum(1)
    return (log_z_pf - log_r_pb)[traj.done].pow(2).mean()


@objective(needs={"log_flows"}, incomplete_ok=True)
def my_db(traj):
    """Detailed balance written by hand, declaring what it reads."""
    flow = traj.log_flow
    residual = flow[:, :-1] + traj.log_pf - flow[:, 1:] - traj.log_pb
    return residual[traj.transition_mask].pow(2).mean()
'''


def write(tmp_path: Path, name: str, text: str) -> str:
    """Write a user's file outside the repository; its path."""
    path = tmp_path / "user" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def run_cli(argv: list[str], tmp_path: Path, capsys) -> dict:
    """`gflow ARGV --out tmp/run`: the metrics (the command must succeed)."""
    out = tmp_path / "run"
    code, _, err = call([*argv, "--out", str(out), *QUIET], capsys)
    assert code == 0, err
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("loss", ["my_tb", "my_db"])
def test_a_user_loss_file_trains_hypergrid_to_the_exact_target(loss, tmp_path, capsys):
    target = f"{write(tmp_path, 'losses.py', USER_LOSSES)}:{loss}"
    metrics = run_cli(["train", *GRID, *FIT, "--objective", target], tmp_path, capsys)
    assert metrics["objective"] == loss
    assert metrics["exact_tv"] < 0.05, metrics["exact_tv"]


def readme_staircase() -> str:
    """The README's example environment, as the README shows it."""
    text = README.read_text()
    block = re.search(r"```python\n(.*?class Staircase\(Env\):.*?)```", text, re.S)
    assert block is not None, "the README lost its Staircase example"
    return block.group(1)


def test_the_readme_environment_trains_from_a_user_file_to_the_exact_target(tmp_path, capsys):
    path = write(tmp_path, "staircase.py", readme_staircase())
    argv = ["train", f"{path}:Staircase", "--arg", "top=5", "--hidden", "64", "--lr", "3e-3"]
    metrics = run_cli([*argv, *FIT], tmp_path, capsys)
    assert metrics["env"] == {"name": f"{path}:Staircase", "options": {"top": 5}}
    assert metrics["exact_tv"] < 0.05, metrics["exact_tv"]
    assert metrics["log_z_error"] < 0.1


def test_a_bad_plugin_is_a_one_line_error(tmp_path, capsys):
    path = write(tmp_path, "losses.py", USER_LOSSES)
    for argv, message in [
        (["train", *GRID, "--objective", f"{path}:nope"], "has no loss nope"),
        (["train", *GRID, "--objective", "nope"], "unknown objective 'nope'"),
        (["train", f"{path}:my_tb"], "cannot build"),
        (["train", "gflow.objectives.base:ObjectiveOptions"], "not a gflow.env.Env"),
        (["train", str(tmp_path / "absent.py") + ":Env"], "no such file"),
    ]:
        code, _, err = call([*argv, "--steps", "1", "--out", str(tmp_path / "x"), *QUIET], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


REWARDS = '''
import math


def heavy_atoms(mols):
    """One plus the number of heavy atoms."""
    return [1.0 + mol.GetNumHeavyAtoms() for mol in mols]


def too_few(mols):
    return [1.0] * (len(mols) - 1)


def negative(mols):
    return [-1.0 for _ in mols]


def not_a_number(mols):
    return [math.nan for _ in mols]
'''


def test_a_user_reward_trains_the_fragment_environment(tmp_path, capsys):
    path = write(tmp_path, "rewards.py", REWARDS)
    frags = ["frags", "--max-fragments", "2", "--reward", f"{path}:heavy_atoms", "--no-symmetry"]
    small = ["--hidden", "16", "--layers", "1", "--batch-size", "4", "--steps", "3"]
    metrics = run_cli(["train", *frags, *small], tmp_path, capsys)
    assert metrics["steps"] == 3 and math.isfinite(metrics["final_loss"])
    assert metrics["top_k_reward"] >= 2.0  # every molecule has at least one heavy atom


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("too_few", "returned 2 values for 3 molecules"),
        ("negative", "returned -1.0 for molecule 0"),
        ("not_a_number", "returned NaN for molecule 0"),
    ],
)
def test_a_bad_reward_is_a_clear_error_naming_the_function(name, message, tmp_path):
    target = f"{write(tmp_path, 'rewards.py', REWARDS)}:{name}"
    with pytest.raises(ValueError, match=re.escape(f"reward {target} {message}")):
        load_reward(target)([object()] * 3)


def test_a_bad_reward_stops_gflow_train_with_one_line(tmp_path, capsys):
    path = write(tmp_path, "rewards.py", REWARDS)
    argv = ["train", "frags", "--max-fragments", "2", "--reward", f"{path}:negative"]
    code, _, err = call([*argv, "--steps", "1", "--out", str(tmp_path / "x"), *QUIET], capsys)
    assert code == 2 and "negative returned -1.0" in err and len(err.strip().splitlines()) == 1


def test_checked_reward_accepts_tensors_and_sequences():
    assert torch.equal(checked_reward(lambda m: torch.ones(len(m)), "f")([1, 2]), torch.ones(2))
    assert checked_reward(lambda m: (0.0, 2.5), "f")([1, 2]).tolist() == [0.0, 2.5]


def test_resolution_and_options():
    assert load("gflow.envs.hypergrid:HyperGrid") is HyperGrid
    assert parse_options(["a=1", "b=x", "c=[1, 2]"]) == {"a": 1, "b": "x", "c": [1, 2]}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_options(["nope"])
    with pytest.raises(UsageError, match="expected module:Function"):
        load("nocolon", "function")
    op = resolve_objective("op-db", {"op_lambda": 0.3, "subtb_lambda": 0.5, "steps": 9})
    assert op.options["op_lambda"] == 0.3 and "lambda" not in op.options


def test_a_plugin_file_imports_modules_beside_it(tmp_path):
    folder = tmp_path / "user_project"
    folder.mkdir()
    (folder / "gflow_test_helper_sibling.py").write_text("SCALE = 3\n")
    (folder / "reward.py").write_text(
        "from gflow_test_helper_sibling import SCALE\n\n"
        "def fn(mols):\n    return [SCALE] * len(mols)\n"
    )
    assert load(f"{folder / 'reward.py'}:fn", "function")([None, None]) == [3, 3]


def custom_balance(traj):
    """A loss registered by a test: TB on half the log reward (targets R^(1/2))."""
    residual = traj.log_r_theta - 0.5 * traj.log_reward
    return residual[traj.done].pow(2).mean()


def test_a_new_objective_registers_in_one_file_and_trains():
    spec = register_objective(
        ObjectiveSpec("half-tb", lambda _: custom_balance, help="TB towards sqrt(R)")
    )
    try:
        assert OBJECTIVES["half-tb"] is spec
        env = HyperGrid(2, 6, r0=0.1)
        config = TrainConfig(steps=300, batch_size=32, lr=3e-3, epsilon=0.05, eval_every=0)
        torch.manual_seed(0)
        policy = build_policy(env, ModelConfig(hidden=64))
        metrics = train(env, policy, get_objective("half-tb"), config, quiet=True)
        assert metrics["objective"] == "half-tb"
        sqrt_env = HyperGrid(2, 6, r0=0.1)
        sqrt_env.log_reward = lambda states: 0.5 * HyperGrid.log_reward(env, states)
        assert exact_report(sqrt_env, policy)["exact_tv"] < 0.05
        assert metrics["exact_tv"] > 0.1  # it does not learn R itself
    finally:
        del OBJECTIVES["half-tb"]


def test_functions_and_objectives_pass_alike():
    def mine(traj):
        return traj.log_z.sum() * 0

    obj = as_objective(mine)
    assert isinstance(obj, Objective) and obj.name == "mine" and obj.needs == frozenset()
    assert as_objective(obj) is obj
    assert objective(mine).name == "mine" and objective(mine).needs == frozenset()  # bare
    declared = objective("fl", needs={"forward_looking_flows"}, incomplete_ok=True)(mine)
    assert declared.incomplete_ok and declared.needs == {"forward_looking_flows"}
    with pytest.raises(ValueError, match="needs \\['wings'\\]"):
        objective(needs={"wings"})(mine)
    with pytest.raises(ValueError, match="log_z must be one of"):
        Objective("x", mine, log_z="sky")
    with pytest.raises(ValueError, match="already registered"):
        register_objective(ObjectiveSpec("tb", lambda _: mine))
    with pytest.raises(ValueError, match="has no option op_lambda"):
        get_objective("tb", op_lambda=1.0)


def test_score_provides_what_is_asked_and_refuses_unknown_needs():
    from gflow.policies.mlp import MLPPolicy
    from gflow.sampling import sample_forward

    env = HyperGrid(2, 4)
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, hidden=8)
    rollout = sample_forward(env, policy, 4)
    plain = score(env, policy, rollout)
    assert plain.log_inflow is None and plain.reward_components is None and plain.energy is None
    full = score(env, policy, rollout, get_objective("fm").needs)
    assert full.log_inflow is not None and full.energy is None
    with pytest.raises(ValueError, match="unknown needs"):
        score(env, policy, rollout, {"wings"})
    with pytest.raises(ValueError, match="reads edge_flows"):
        get_objective("fm")(plain)


def test_the_seh_frag_benchmark_takes_a_user_reward(tmp_path, capsys):
    path = write(tmp_path, "rewards.py", REWARDS)
    out = tmp_path / "bench"
    argv = ["bench", "seh-frag", "--reward", f"{path}:heavy_atoms", "--steps", "2"]
    small = ["--batch-size", "4", "--hidden", "16", "--layers", "1", "--heads", "2", "--grid", "2"]
    code, _, err = call([*argv, *small, "--device", "cpu", "--out", str(out)], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["reward"] == f"max({path}:heavy_atoms(mol), 1e-4) ** beta"
    best = results["top_molecules"][0]
    heavy = Chem.MolFromSmiles(best["smiles"]).GetNumHeavyAtoms()
    assert best["proxy"] == 1.0 + heavy and best["reward"] == pytest.approx(1.0 + heavy)


def test_the_environment_registry_builds_from_keyword_options():
    from gflow.envs.registry import ENVIRONMENTS, build_env

    env = build_env("hypergrid", ndim=3, height=4)
    assert isinstance(env, HyperGrid) and (env.ndim, env.height, env.r0) == (3, 4, 1e-3)
    assert build_env("sets", size="medium").universe == 80
    assert [o.name for o in ENVIRONMENTS["hypergrid"].options] == ["ndim", "height", "r0"]
    with pytest.raises(ValueError, match="has no option depth; its options: ndim, height, r0"):
        build_env("hypergrid", depth=3)
    with pytest.raises(ValueError, match="size must be one of small, medium, large"):
        build_env("sets", size="huge")
    with pytest.raises(ValueError, match="unknown environment 'nope'"):
        build_env("nope")
    with pytest.raises(ValueError, match="unknown molecule reward 'sweet'"):
        build_env("atoms", reward="sweet")

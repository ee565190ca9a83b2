"""`gflow train`: help, one-line errors, the metrics.json contract, and kill-and-resume."""

import json
import subprocess
import sys
import time

import pytest
import torch
from gflow.envs.hypergrid import HyperGrid
from gflow.envs.registry import ENVIRONMENTS, EnvSpec, Option

from gflow.checkpoint import load_checkpoint
from gflow.cli import build_parser, main

TINY = ["hypergrid", "--ndim", "2", "--height", "6", "--r0", "0.1", "--hidden", "16"]
QUIET = ["--quiet", "--device", "cpu", "--threads", "1"]  # one thread, as in conftest.py


def call(argv, capsys):
    """Run `gflow ARGV` in-process: exit status, stdout, stderr."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def test_help(capsys):
    code, out, _ = call(["train", "--help"], capsys)
    assert code == 0 and "hypergrid" in out
    code, out, _ = call(["train", "hypergrid", "--help"], capsys)
    assert code == 0
    for flag in ("--objective", "--steps", "--out", "--resume", "--ndim", "--replay-capacity"):
        assert flag in out


def test_env_option_clashing_with_a_training_option_is_named(monkeypatch):
    spec = EnvSpec("clashy", "clash", HyperGrid, (Option("lr", 0.1, "a clashing option"),))
    monkeypatch.setitem(ENVIRONMENTS, "clashy", spec)
    parser = build_parser()  # `train` fills in its environments when it is parsed
    with pytest.raises(ValueError, match="environment 'clashy' defines --lr"):
        parser.parse_args(["train", "clashy"])


@pytest.mark.parametrize(
    "argv",
    [
        ["train"],
        ["train", "no-such-env"],
        ["train", "hypergrid", "--steps", "many"],
        ["train", "hypergrid", "--objective", "nope"],
        ["train", "hypergrid", "--steps", "0"],
        ["train", "hypergrid", "--epsilon", "2"],
        ["train", "hypergrid", "--height", "1"],
        ["train", "hypergrid", "--threads", "-1"],
    ],
)
def test_bad_arguments_give_one_line_and_status_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = call([*argv, "--device", "cpu"] if len(argv) > 1 else argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("gflow"), err
    assert not list(tmp_path.iterdir())


def test_metrics_contract(tmp_path, capsys):
    out_dir = tmp_path / "run"
    argv = ["train", *TINY, "--steps", "12", "--eval-every", "5", "--out", str(out_dir), *QUIET]
    code, out, _ = call(argv, capsys)
    assert code == 0
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["steps"] == 12 and metrics["objective"] == "tb"
    assert metrics["env"] == {"name": "hypergrid", "options": {"ndim": 2, "height": 6, "r0": 0.1}}
    for key in ("seconds", "trajectories_per_second", "iterations_per_second", "final_loss"):
        assert metrics[key] > 0, key
    for key in ("exact_tv", "exact_l1", "exact_jsd", "log_z_error"):
        assert 0 <= metrics[key] < float("inf"), key
    assert [e["step"] for e in metrics["eval_history"]] == [5, 10, 12]
    assert metrics["policy"]["options"]["hidden"] == 16 and metrics["config"]["batch_size"] == 16
    assert "exact TV" in out and len(out.strip().splitlines()) == 1
    assert (out_dir / "checkpoint.pt").is_file() and (out_dir / "tb").is_dir()


def test_killed_run_resumes_to_the_same_parameters(tmp_path, capsys):
    steps = 200
    argv = ["train", *TINY, "--steps", str(steps), "--checkpoint-every", "20", *QUIET]
    killed = tmp_path / "killed"
    command = [sys.executable, "-c", "from gflow.cli import main; raise SystemExit(main())"]
    proc = subprocess.Popen([*command, *argv, "--out", str(killed)], stderr=subprocess.PIPE)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.kill()
    _, err = proc.communicate()
    assert checkpoint.exists(), err.decode()
    assert load_checkpoint(checkpoint)["step"] < steps
    assert call([*argv, "--out", str(killed)], capsys)[0] == 0
    assert call([*argv, "--out", str(tmp_path / "whole")], capsys)[0] == 0
    resumed = load_checkpoint(checkpoint)
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert resumed["step"] == whole["step"] == steps
    for name, value in whole["policy"].items():
        assert torch.equal(value, resumed["policy"][name]), name

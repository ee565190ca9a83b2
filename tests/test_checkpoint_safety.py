"""Checkpoints never run code and are verified: crafted pickles are refused without effect,
corrupt files give one line naming the file, --restart moves a run aside, writes are atomic,
respect the umask and leave no temporary files; resuming says where it starts."""

import io
import json
import os
import random
import re
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from gflow.envs.graphs import GraphEnv
from gflow.envs.hypergrid import HyperGrid
from test_cli_train import call

from gflow.checkpoint import (
    MAGIC,
    TEMP_SUFFIX,
    CheckpointError,
    atomic_write,
    frame_payload,
    load_checkpoint,
    prepare_output,
    rng_state,
    save_checkpoint,
    save_json,
    set_rng_state,
)
from gflow.objectives import get_objective
from gflow.replay import ReplayBuffer
from gflow.sampling import sample_forward
from gflow.training import ModelConfig, TrainConfig, build_policy, train

GRID = ["hypergrid", "--height", "4", "--r0", "0.1"]
QUIET = ["--quiet", "--device", "cpu", "--threads", "1", "--hidden", "16"]


class CreatesFile:
    """Unpickling this calls open(path, "w"), which creates the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def crafted(path, marker, framed=True):
    """A checkpoint file whose unpickling would create `marker`: framed with a valid header and
    checksum (so only the safe unpickler stands in the way), or a bare torch.save file."""
    buffer = io.BytesIO()
    torch.save({"step": 1, "policy": CreatesFile(marker)}, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(frame_payload(buffer.getvalue()) if framed else buffer.getvalue())
    return path


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], err
    return lines[0]


# --- the file format ----------------------------------------------------------------------


def test_round_trip_and_plain_data_only(tmp_path):
    state = {
        "w": torch.randn(3, 2),
        "n": 3,
        "x": 0.5,
        "s": "text",
        "b": b"\x00\xff",
        "none": None,
        "nested": [(1, 2), {"k": {3, 4}}],
    }
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded.pop("w"), state.pop("w")) and loaded == state
    assert (tmp_path / "c.pt").read_bytes().startswith(MAGIC)
    for bad, where in [
        ({"a": np.zeros(2)}, "checkpoint['a']"),
        ({"a": [1, np.float64(2.0)]}, "checkpoint['a'][1]"),
        ({"a": object()}, "checkpoint['a']"),
        ({"a": torch.nn.Linear(1, 1)}, "checkpoint['a']"),
    ]:
        with pytest.raises(TypeError, match=f"{re.escape(where)} is a .*, not plain data"):
            save_checkpoint(tmp_path / "bad.pt", bad)
    assert not (tmp_path / "bad.pt").exists()


def test_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    for framed in (True, False):
        path = crafted(tmp_path / f"evil-{framed}.pt", marker, framed)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message
        assert ("Python object (io.open)" if framed else "not a gflow checkpoint") in message
    assert not marker.exists()


def corrupt(path, kind):
    """Damage a good checkpoint file in one of the ways a disk or a kill can."""
    data = path.read_bytes()
    if kind == "empty":
        data = b""
    elif kind == "truncated":
        data = data[: len(data) * 2 // 3]
    elif kind == "random":
        data = random.Random(0).randbytes(len(data))
    elif kind == "bit-flip":
        flipped = bytearray(data)
        flipped[len(data) * 3 // 4] ^= 0x10
        data = bytes(flipped)
    elif kind == "header":
        data = data.replace(b"sha256 ", b"sha265 ", 1)
    elif kind == "appended":
        data += b"junk"
    path.write_bytes(data)


KINDS = {
    "empty": "is empty",
    "truncated": "is truncated",
    "random": "is not a gflow checkpoint",
    "bit-flip": "fails its SHA-256 checksum",
    "header": "has a damaged header",
    "appended": "stray bytes",
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_corruption_is_one_line_naming_the_file(tmp_path, kind):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.randn(100), "step": 3})
    corrupt(path, kind)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert KINDS[kind] in message and str(path) in message and "--restart" in message
    assert "\n" not in message


def test_rng_states_survive_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    draws = (random.random(), np.random.normal(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.normal(), torch.rand(1).item()) == draws


def test_graph_states_in_a_replay_buffer_are_plain_data(tmp_path):
    env = GraphEnv(node_types=2, max_nodes=3)
    buffer = ReplayBuffer(env, 8)
    policy = build_policy(env, ModelConfig(hidden=8, layers=1))
    rollout = sample_forward(env, policy, 6)
    buffer.add(rollout.terminal, rollout.log_reward)
    save_checkpoint(tmp_path / "graphs.pt", {"replay": buffer.state_dict()})
    restored = ReplayBuffer(env, 8)
    restored.load_state_dict(load_checkpoint(tmp_path / "graphs.pt")["replay"])
    assert env.keys(restored.states) == env.keys(buffer.states)
    assert torch.equal(restored.states.edges, buffer.states.edges)


# --- atomic writes, temporary files, umask ------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_files_are_written_with_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        save_checkpoint(tmp_path / "c.pt", {"a": 1})
        save_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    for name in ("c.pt", "m.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"a": 1})

    def dies(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, dies)
    assert load_checkpoint(path) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


KILLED_SAVE = """
import os, signal, sys
from gflow.checkpoint import atomic_write

def dies(f):
    f.write(b"half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

atomic_write(sys.argv[1], dies)
"""


def test_a_kill_during_a_save_leaves_no_temporary_file_after_the_next_run(tmp_path, capsys):
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(out / "checkpoint.pt")])
    assert killed.returncode == -signal.SIGKILL
    (stale,) = out.glob(f".checkpoint.pt.*{TEMP_SUFFIX}")
    assert not (out / "checkpoint.pt").exists()
    keep = [out / "notes.tmp", out / ".hidden"]  # not ours: left alone
    for path in keep:
        path.write_text("mine")
    code, _, err = call(["train", *GRID, *QUIET, "--steps", "2", "--out", str(out)], capsys)
    assert code == 0, err
    assert not stale.exists() and all(p.exists() for p in keep)
    assert not list(out.glob(f"*{TEMP_SUFFIX}"))


# --- crafted and corrupt checkpoints through the commands ----------------------------------


def test_crafted_checkpoint_runs_nothing_in_train_pretrain_and_finetune(tmp_path, capsys):
    marker = tmp_path / "pwned"
    runs = {
        "train": ["train", *GRID, *QUIET, "--steps", "2"],
        "pretrain": ["pretrain", *GRID, *QUIET, "--steps", "2"],
    }
    for name, argv in runs.items():
        for framed in (True, False):
            out = tmp_path / f"{name}-{framed}"
            crafted(out / "checkpoint.pt", marker, framed)
            code, _, err = call([*argv, "--out", str(out)], capsys)
            line = one_line_error(err)
            assert code == 2 and str(out / "checkpoint.pt") in line, err
            assert line.startswith(f"gflow {name}: error: checkpoint")
    for framed in (True, False):
        source = crafted(tmp_path / f"pre-{framed}" / "checkpoint.pt", marker, framed)
        argv = ["finetune", *GRID, *QUIET, "--from", str(source), "--steps", "2"]
        code, _, err = call([*argv, "--out", str(tmp_path / f"fine-{framed}")], capsys)
        line = one_line_error(err)
        assert code == 2 and str(source) in line and "--from" in line, err
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "bit-flip"])
def test_corrupt_checkpoint_through_the_cli(tmp_path, capsys, kind):
    out = tmp_path / "run"
    argv = ["train", *GRID, *QUIET, "--steps", "3", "--out", str(out)]
    assert call(argv, capsys)[0] == 0
    corrupt(out / "checkpoint.pt", kind)
    code, _, err = call(argv, capsys)
    line = one_line_error(err)
    assert code == 2 and KINDS[kind] in line and "--restart" in line
    assert str(out / "checkpoint.pt") in line
    code, _, err = call([*argv, "--restart"], capsys)
    assert code == 0, err
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    (aside,) = tmp_path.glob("run.old-*")
    assert (aside / "checkpoint.pt").is_file() and (aside / "metrics.json").is_file()


def test_corrupt_pretrain_checkpoint_in_pretrain_and_finetune_from(tmp_path, capsys):
    pre = tmp_path / "pre"
    argv = ["pretrain", *GRID, *QUIET, "--steps", "2", "--out", str(pre)]
    assert call(argv, capsys)[0] == 0
    corrupt(pre / "checkpoint.pt", "bit-flip")
    code, _, err = call(argv, capsys)
    line = one_line_error(err)
    assert code == 2 and line.startswith("gflow pretrain: error:") and "--restart" in line
    tune = ["--from", str(pre), "--steps", "2", "--out", str(tmp_path / "fine")]
    code, _, err = call(["finetune", *GRID, *QUIET, *tune], capsys)
    line = one_line_error(err)
    assert code == 2 and KINDS["bit-flip"] in line and "pass --from an intact" in line


# --- restart and resume -------------------------------------------------------------------


def test_restart_moves_the_run_aside_and_never_deletes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *GRID, *QUIET, "--out", str(out)]
    assert call([*argv, "--steps", "4"], capsys)[0] == 0
    first = (out / "checkpoint.pt").read_bytes()
    code, _, err = call([*argv, "--steps", "2", "--restart"], capsys)
    assert code == 0 and "moved" in err and "aside" in err, err
    (aside,) = tmp_path.glob("run.old-*")
    assert (aside / "checkpoint.pt").read_bytes() == first
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    code, _, err = call([*argv, "--steps", "2", "--restart"], capsys)
    assert code == 0 and len(list(tmp_path.glob("run.old-*"))) == 2
    code, _, err = call([*argv, "--steps", "2", "--restart", "--resume"], capsys)
    assert code == 2 and "contradict" in one_line_error(err)


def test_prepare_output_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        prepare_output(tmp_path / "f", restart=True)
    assert (tmp_path / "f").read_text() == "x"


def test_resume_says_where_it_starts_and_metrics_follow_steps(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *GRID, *QUIET, "--out", str(out), "--log-every", "1", "--eval-every", "2"]
    code, _, err = call([*argv, "--steps", "4"], capsys)
    assert code == 0 and "resuming" not in err
    code, _, err = call([*argv, "--steps", "6"], capsys)
    assert code == 0 and f"resuming {out} from step 4 of 6" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == metrics["config"]["steps"] == 6
    assert [e["step"] for e in metrics["loss_history"]] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in metrics["eval_history"]] == [2, 4, 6]
    assert load_checkpoint(out / "checkpoint.pt")["config"]["steps"] == 6
    code, _, err = call([*argv, "--steps", "6"], capsys)
    assert code == 0 and f"resuming {out} from step 6 of 6" in err
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6
    before = (out / "metrics.json").read_bytes()
    code, _, err = call([*argv, "--steps", "5"], capsys)
    line = one_line_error(err)
    assert code == 2 and "already trained 6 steps" in line and "--restart" in line
    assert (out / "metrics.json").read_bytes() == before


def test_api_resume_message(tmp_path, capsys):
    env, model = HyperGrid(2, 4, r0=0.1), ModelConfig(hidden=8)
    for steps in (3, 5):
        config = TrainConfig(steps=steps, out=str(tmp_path))
        train(env, build_policy(env, model), get_objective("tb"), config, quiet=True)
    assert f"resuming {tmp_path} from step 3 of 5" in capsys.readouterr().err

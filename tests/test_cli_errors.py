"""Bad input on every command: one line `gflow COMMAND: error: ...`, exit status 2 (1 only for a
check that ran and failed, 130 for Ctrl-C), no half-written output, tracebacks only on request."""

from __future__ import annotations

import gzip
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gflow.cli.hv as hv_command
from gflow.cli import describe_error, main
from gflow.errors import CheckFailed, GflowError, UsageError

TINY = ["hypergrid", "--ndim", "2", "--height", "4", "--hidden", "16", "--quiet"]
RUNTIME = ["--device", "cpu", "--threads", "1"]
STAIRCASE = "f1,f2\n1,3\n2,2\n3,1\n"


def gflow(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run `gflow ARGV` in-process: (exit status, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(result: tuple[int, str, str], command: str, *fragments: str) -> None:
    """Exit status 2 and exactly one stderr line `gflow COMMAND: error: ...` with `fragments`."""
    code, _, err = result
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"gflow {command}: error: "), err
    for fragment in fragments:
        assert fragment in err, err


def listing(folder: Path) -> list[str]:
    """Every path under `folder`, relative, sorted (hidden temporary files included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def afile(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("keep me\n")
    return path


# --out is a file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["train", *TINY, "--steps", "2", *RUNTIME],
        ["pretrain", *TINY, "--steps", "2", *RUNTIME],
        ["bench", "mo-hypergrid", "--steps", "1", "--device", "cpu"],
    ],
    ids=["train", "pretrain", "bench"],
)
def test_out_is_a_file(capsys, tmp_path, afile, argv):
    before = listing(tmp_path)
    result = gflow(capsys, *argv, "--out", afile)
    assert_error(result, argv[0], str(afile), "is a file")
    assert afile.read_text() == "keep me\n" and listing(tmp_path) == before


def test_out_below_a_file(capsys, tmp_path, afile):
    result = gflow(capsys, "bench", "mo-hypergrid", "--out", afile / "run", "--device", "cpu")
    assert_error(result, "bench", f"--out {afile / 'run'}", "part of its path is a file")
    assert afile.read_text() == "keep me\n"


def test_score_out_is_a_directory_or_below_a_file(capsys, tmp_path, afile):
    smiles = tmp_path / "m.smi"
    smiles.write_text("CCO\n")
    assert_error(gflow(capsys, "score", "mw", smiles, "--out", tmp_path), "score", "is a directory")
    result = gflow(capsys, "score", "mw", smiles, "--out", afile / "x.csv")
    assert_error(result, "score", str(afile), "is a file, not a folder")
    assert result[1] == "" and afile.read_text() == "keep me\n"


# --plot to a directory or an unwritable path: the hypervolume is printed first ----------------


@pytest.fixture
def staircase(tmp_path: Path) -> Path:
    path = tmp_path / "front.csv"
    path.write_text(STAIRCASE)
    return path


def _plot_target(kind: str, tmp_path: Path, afile: Path) -> tuple[Path, str]:
    """A --plot target that cannot be written and the message fragment it must give."""
    if kind == "directory":
        folder = tmp_path / "fig.png"
        folder.mkdir()
        return folder, "is a directory"
    if kind == "below a file":
        return afile / "fig.png", "cannot write it"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked / "fig.png", "permission denied"


@pytest.mark.parametrize("kind", ["directory", "below a file", "read-only folder"])
def test_plot_target_that_cannot_be_written(capsys, tmp_path, afile, staircase, kind):
    if kind == "read-only folder" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    target, message = _plot_target(kind, tmp_path, afile)
    before = listing(tmp_path)
    code, out, err = gflow(capsys, "hv", staircase, "--ref", "0,0", "--plot", target)
    assert out.splitlines() == ["points: 3, Pareto front: 3", "6.0"]  # printed first
    assert_error((code, out, err), "hv", f"--plot {target}", message)
    assert listing(tmp_path) == before  # no temporary file left behind


# a directory where a file is expected -------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["hv", "{dir}", "--ref", "0,0"], "{dir} is a directory"),
        (["score", "mw", "{dir}"], "input {dir} is a directory"),
        (["score", "seh", "{smi}", "--weights", "{dir}"], "--weights data file {dir} is a dir"),
        (["check-env", "{dir}/env.py:Env"], "is a directory"),
        (["train", "frags", "--fragments", "{dir}", "--out", "{dir}/run"], "{dir} is a directory"),
    ],
    ids=["hv", "score", "weights", "check-env", "fragments"],
)
def test_directory_where_a_file_is_expected(capsys, tmp_path, argv, fragment):
    folder = tmp_path / "data"
    (folder / "env.py").mkdir(parents=True)
    smiles = tmp_path / "m.smi"
    smiles.write_text("CCO\n")
    names = {"dir": folder if argv[0] != "check-env" else folder, "smi": smiles}
    argv = [a.format(**names) for a in argv]
    fragment = fragment.format(dir=folder if argv[0] != "check-env" else folder / "env.py")
    result = gflow(capsys, *argv)
    assert_error(result, argv[0], fragment)
    assert "does not exist" not in result[2] and result[1] == ""


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (IsADirectoryError(21, "Is a directory", "runs/x"), "runs/x: is a directory"),
        (PermissionError(13, "Permission denied", "/etc/x"), "/etc/x: permission denied"),
        (NotADirectoryError(20, "Not a directory", "f"), "f: is not a folder (or a part of its"),
        (FileNotFoundError(2, "No such file or directory", "gone"), "gone: does not exist"),
        (OSError(28, "No space left on device", "big"), "big: no space left on the device"),
        (FileNotFoundError("input m.smi does not exist"), "input m.smi does not exist"),
        (KeyError("hidden"), "missing 'hidden'"),
        (ValueError("line one\n  line two"), "line one line two"),
    ],
)
def test_describe_error(error, reason):
    assert describe_error(error).startswith(reason)


# a non-pickle or wrong file as --weights / --proxy ------------------------------------------


class _RunsCode:
    """Unpickling this would create the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_weights(kind: str, folder: Path) -> tuple[Path, str]:
    """A file that is not sEH proxy weights, and the message fragment it must give."""
    path = folder / f"{kind}.bin"
    if kind == "text":
        path.write_text("hello\n")
        return path, "is not a pickled list of numpy arrays"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "is empty"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return path, "is not a pickled list of numpy arrays"
    if kind == "gzip":
        path.write_bytes(gzip.compress(b"not a pickle"))
        return path, "is not a pickled list of numpy arrays"
    if kind == "bad-zip":
        path.write_bytes(b"PK\x03\x04garbage")
        return path, "is not a readable .npz"
    if kind == "dict":
        path.write_bytes(pickle.dumps({"p00": np.zeros(3)}))
        return path, "does not hold a list of numpy arrays"
    if kind == "code":
        path.write_bytes(pickle.dumps([_RunsCode(folder / "marker")]))
        return path, "refused to load global"
    if kind == "wrong-arrays":
        with path.open("wb") as handle:
            np.savez(handle, a=np.zeros(3))
        return path, "lacks the arrays p00"
    with path.open("wb") as handle:
        np.savez(handle, **{f"p{i:02d}": np.zeros(2) for i in range(22)})
    return path, "array p00 has shape (2,), expected (64, 71)"


WEIGHT_KINDS = ["text", "empty", "random", "gzip", "bad-zip", "dict", "code", "wrong-arrays"]


@pytest.mark.parametrize("kind", [*WEIGHT_KINDS, "wrong-shapes"])
def test_score_weights_that_are_not_proxy_weights(capsys, tmp_path, kind):
    weights, message = _bad_weights(kind, tmp_path)
    smiles = tmp_path / "m.smi"
    smiles.write_text("CCO\n")
    out = tmp_path / "scores.csv"
    result = gflow(capsys, "score", "seh", smiles, "--weights", weights, "--out", out)
    assert_error(result, "score", f"--weights {weights}", message)
    assert result[1] == "" and not out.exists() and not (tmp_path / "marker").exists()


@pytest.mark.parametrize("kind", ["random", "code"])
def test_bench_proxy_that_is_not_proxy_weights(capsys, tmp_path, kind):
    weights, message = _bad_weights(kind, tmp_path)
    out = tmp_path / "bench"
    argv = ["bench", "seh-frag", "--proxy", weights, "--out", out, "--device", "cpu"]
    assert_error(gflow(capsys, *argv), "bench", str(weights), message)
    assert listing(out) == [] and not (tmp_path / "marker").exists()


# finetune with a model size that does not match the checkpoint -------------------------------


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pretrained") / "run"
    assert main(["pretrain", *TINY, "--steps", "2", *RUNTIME, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    ("option", "value", "trained"), [("--hidden", "32", "16"), ("--layers", "5", "2")]
)
def test_finetune_model_size_differs_from_the_checkpoint(
    capsys, tmp_path, pretrained, option, value, trained
):
    out = tmp_path / "finetuned"
    argv = ["finetune", *TINY, "--from", pretrained, "--steps", "2", "--distill-steps", "1"]
    result = gflow(capsys, *[a for a in argv if a not in ("--hidden", "16")], option, value,
                   *RUNTIME, "--out", out)  # fmt: skip
    assert_error(result, "finetune", f"{option} {value} does not match", f"{trained};")
    assert not out.exists()
    capsys.readouterr()
    assert gflow(capsys, *argv, *RUNTIME, "--out", out)[0] == 0  # the checkpoint's sizes work


# check-env: a constructor that raises, options that make the environment invalid -------------


RAISES_ON_IMPORT = """
raise RuntimeError("import boom")
"""

BROKEN_CONSTRUCTOR = """
from gflow.envs.hypergrid import HyperGrid


class Exploding(HyperGrid):
    def __init__(self, **options):
        raise RuntimeError("the grid fell over")
"""


@pytest.mark.parametrize(
    ("target", "args", "fragments"),
    [
        ("{file}:Exploding", [], ["build", "Exploding", "RuntimeError: the grid fell over"]),
        ("gflow.envs.hypergrid:HyperGrid", ["ndim=-1"], ["build", "HyperGrid", "ndim >= 1"]),
        ("gflow.envs.hypergrid:HyperGrid", ["depth=3"], ["build", "HyperGrid", "'depth'"]),
        ("gflow.envs.hypergrid:HyperGrid", ["height=1.5"], ["build", "HyperGrid", "height"]),
        ("{boom}:Env", [], ["cannot import", "RuntimeError: import boom"]),
    ],
    ids=["raises", "invalid-option", "unknown-option", "wrong-type", "import-raises"],
)
def test_check_env_that_cannot_be_built(capsys, tmp_path, target, args, fragments):
    module = tmp_path / "exploding.py"
    module.write_text(BROKEN_CONSTRUCTOR)
    boom = tmp_path / "boom.py"
    boom.write_text(RAISES_ON_IMPORT)
    argv = ["check-env", target.format(file=module, boom=boom)]
    for pair in args:
        argv += ["--arg", pair]
    result = gflow(capsys, *argv)
    assert_error(result, "check-env", *fragments)
    assert result[1] == ""


def test_check_env_that_fails_its_check_exits_1(capsys):
    code, out, err = gflow(
        capsys, "check-env", "tests.broken_envs:BadBackwardStep", "--arg", "ndim=2"
    )
    assert code == 1 and out.startswith("FAIL BadBackwardStep") and err == ""


# the handler: exit codes, --debug, GFLOW_DEBUG, Ctrl-C -----------------------------------------


def _failing(error: BaseException):
    def run(args):
        raise error

    return run


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (UsageError("--x must be positive"), 2, "gflow hv: error: --x must be positive\n"),
        (GflowError("bad file f"), 2, "gflow hv: error: bad file f\n"),
        (CheckFailed("it failed"), 1, "gflow hv: error: it failed\n"),
        (ValueError("no"), 2, "gflow hv: error: no\n"),
        (IsADirectoryError(21, "Is a directory", "d"), 2, "gflow hv: error: d: is a directory\n"),
        (KeyboardInterrupt(), 130, "\ngflow hv: interrupted\n"),
        (MemoryError(), 2, "gflow hv: error: out of memory; try smaller sizes or batches\n"),
        (
            RuntimeError("CUDA out of memory. Tried to allocate 2 GiB\nmore"),
            2,
            "gflow hv: error: out of memory (CUDA out of memory. Tried to allocate 2 GiB); "
            "try smaller sizes or batches\n",
        ),
    ],
)
def test_handler_exit_codes(capsys, monkeypatch, staircase, error, code, line):
    monkeypatch.setattr(hv_command, "run", _failing(error))
    monkeypatch.delenv("GFLOW_DEBUG", raising=False)
    assert gflow(capsys, "hv", staircase, "--ref", "0,0")[1:] == ("", line)
    assert gflow(capsys, "hv", staircase, "--ref", "0,0")[0] == code


@pytest.mark.parametrize("how", ["--debug first", "--debug last", "GFLOW_DEBUG=1"])
def test_debug_shows_the_traceback(capsys, monkeypatch, staircase, how):
    monkeypatch.setattr(hv_command, "run", _failing(UsageError("shown with its traceback")))
    argv = ["hv", str(staircase), "--ref", "0,0"]
    if how == "GFLOW_DEBUG=1":
        monkeypatch.setenv("GFLOW_DEBUG", "1")
    else:
        argv = ["--debug", *argv] if how == "--debug first" else [*argv, "--debug"]
    with pytest.raises(UsageError, match="shown with its traceback"):
        main(argv)


@pytest.mark.parametrize("bug", [ZeroDivisionError("a bug"), RuntimeError("a bug")])
def test_bugs_keep_their_traceback(monkeypatch, staircase, bug):
    monkeypatch.setattr(hv_command, "run", _failing(bug))
    with pytest.raises(type(bug), match="a bug"):
        main(["hv", str(staircase), "--ref", "0,0"])


def test_usage_errors_are_one_line(capsys):
    assert_error(gflow(capsys, "hv"), "hv", "required")
    code, _, err = gflow(capsys, "no-such-command")
    assert code == 2 and err.count("\n") == 1 and "invalid choice" in err


def _as_a_terminal_does() -> None:
    """SIGINT's default action in a child, whatever the suite was launched under: a shell
    without job control starts background commands with SIGINT ignored, and children inherit
    that (Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def ctrl_c_raises():
    """Python's KeyboardInterrupt handler in this process for the test, then the one before."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_stops_a_long_exact_hypervolume_at_once(tmp_path):
    rng = np.random.default_rng(0)
    points = np.abs(rng.standard_normal((200, 10)))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    np.save(tmp_path / "many.npy", points)
    command = [sys.executable, "-m", "gflow", "hv", str(tmp_path / "many.npy"), "--ref", "0"]
    command[-1] = ",".join(["0"] * 10)
    proc = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_as_a_terminal_does,
    )
    try:  # a failed assertion must not leave hours of computation running
        warning = proc.stderr.readline()  # printed before the exact computation starts
        assert warning.startswith("gflow hv: warning: the exact hypervolume of 200 Pareto points")
        assert "10 objectives may take about" in warning and "--approx" in warning
        time.sleep(0.5)
        assert proc.poll() is None  # still computing
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 5
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and out == "" and err.strip() == "gflow hv: interrupted"


def test_ctrl_c_delivered_to_the_worker_thread_still_interrupts_at_once(ctrl_c_raises):
    import threading

    def interrupt_the_worker() -> None:
        (worker,) = [t for t in threading.enumerate() if t.name == "gflow-hv"]
        signal.pthread_kill(worker.ident, signal.SIGINT)  # the kernel's choice, made here

    timer = threading.Timer(0.2, interrupt_the_worker)
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        hv_command.interruptible(time.sleep, 5)  # sleeps in C, the GIL released
    assert time.monotonic() - start < 2


def test_diverged_training_is_one_line_exit_2(capsys, tmp_path):
    result = gflow(capsys, "train", *TINY, "--lr", "1e30", "--steps", "20", *RUNTIME,
                   "--out", tmp_path / "run")  # fmt: skip
    assert_error(result, "train", "diverged", "lower learning rate")


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    path = tmp_path / "many.smi"
    path.write_text("CCO\nc1ccccc1\n" * 20_000)
    command = [sys.executable, "-m", "gflow", "score", "mw", str(path), "--batch-size", "64"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"smiles,score\n"
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and err == ""


@pytest.mark.parametrize("content", [b"not json", b"\xd7\x00binary"])
def test_fragments_file_that_is_not_json(capsys, tmp_path, content):
    path = tmp_path / "fragments.json"
    path.write_bytes(content)
    argv = ["train", "frags", "--fragments", path, "--steps", "1", "--out", tmp_path / "run"]
    assert_error(gflow(capsys, *argv), "train", f"{path} is not a JSON file of fragments")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()

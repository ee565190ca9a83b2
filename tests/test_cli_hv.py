"""`gflow hv`: file formats, output, plots and one-line errors with exit status 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import gflow.cli

STAIRCASE_CSV = "f1,f2\n1,3\n2,2\n3,1\n1,1\n"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def hv(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run `gflow hv ARGS` in-process; returns (exit status, stdout lines, stderr)."""
    monkeypatch.setattr(gflow.cli, "COMMANDS", ("gflow.cli.hv",))

    def run(*args: object) -> tuple[int, list[str], str]:
        status = gflow.cli.main(["hv", *map(str, args)])
        out, err = capsys.readouterr()
        return status, out.splitlines(), err

    return run


def write(path: Path, text: str) -> Path:
    """Write `text` to `path` and return it."""
    path.write_text(text)
    return path


def test_registered() -> None:
    assert "gflow.cli.hv" in gflow.cli.COMMANDS


def test_csv_with_and_without_header(hv, tmp_path: Path) -> None:
    status, lines, _ = hv(write(tmp_path / "a.csv", STAIRCASE_CSV), "--ref", "0,0")
    assert status == 0 and float(lines[-1]) == 6.0
    assert lines[0] == "points: 4, Pareto front: 3"
    no_header = write(tmp_path / "b.csv", "1,3\n2,2\n\n3,1\n")
    assert float(hv(no_header, "--ref=-1,-1")[1][-1]) == 13.0


def test_json_and_minimize(hv, tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", STAIRCASE_CSV)
    status, lines, _ = hv(path, "--ref", "4,4", "--minimize", "--json")
    assert status == 0
    assert json.loads(lines[-1]) == {"hypervolume": 9.0, "n_points": 4, "n_pareto": 1}


def test_npy(hv, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    points = rng.random((50, 3))
    np.save(tmp_path / "p.npy", points)
    status, lines, _ = hv(tmp_path / "p.npy", "--ref", "0,0,0", "--json")
    result = json.loads(lines[-1])
    from gflow.metrics import hypervolume, pareto_front

    assert status == 0
    assert result["hypervolume"] == pytest.approx(hypervolume(points, np.zeros(3)), rel=1e-12)
    assert result["n_pareto"] == len(pareto_front(points)) and result["n_points"] == 50


@pytest.mark.parametrize(
    ("text", "ref", "message"),
    [
        ("1,3\n2\n", "0,0", "line 2 has 1 values, expected 2"),
        ("x,y\n1,3\n2,abc\n", "0,0", "line 3, column 2: 'abc' is not a number"),
        ("1,3\nnan,2\n", "0,0", "line 2, column 1 is nan (must be finite)"),
        ("1,3\n2,inf\n", "0,0", "line 2, column 2 is inf (must be finite)"),
        ("1,3\n2,2\n", "0,0,0", "--ref has 3 values but"),
        ("1,3\n2,2\n", "0,zero", "--ref value 2 ('zero') is not a number"),
        ("1,3\n2,2\n", "0,nan", "--ref value 2 is nan"),
        ("1,3\n2,2\n", "2,2", "no point is strictly above the reference point 2,2"),
        ("f1,f2\n", "0,0", "holds no points"),
    ],
)
def test_bad_csv_input(hv, tmp_path: Path, text: str, ref: str, message: str) -> None:
    status, lines, err = hv(write(tmp_path / "bad.csv", text), f"--ref={ref}")
    assert status == 2 and lines == []
    assert err.count("\n") == 1 and err.startswith("gflow hv: error: ")
    assert message in err


def test_bad_npy_and_missing_file(hv, tmp_path: Path) -> None:
    points = np.ones((3, 2))
    points[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", points)
    status, _, err = hv(tmp_path / "nan.npy", "--ref", "0,0")
    assert status == 2 and "row 2, objective 1 is nan" in err
    np.save(tmp_path / "flat.npy", np.ones(3))
    assert "2-D array" in hv(tmp_path / "flat.npy", "--ref", "0")[2]
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    assert "expected numbers" in hv(tmp_path / "text.npy", "--ref", "0")[2]
    status, _, err = hv(tmp_path / "missing.csv", "--ref", "0,0")
    assert status == 2 and "missing.csv does not exist" in err


def test_parquet_without_pyarrow(hv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    status, _, err = hv(write(tmp_path / "p.parquet", ""), "--ref", "0,0")
    assert status == 2 and "reading Parquet needs pyarrow: pip install pyarrow" in err


def test_parquet(hv, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [3, 2, 1]}), tmp_path / "p.parquet")
    assert float(hv(tmp_path / "p.parquet", "--ref", "0,0")[1][-1]) == 6.0
    pq.write_table(pa.table({"a": [1.0, None], "b": [3, 2]}), tmp_path / "null.parquet")
    assert "row 1, column 'a' is empty" in hv(tmp_path / "null.parquet", "--ref", "0,0")[2]
    pq.write_table(pa.table({"a": [1.0], "b": ["x"]}), tmp_path / "text.parquet")
    assert "column 'b' holds string" in hv(tmp_path / "text.parquet", "--ref", "0,0")[2]


@pytest.mark.parametrize("k", [2, 3])
def test_plot(hv, tmp_path: Path, k: int) -> None:
    np.save(tmp_path / "p.npy", np.random.default_rng(k).random((30, k)))
    out = tmp_path / "front.png"
    status, lines, _ = hv(tmp_path / "p.npy", "--ref", ",".join(["0"] * k), "--plot", out)
    assert status == 0 and float(lines[-1]) > 0
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["front.png", "p.npy"]


def test_plot_errors(hv, tmp_path: Path) -> None:
    np.save(tmp_path / "p4.npy", np.ones((3, 4)))
    status, _, err = hv(tmp_path / "p4.npy", "--ref", "0,0,0,0", "--plot", tmp_path / "x.png")
    assert status == 2 and "--plot draws 2 or 3 objectives, the points have 4" in err
    path = write(tmp_path / "a.csv", STAIRCASE_CSV)
    assert "unknown image format" in hv(path, "--ref", "0,0", "--plot", tmp_path / "x.xyz")[2]
    assert not (tmp_path / "x.png").exists()
    status, lines, _ = hv(path, "--ref", "0,0", "--plot", tmp_path / "new" / "x.png")
    assert status == 0 and (tmp_path / "new" / "x.png").read_bytes().startswith(PNG_MAGIC)


def _sphere(tmp_path: Path, n: int, k: int) -> Path:
    """n non-dominated points on the positive unit sphere in k objectives, saved as .npy."""
    points = np.abs(np.random.default_rng(k).standard_normal((n, k)))
    np.save(tmp_path / "sphere.npy", points / np.linalg.norm(points, axis=1, keepdims=True))
    return tmp_path / "sphere.npy"


def test_approx_reports_an_interval_around_the_exact_value(hv, tmp_path: Path) -> None:
    path = _sphere(tmp_path, 60, 5)
    ref = ",".join(["0"] * 5)
    exact = float(hv(path, "--ref", ref)[1][-1])
    status, lines, err = hv(path, "--ref", ref, "--approx", "--samples", "50000", "--json")
    result = json.loads(lines[-1])
    assert status == 0 and err == "" and result["method"] == "monte-carlo"
    low, high = result["ci95"]
    assert low <= exact <= high and low <= result["hypervolume"] <= high
    assert result["samples"] == 50000 and result["n_pareto"] == 60
    status, lines, _ = hv(path, "--ref", ref, "--approx", "--samples", "50000")
    assert status == 0 and float(lines[-1]) == result["hypervolume"]
    assert "95% confidence interval" in lines[1] and "50000 samples (seed 0)" in lines[1]
    status, _, err = hv(path, "--ref", ref, "--approx", "--samples", "1")
    assert status == 2 and "--samples must be >= 2" in err


def test_slow_exact_computation_is_announced(hv, tmp_path: Path, monkeypatch) -> None:
    import gflow.metrics.pareto

    monkeypatch.setattr(gflow.metrics.pareto, "hypervolume_seconds", lambda *a: 3 * 86400.0)
    path = _sphere(tmp_path, 40, 5)
    status, lines, err = hv(path, "--ref", ",".join(["0"] * 5))
    assert status == 0 and float(lines[-1]) > 0
    assert err == (
        "gflow hv: warning: the exact hypervolume of 40 Pareto points in 5 objectives may take "
        "about 3 days (its cost grows like n^3); Ctrl-C stops it, --approx estimates it in "
        "seconds\n"
    )


def test_quick_exact_computation_is_not_announced(hv, tmp_path: Path) -> None:
    status, _, err = hv(_sphere(tmp_path, 100, 4), "--ref", "0,0,0,0")
    assert status == 0 and err == ""


def test_csv_with_a_byte_order_mark(hv, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + STAIRCASE_CSV.encode())
    status, lines, _ = hv(path, "--ref", "0,0")
    assert status == 0 and float(lines[-1]) == 6.0


def test_csv_that_is_not_text(hv, tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"1,3\n\xff\xfe\x00\x01\n")
    status, lines, err = hv(path, "--ref", "0,0")
    assert status == 2 and lines == [] and "is not UTF-8 text" in err

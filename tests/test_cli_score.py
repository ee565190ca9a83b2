"""`gflow score`: CSV out with SMILES as given, empty scores and warnings for bad lines."""

from __future__ import annotations

import csv
import io

import pytest
import torch
from gflow.envs.rewards import molecular_weight, normalize_mw, normalize_sa, qed, sa_score

from gflow.cli import main

LINES = ["CCO", "  c1ccccc1O  ", "not-a-smiles", "C1CC", "", "CC(=O)Nc1ccc(O)cc1 paracetamol"]
BAD = {3: "not-a-smiles", 4: "C1CC", 5: ""}


def _score(capsys, *argv: str) -> tuple[int, list[list[str]], str]:
    status = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, list(csv.reader(io.StringIO(out))), err


@pytest.fixture
def smiles_file(tmp_path):
    path = tmp_path / "mols.smi"
    path.write_text("\n".join(LINES) + "\r\n")
    return path


def _valid(rows: list[list[str]]) -> tuple[list[str], torch.Tensor]:
    kept = [row for row in rows[1:] if row[1]]
    return [row[0] for row in kept], torch.tensor([float(row[1]) for row in kept])


@pytest.mark.parametrize(
    ("objective", "raw", "normalize"),
    [
        ("qed", qed, lambda v: v),
        ("sa", sa_score, normalize_sa),
        ("mw", molecular_weight, normalize_mw),
    ],
)
def test_chem_scores_keep_input_text_and_flag_bad_lines(
    capsys, smiles_file, objective, raw, normalize
):
    status, rows, err = _score(capsys, objective, smiles_file)
    assert status == 0
    assert rows[0] == ["smiles", "score"]
    assert [row[0] for row in rows[1:]] == LINES
    assert [i for i, row in enumerate(rows[1:], start=1) if not row[1]] == sorted(BAD)
    warnings = err.splitlines()
    assert len(warnings) == len(BAD)
    for line, text in zip(sorted(BAD), warnings, strict=True):
        assert f"line {line}:" in text and repr(BAD[line]) in text
    smiles, values = _valid(rows)
    expected = raw([s.strip() for s in smiles])
    assert torch.allclose(values, expected, rtol=1e-6)
    status, rows, _ = _score(capsys, objective, smiles_file, "--normalized")
    assert torch.allclose(_valid(rows)[1], normalize(expected), rtol=1e-6, atol=1e-7)


def test_seh_scores_match_reference_and_normalize(capsys, tmp_path, seh_reference):
    entries = seh_reference[:20]
    path = tmp_path / "ref.smi"
    path.write_text("".join(entry["smiles"] + "\n" for entry in entries) + "C1CC\n")
    status, rows, err = _score(capsys, "seh", path, "--device", "cpu", "--batch-size", "7")
    assert status == 0 and err.count("\n") == 1 and "line 21:" in err
    assert rows[-1] == ["C1CC", ""]
    smiles, raw = _valid(rows)
    assert smiles == [entry["smiles"] for entry in entries]
    expected = torch.tensor([entry["seh_proxy_raw"] for entry in entries])
    assert (raw - expected).abs().max() < 1e-3
    _, rows, _ = _score(capsys, "seh", path, "--normalized", "--device", "cpu")
    assert torch.allclose(_valid(rows)[1], (expected / 8).clamp(1e-4, 100), atol=2e-4)


def test_missing_file_is_a_one_line_error(capsys, tmp_path):
    status, rows, err = _score(capsys, "mw", tmp_path / "absent.smi")
    assert status == 2 and rows == []
    assert err.count("\n") == 1 and "absent.smi does not exist" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["qed", "{file}", "--weights", "w.npz"], "--weights applies to seh only"),
        (["seh", "{file}", "--weights", "{missing}"], "missing.npz does not exist"),
        (["mw", "{file}", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["mw", "{file}", "--threads", "-1"], "--threads must be >= 0"),
    ],
)
def test_bad_options_are_one_line_errors(capsys, smiles_file, tmp_path, argv, message):
    missing = tmp_path / "missing.npz"
    argv = [a.format(file=smiles_file, missing=missing) for a in argv]
    status, rows, err = _score(capsys, *argv)
    assert status == 2 and rows == []
    assert err.count("\n") == 1 and message in err


def test_large_files_are_scored_in_batches(capsys, tmp_path):
    path = tmp_path / "many.smi"
    path.write_text("C\nCC\nxx\n" * 200)
    status, rows, err = _score(capsys, "mw", path, "--batch-size", "64")
    assert status == 0 and len(rows) == 601 and err.count("\n") == 200
    assert rows[600] == ["xx", ""] and "line 600:" in err.splitlines()[-1]


def test_lines_that_are_not_utf8_are_warned_and_left_unscored(capsys, tmp_path):
    path = tmp_path / "mixed.smi"
    path.write_bytes(b"CCO\n\xff\xfeCC\nc1ccccc1\nC\xe9C\r\nCC\n")
    status, rows, err = _score(capsys, "mw", path, "--batch-size", "2")
    assert status == 0
    assert [row[0] for row in rows[1:]] == ["CCO", "\\xff\\xfeCC", "c1ccccc1", "C\\xe9C", "CC"]
    assert [bool(row[1]) for row in rows[1:]] == [True, False, True, False, True]
    warnings = err.splitlines()
    assert len(warnings) == 2
    assert "line 2: not valid UTF-8" in warnings[0] and "line 4: not valid UTF-8" in warnings[1]
    assert torch.allclose(_valid(rows)[1], molecular_weight(["CCO", "c1ccccc1", "CC"]))


def test_dash_reads_standard_input(capsys, monkeypatch, smiles_file):
    expected = _score(capsys, "qed", smiles_file)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(smiles_file.read_bytes())))
    assert _score(capsys, "qed", "-") == expected


def test_out_is_written_whole_or_not_at_all(capsys, monkeypatch, smiles_file, tmp_path):
    out = tmp_path / "scores.csv"
    status, rows, _ = _score(capsys, "mw", smiles_file, "--out", out, "--batch-size", "2")
    assert status == 0 and rows == []
    with out.open(newline="") as handle:
        assert [row[0] for row in csv.reader(handle)] == ["smiles", *LINES]
    calls = []

    def fails_on_the_second_batch(mols):
        calls.append(len(mols))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return molecular_weight(mols)

    monkeypatch.setattr("gflow.cli.score.scorer", lambda args: fails_on_the_second_batch)
    fresh = tmp_path / "fresh.csv"
    status = main(["score", "mw", str(smiles_file), "--out", str(fresh), "--batch-size", "2"])
    assert status == 130 and len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mols.smi", "scores.csv"]
    calls.clear()
    status = main(["score", "mw", str(smiles_file), "--out", str(out), "--batch-size", "2"])
    assert status == 130 and out.read_text().count("\n") == len(LINES) + 1  # old file intact


def test_chem_scores_do_not_depend_on_the_batch(capsys, tmp_path, seh_reference):
    smiles = [entry["smiles"] for entry in seh_reference[:40]]
    alone = tmp_path / "alone.smi"
    alone.write_text(smiles[7] + "\n")
    crowd = tmp_path / "crowd.smi"
    crowd.write_text("\n".join(smiles[::-1]) + "\n")
    for objective in ("qed", "sa", "mw"):
        single = _score(capsys, objective, alone)[1][1]
        for size in ("1", "3", "256"):
            rows = _score(capsys, objective, crowd, "--batch-size", size)[1]
            assert [row for row in rows if row[0] == smiles[7]] == [single]


SEH_BATCH_TOLERANCE = 1e-5
"""Largest relative difference between sEH scores of one molecule in different batches: float32
sums in batched matrix products run in an order that depends on the batch (measured: 2.4e-6
absolute on scores up to 7); the help of `gflow score` states it."""


def test_seh_scores_depend_on_the_batch_only_within_float32_rounding(seh_reference):
    from gflow.envs.rewards.seh import SEHProxy

    smiles = [entry["smiles"] for entry in seh_reference]
    proxy = SEHProxy.from_file(device="cpu")
    alone = torch.stack([proxy([s])[0] for s in smiles])
    order = torch.randperm(len(smiles), generator=torch.Generator().manual_seed(0)).tolist()
    for size in (3, 64, 512):
        batched = SEHProxy.from_file(device="cpu", batch_size=size)([smiles[i] for i in order])
        gap = (batched - alone[order]).abs() / alone[order].abs().clamp(min=1)
        assert gap.max() <= SEH_BATCH_TOLERANCE

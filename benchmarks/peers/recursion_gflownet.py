"""recursionpharma/gflownet, the peer of the molecule benchmarks (benchmarks/seh_frag.py and
benchmarks/seh_frag_moo.py): build its environment with the shared harness's `setup.sh` in a venv
outside the package, run the harness's own runners there in a subprocess, and read back their
results.json and the molecules the peer logged, in generation order, grouped by training step.

Nothing here is imported by gflow; the peer's code is never copied, only run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gflow.bench.machine import children_cpu_seconds

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PEER_DIR = Path("..") / "shared" / "peers" / "recursion-gflownet"
"""The harness folder, relative to the repository root."""
DEFAULT_VENV = Path(".peer-venv")
"""The peer's venv, relative to the repository root (gitignored)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--peer, --peer-dir, --peer-venv and --rebuild-peer."""
    parser.add_argument(
        "--peer",
        action="store_true",
        help="also run recursionpharma/gflownet (builds its venv with the harness's setup.sh)",
    )
    parser.add_argument(
        "--peer-dir",
        type=Path,
        default=DEFAULT_PEER_DIR,
        help=f"the peer harness, relative to the repository root (default {DEFAULT_PEER_DIR})",
    )
    parser.add_argument(
        "--peer-venv",
        type=Path,
        default=DEFAULT_VENV,
        help=f"where to build the peer's venv (default {DEFAULT_VENV}, gitignored)",
    )
    parser.add_argument(
        "--rebuild-peer", action="store_true", help="rerun setup.sh even if the venv works"
    )


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else (ROOT / path).resolve()


def ensure_peer(args: argparse.Namespace) -> tuple[Path, Path]:
    """(peer venv python, harness folder), building the venv with setup.sh when it is missing,
    broken or --rebuild-peer is given."""
    harness = _resolve(args.peer_dir)
    if not (harness / "setup.sh").is_file():
        raise SystemExit(f"--peer-dir {harness}: no setup.sh there (the peer harness folder)")
    venv = _resolve(args.peer_venv)
    python = venv / "bin" / "python"
    works = python.exists() and (
        subprocess.run(
            [str(python), "-c", "import gflownet, torch_scatter, rdkit"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if args.rebuild_peer or not works:
        sys.stderr.write(f"building the peer venv at {venv} with {harness / 'setup.sh'}\n")
        done = subprocess.run(["bash", str(harness / "setup.sh"), str(venv)], check=False)
        if done.returncode != 0:
            raise SystemExit(f"the peer's setup.sh failed (exit {done.returncode})")
    return python, harness


@dataclass
class PeerRun:
    """One peer run: its results.json, the logged rows grouped by step, and step end times."""

    results: dict[str, Any]
    columns: list[str]
    steps: list[list[tuple]]
    """The rows the peer logged, one list per training step, in generation order."""
    step_end_seconds: np.ndarray
    """(steps,) seconds from the start of training to the end of each step."""
    process: dict[str, Any]
    """How the peer's process ran, where known: `load_average` at its start and end (`before`,
    `after`), `cpu_seconds` (user + system), `max_rss_mb`, `source` of these figures."""


def run(
    python: Path,
    harness: Path,
    runner: str,
    out: Path,
    steps: int,
    seed: int,
    batch: int,
    threads: int,
    extra: tuple[str, ...] = (),
) -> PeerRun:
    """Run a harness runner (run_seh_frag.py or run_seh_frag_moo.py) and read its outputs."""
    command = [
        str(python), str(harness / runner), "--steps", str(steps), "--seed", str(seed),
        "--batch", str(batch), "--threads", str(threads), "--out", str(out), *extra,
    ]  # fmt: skip
    before = list(os.getloadavg())
    cpu = children_cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = children_cpu_seconds() - cpu
    after = list(os.getloadavg())
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"the peer's {runner} exited with status {done.returncode}:\n{tail}")
    run = load(out, steps, batch)
    run.process = {
        "load_average": {"before": before, "after": after},
        "cpu_seconds": cpu,
        "max_rss_mb": run.results.get("peak_rss_mb"),
        "source": "measured by this script around the runner's process",
    }
    return run


LOAD_LOG = "load.txt"
"""Beside reused run folders: lines `NAME start|end DATE... L1 L5 L15 RUNNING/ALL LASTPID`, the
run folder's name, then `date` and /proc/loadavg as a wrapper script wrote them."""


def recorded_process(out: Path) -> dict[str, Any]:
    """What a wrapper script recorded beside the run folder `out`, when it did: the load average
    at the run's start and end (`LOAD_LOG`) and, from `NAME.time` (`/usr/bin/time -v` output), the
    process's CPU seconds and peak RSS. Empty when neither file is there."""
    record: dict[str, Any] = {}
    log = out.parent / LOAD_LOG
    if log.is_file():
        for line in log.read_text().splitlines():
            words = line.split()
            if len(words) >= 7 and words[0] == out.name and words[1] in ("start", "end"):
                key = "before" if words[1] == "start" else "after"
                record.setdefault("load_average", {})[key] = [float(w) for w in words[-5:-2]]
                record.setdefault("times", {})[key] = " ".join(words[2:-5])
    timed = out.parent / f"{out.name}.time"
    if timed.is_file():
        text = timed.read_text()
        fields = {
            name: float(m.group(1))
            for name, pattern in (
                ("user", r"User time \(seconds\): ([\d.]+)"),
                ("system", r"System time \(seconds\): ([\d.]+)"),
                ("rss_kb", r"Maximum resident set size \(kbytes\): (\d+)"),
                ("cpu_percent", r"Percent of CPU this job got: (\d+)%"),
            )
            if (m := re.search(pattern, text))
        }
        if "user" in fields and "system" in fields:
            record["cpu_seconds"] = fields["user"] + fields["system"]
        if "rss_kb" in fields:
            record["max_rss_mb"] = fields["rss_kb"] / 1024
        if "cpu_percent" in fields:
            record["cpu_percent_of_one_core"] = fields["cpu_percent"]
    if record:
        record["source"] = f"{LOAD_LOG} and {out.name}.time beside {out}"
    return record


def load(out: Path, steps: int, batch: int) -> PeerRun:
    """A finished run's outputs from its folder (load average unknown: empty)."""
    results = json.loads((out / "results.json").read_text())
    if results.get("steps") != steps or results.get("batch") != batch:
        raise SystemExit(
            f"{out}: the peer ran {results.get('steps')} steps of {results.get('batch')}, "
            f"not {steps} of {batch}"
        )
    columns, rows = read_rows(out / "peer_log" / "train")
    if len(rows) != steps * batch:
        raise SystemExit(f"the peer logged {len(rows)} molecules, expected {steps} x {batch}")
    grouped = [rows[i * batch : (i + 1) * batch] for i in range(steps)]
    ends = step_end_times(results, steps)
    return PeerRun(results, columns, grouped, ends, recorded_process(out))


def load_partial(out: Path, steps: int, batch: int, peak_rss_mb: float) -> PeerRun:
    """The first `steps` steps of a run that did not finish (no results.json): its logged
    molecules, and step end times interpolated between the stamps of the peer's train.log
    ('Starting training', then 'iteration k' every print_every steps, to the second); peak RSS
    as measured from outside."""
    columns, rows = read_rows(out / "peer_log" / "train")
    if len(rows) < steps * batch:
        raise SystemExit(f"{out}: only {len(rows) // batch} complete steps, not {steps}")
    stamps = {}
    for line in (out / "peer_log" / "train.log").read_text().splitlines():
        when = datetime.datetime.strptime(line[:19], "%d/%m/%Y %H:%M:%S").timestamp()
        if "Starting training" in line:
            stamps[0] = when
        elif match := re.search(r" - iteration (\d+) :", line):
            stamps[int(match.group(1))] = when
    known = sorted(stamps)
    if 0 not in stamps or known[-1] < steps:
        raise SystemExit(f"{out}/peer_log/train.log stamps no step at or past {steps}")
    ends = np.interp(np.arange(1, steps + 1), known, [stamps[k] - stamps[0] for k in known])
    wall = float(ends[-1])
    results = {
        "steps": steps,
        "batch": batch,
        "wall_seconds": wall,
        "trajectories_per_second": steps * batch / wall,
        "peak_rss_mb": peak_rss_mb,
        "setup_seconds": None,
        "partial": "run cut short: times interpolated from train.log stamps",
    }
    grouped = [rows[i * batch : (i + 1) * batch] for i in range(steps)]
    return PeerRun(results, columns, grouped, ends, recorded_process(out))


def read_rows(folder: Path) -> tuple[list[str], list[tuple]]:
    """Columns and rows of the peer's generated_mols_*.db (table results), in logging order."""
    columns: list[str] = []
    rows: list[tuple] = []
    for path in sorted(folder.glob("generated_mols_*.db")):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            cursor = con.execute("SELECT * FROM results ORDER BY rowid")
            columns = [d[0] for d in cursor.description]
            rows.extend(cursor.fetchall())
    if not columns:
        raise SystemExit(f"no generated_mols_*.db under {folder}")
    return columns, rows


def step_end_times(results: dict[str, Any], steps: int) -> np.ndarray:
    """Seconds from the start of training to the end of each step: the peer's own per-step
    timer (sampling + update) scaled so that the last step ends at its measured wall time, or
    evenly spread steps where the runner did not keep the per-step times."""
    wall = float(results["wall_seconds"])
    per_step = results.get("step_seconds")
    if not per_step or len(per_step) != steps:
        return wall * np.arange(1, steps + 1) / steps
    ends = np.cumsum(np.asarray(per_step, dtype=np.float64))
    return ends * (wall / ends[-1])

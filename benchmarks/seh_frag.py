"""seh-frag benchmark, side by side: gflow's `gflow bench seh-frag` and, when its Python is given,
recursionpharma/gflownet's seh_frag task with the same steps, batch, model size, temperature
distribution, seed and CPU threads.

    .venv/bin/python benchmarks/seh_frag.py [--steps N] [--peer-python /path/to/peer/bin/python]

The peer lives in its own environment (it is not on PyPI: install it from its git repository);
benchmarks/peers/recursion_seh_frag.py runs it there and hands back its timing and the SMILES it
generated, which are scored here with gflow's sEH proxy so that top-K rewards and modes are
computed by one piece of code for both. Without --peer-python the results record why the peer
was not run. Writes benchmarks/results/seh_frag.json and the run's PNGs beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from gflow.envs.rewards import SEHProxy, seh_reward
from rdkit import Chem, rdBase

from gflow.bench.seh_frag import GRID, RESULTS, REWARD_PLOT, SHORT_STEPS, MoleculeLog
from gflow.checkpoint import save_json
from gflow.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = ROOT / "benchmarks" / "peers" / "recursion_seh_frag.py"
RESULTS_DIR = ROOT / "benchmarks" / "results"
MAX_PNG_BYTES = 400_000
"""PNGs larger than this stay in the run folder instead of being copied beside the results."""


def parse_args() -> argparse.Namespace:
    """Benchmark settings."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=SHORT_STEPS, help="training steps, both sides")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--beta-dist", default="uniform:0.5,32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads, both sides")
    p.add_argument("--device", default="cpu")
    p.add_argument("--peer-python", type=Path, default=None, help="Python with gflownet installed")
    p.add_argument("--peer-timeout", type=float, default=6 * 3600, help="seconds")
    p.add_argument("--run-dir", type=Path, default=None, help="gflow run folder (default: temp)")
    p.add_argument("--results", type=Path, default=RESULTS_DIR / "seh_frag.json")
    return p.parse_args()


def run_gflow(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Run `gflow bench seh-frag` in this process and read back its results.json."""
    flags = [
        "bench", "seh-frag", "--steps", str(args.steps), "--batch-size", str(args.batch_size),
        "--hidden", str(args.hidden), "--layers", str(args.layers), "--beta-dist",
        args.beta_dist, "--seed", str(args.seed), "--threads", str(args.threads), "--device",
        args.device, "--out", str(out),
    ]  # fmt: skip
    parsed = build_parser().parse_args(flags)
    parsed.run(parsed)
    return json.loads((out / RESULTS).read_text())


def run_peer(args: argparse.Namespace) -> dict[str, Any]:
    """Run the peer's seh_frag task in its own Python; its JSON report."""
    python = args.peer_python
    if not python.exists():
        raise FileNotFoundError(f"--peer-python {python} does not exist")
    flags = [
        "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--hidden",
        str(args.hidden), "--layers", str(args.layers), "--beta-dist", args.beta_dist,
        "--seed", str(args.seed), "--threads", str(args.threads), "--device", args.device,
    ]  # fmt: skip
    done = subprocess.run(
        [str(python), str(PEER_SCRIPT), *flags],
        capture_output=True,
        text=True,
        timeout=args.peer_timeout,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"the peer exited with status {done.returncode}:\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def score_peer(report: dict[str, Any], proxy: SEHProxy) -> dict[str, Any]:
    """The peer's molecules, in generation order, scored and counted exactly as gflow's are."""
    log = MoleculeLog(seh_reward, threshold=7.5, similarity=0.7)
    with rdBase.BlockLogs():
        mols = [Chem.MolFromSmiles(s) for s in report["smiles"]]
    invalid = sum(m is None for m in mols)
    valid = [m for m in mols if m is not None]
    for start in range(0, len(valid), 512):
        chunk = valid[start : start + 512]
        log.add(chunk, proxy(chunk).double().cpu())
    summary = {k: v for k, v in report.items() if k not in ("smiles", "flat_rewards")}
    return summary | {
        "logged_molecules": len(mols),
        "unparsable_molecules": invalid,
        "top_100_reward": log.top_mean(100),
        "top_1000_reward": log.top_mean(1000),
        "unique_molecules": len(log.smiles),
        "modes": len(log.modes),
    }


def ratios(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    """gflow / peer for throughput, modes and top-K rewards (None where a side lacks a value)."""
    out: dict[str, float | None] = {}
    keys = ("trajectories_per_second", "steps_per_second", "modes", "top_100_reward")
    for key in (*keys, "top_1000_reward"):
        a, b = ours.get(key), peer.get(key)
        out[key] = None if a is None or not b else a / b
    return out


def copy_pngs(run_dir: Path, results: Path) -> dict[str, str]:
    """Copy the run's PNGs beside the results file when small; their new names."""
    copied = {}
    results.parent.mkdir(parents=True, exist_ok=True)
    for name in (GRID, REWARD_PLOT):
        source = run_dir / name
        if source.exists() and source.stat().st_size <= MAX_PNG_BYTES:
            target = results.with_name(f"{results.stem}_{name}")
            shutil.copyfile(source, target)
            copied[name] = target.name
    return copied


def main() -> None:
    """Run both sides, write the side-by-side results."""
    args = parse_args()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="seh_frag_gflow_"))
    ours = run_gflow(args, run_dir)
    ours.pop("step_rewards")
    if args.peer_python is None:
        peer: dict[str, Any] | str = (
            "not available (recursionpharma/gflownet is not on PyPI and this machine cannot "
            "fetch git repositories; install it in its own environment and pass --peer-python)"
        )
    else:
        torch.set_num_threads(args.threads)
        proxy = SEHProxy.from_file(device=args.device)
        peer = score_peer(run_peer(args), proxy)
    results = {
        "benchmark": "seh-frag",
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("peer_python", "run_dir", "results")
        },
        "gflow": ours,
        "peer": peer,
        "gflow_over_peer": ratios(ours, peer) if isinstance(peer, dict) else None,
        "files": copy_pngs(run_dir, args.results),
    }
    save_json(args.results, results)
    sys.stderr.write(f"wrote {args.results}\n")


if __name__ == "__main__":
    main()

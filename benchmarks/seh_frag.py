"""seh-frag side by side: `gflow bench seh-frag` and recursionpharma/gflownet's seh_frag task at
equal settings (steps, batch 64, graph transformer 4 x 128, beta ~ U[0.5, 32] thermometer-encoded,
seed, one torch thread each), one after the other, never at once, load average recorded.

    .venv/bin/python benchmarks/seh_frag.py --peer            # 120 steps each, about 30 minutes
    .venv/bin/python benchmarks/seh_frag.py --steps 20        # gflow alone, a smoke run

With --peer the peer's venv is built with the shared harness's setup.sh (benchmarks/peers/
recursion_gflownet.py) and its own runner trains first; gflow then trains in its own process for
as long as the peer took (the equal-wall budget), so one gflow run gives both the figures at the
peer's step count and those at the peer's wall time. Both sides' figures come from the same code
(`gflow.bench.seh_frag.MoleculeLog`, gflow's sEH proxy): the peer's logged SMILES are re-scored
and replayed step by step. Modes: unique molecules with raw proxy > 7.5 whose Tanimoto similarity
(Morgan radius 2, 2048 bits) to every earlier mode is < 0.7. Writes benchmarks/results/
seh_frag.json (both sides, ratios, peak RSS up to the peer's step count, curves of top-K reward
and modes against steps and seconds, targets) and seh_frag.png with both curves on the same
axes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from rdkit import Chem, rdBase

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gflow.envs.rewards import SEHProxy, seh_reward  # noqa: E402
from peers import recursion_gflownet as peer_side  # noqa: E402
from seh_frag_common import (  # noqa: E402
    RESULTS_DIR,
    add_side_by_side_arguments,
    at_equal_steps,
    check_side_by_side_arguments,
    curve_figure,
    machine,
    per_cpu_second,
    run_gflow,
    within,
)
from seh_frag_common import (
    target as _target,
)

from gflow.bench.seh_frag import MoleculeLog  # noqa: E402
from gflow.checkpoint import save_json  # noqa: E402

MODE_THRESHOLD, MODE_SIMILARITY = 7.5, 0.7
TARGETS = {"traj_per_s_ratio": 25.0, "memory_ratio": 0.1, "modes": 100, "top_1000": 0.9}
"""Issue 12's targets: throughput >= 25x, peak memory <= 1/10, and in the peer's wall time for
its steps >= 100 modes with top-1000 reward >= 0.9."""
METRICS = [
    ("top_100_reward", "top-100 reward"),
    ("top_1000_reward", "top-1000 reward"),
    ("modes", "modes (proxy > 7.5, Tanimoto < 0.7)"),
]


def parse_args() -> argparse.Namespace:
    """Benchmark settings."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_side_by_side_arguments(p, RESULTS_DIR / "seh_frag.json")
    p.add_argument("--repeats", type=int, default=1, help="peer-then-gflow rounds")
    p.add_argument("--peer-partial-rss-mb", type=float, default=None,
                   help="--peer-run did not finish: use its first --steps steps, with this "
                   "peak RSS measured from outside")  # fmt: skip
    peer_side.add_arguments(p)
    args = p.parse_args()
    counts = ["--steps", "--batch-size", "--repeats", "--log-every"]
    check_side_by_side_arguments(p, args, counts)
    return args


def replay_peer(run: peer_side.PeerRun, proxy: SEHProxy, log_every: int) -> dict[str, Any]:
    """The peer's molecules re-scored with gflow's proxy and counted step by step with
    gflow's MoleculeLog: its summary and curve."""
    smiles_at = run.columns.index("smi")
    log = MoleculeLog(seh_reward, MODE_THRESHOLD, MODE_SIMILARITY)
    history = []
    invalid = 0
    for step, rows in enumerate(run.steps, start=1):
        with rdBase.BlockLogs():
            mols = [Chem.MolFromSmiles(r[smiles_at]) if r[smiles_at] else None for r in rows]
        valid = [m for m in mols if m is not None]
        invalid += len(mols) - len(valid)
        if valid:
            with torch.no_grad():
                log.add(valid, proxy(valid).double().cpu())
        if step % log_every == 0 or step == len(run.steps):
            history.append(_entry(log, step, float(run.step_end_seconds[step - 1])))
    results = run.results
    return {
        "steps": len(run.steps),
        "seconds": results["wall_seconds"],
        "trajectories_per_second": results["trajectories_per_second"],
        "peak_rss_mb": results["peak_rss_mb"],
        "setup_seconds": results["setup_seconds"],
        "generated": sum(len(rows) for rows in run.steps),
        "invalid": invalid,
        **_entry(log, len(run.steps), results["wall_seconds"]),
        "top_100_diversity": log.top_diversity(100),
        "peer_own_figures": {
            k: results.get(k)
            for k in ("top100_reward_mean", "top1000_reward_mean", "num_modes", "num_unique")
        },
        "versions": {k: results.get(k) for k in ("peer_commit", "torch", "torch_geometric")},
        "process": run.process,
        "trajectories_per_cpu_second": per_cpu_second(
            len(run.steps) * run.results["batch"], run.process
        ),
        "history": history,
    }


def _entry(log: MoleculeLog, step: int, seconds: float) -> dict[str, Any]:
    return {
        "step": step,
        "seconds": seconds,
        "top_100_reward": log.top_mean(100),
        "top_1000_reward": log.top_mean(1000),
        "modes": len(log.modes),
        "unique": len(log.smiles),
    }


def gflow_side(
    args: argparse.Namespace, out: Path, budget: float | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train `gflow bench seh-frag` at the benchmark's settings (up to `budget` seconds), or
    read the run --gflow-run names."""
    if args.gflow_run is not None:
        return json.loads((args.gflow_run / "results.json").read_text()), {}
    steps = args.steps if budget is None else max(args.steps, 1_000_000)
    command = [
        "bench", "seh-frag", "--steps", str(steps), "--batch-size", str(args.batch_size),
        "--seed", str(args.seed), "--threads", str(args.threads), "--log-every",
        str(args.log_every), "--max-seconds", str(budget or 0), "--head", args.head,
    ]  # fmt: skip
    return run_gflow(command, out)


def compare(args: argparse.Namespace, ours: dict[str, Any], peer: dict[str, Any] | None) -> dict:
    """Figures at the peer's step count and at its wall time, the ratios and the targets."""
    gflow_equal = at_equal_steps(ours, args.steps, args.batch_size)
    out: dict[str, Any] = {"equal_steps": {"gflow": gflow_equal}}
    if peer is None:
        return out
    peer_equal = {k: v for k, v in peer.items() if k != "history"}
    out["equal_steps"]["peer"] = peer_equal
    out["ratios"] = {
        "trajectories_per_second": gflow_equal["trajectories_per_second"]
        / peer_equal["trajectories_per_second"],
        "peak_rss": gflow_equal["peak_rss_mb"] / peer["peak_rss_mb"],
    }
    if peer.get("trajectories_per_cpu_second") and ours.get("trajectories_per_cpu_second"):
        out["ratios"]["trajectories_per_cpu_second"] = (
            ours["trajectories_per_cpu_second"] / peer["trajectories_per_cpu_second"]
        )
    wall = peer["seconds"]
    reached = within(ours["history"], wall)
    out["equal_wall"] = {"seconds": wall, "gflow": reached, "peer": _entry_of(peer)}
    out["targets"] = {
        "trajectories_per_second_ratio": _target(
            out["ratios"]["trajectories_per_second"], ">=", TARGETS["traj_per_s_ratio"]
        ),
        "peak_rss_ratio": _target(out["ratios"]["peak_rss"], "<=", TARGETS["memory_ratio"]),
        "modes_in_peer_wall_time": _target(reached["modes"], ">=", TARGETS["modes"]),
        "top_1000_in_peer_wall_time": _target(
            reached["top_1000_reward"], ">=", TARGETS["top_1000"]
        ),
    }
    return out


def _entry_of(side: dict[str, Any]) -> dict[str, Any]:
    keys = ("step", "seconds", "top_100_reward", "top_1000_reward", "modes", "unique")
    return {k: side[k] for k in keys}


def median_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of the headline ratios (the first round's figures are kept whole)."""
    keys = ("trajectories_per_second", "trajectories_per_cpu_second", "peak_rss")
    ratios = [r["comparison"].get("ratios") for r in rounds if r["comparison"].get("ratios")]
    values = {k: [r[k] for r in ratios if k in r] for k in keys}
    return {k: statistics.median(v) for k, v in values.items() if v}


def main() -> None:
    """Run the rounds, write the JSON and the figure."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="seh_frag_side_by_side_"))
    work.mkdir(parents=True, exist_ok=True)
    use_peer = args.peer or args.peer_run is not None
    python = harness = None
    if args.peer and args.peer_run is None:
        python, harness = peer_side.ensure_peer(args)
    proxy = SEHProxy.from_file(None)
    rounds = []
    for r in range(args.repeats):
        peer = None
        if use_peer:
            folder = args.peer_run or work / f"peer_{r}"
            if args.peer_run is None:
                sys.stderr.write(f"round {r}: peer, {args.steps} steps\n")
                run = peer_side.run(python, harness, "run_seh_frag.py", folder, args.steps,
                                    args.seed, args.batch_size, args.threads)  # fmt: skip
            elif args.peer_partial_rss_mb is not None:
                run = peer_side.load_partial(folder, args.steps, args.batch_size,
                                             args.peer_partial_rss_mb)  # fmt: skip
            else:
                run = peer_side.load(folder, args.steps, args.batch_size)
            peer = replay_peer(run, proxy, args.log_every)
            peer["reused_from"] = None if args.peer_run is None else str(args.peer_run)
        budget = args.gflow_seconds or (peer["seconds"] if peer else None)
        sys.stderr.write(f"round {r}: gflow, budget {budget} s\n")
        ours, process = gflow_side(args, work / f"gflow_{r}", budget)
        ours = {k: v for k, v in ours.items() if k not in ("step_rewards", "top_molecules")}
        ours["process"] = process
        rounds.append({"gflow": ours, "peer": peer, "comparison": compare(args, ours, peer)})
    first = rounds[0]
    results = {
        "benchmark": "seh-frag side by side",
        "peer_task": "recursionpharma/gflownet seh_frag (shared harness runner run_seh_frag.py)",
        "settings": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "threads_per_side": args.threads,
            "model": "graph transformer 4 layers x 128 on both sides",
            "beta": "U[0.5, 32], 32-bin thermometer, both sides",
            "order": "peer, then gflow, never at once",
            "gflow_budget": "the peer's wall time (equal wall); equal-step figures are read at "
            "the peer's step count in the same gflow run",
            "modes": f"raw proxy > {MODE_THRESHOLD}, Tanimoto < {MODE_SIMILARITY} to every "
            "earlier mode (Morgan r=2, 2048 bits); both sides scored by gflow's proxy and "
            "MoleculeLog",
            "peer_seconds_axis": "the peer's own per-step timer, scaled to its measured wall "
            "time",
        },
        "note": args.note,
        "gflow_reused_from": None if args.gflow_run is None else str(args.gflow_run),
        "machine": machine(args.threads),
        "comparison": first["comparison"],
        "median_over_rounds": median_summary(rounds),
        "rounds": rounds,
        "figure": args.results.with_suffix(".png").name,
    }
    save_json(args.results, results)
    curves = {"gflow": first["gflow"]["history"]}
    marks = {}
    if first["peer"] is not None:
        curves["peer"] = first["peer"]["history"]
        marks["peer wall time"] = first["peer"]["seconds"]
    title = f"seh-frag, batch {args.batch_size}, {args.threads} thread(s) each"
    curve_figure(args.results.with_suffix(".png"), title, curves, METRICS, marks)
    sys.stderr.write(json.dumps(first["comparison"], indent=1, default=str) + "\n")
    sys.stderr.write(f"wrote {args.results}\n")


if __name__ == "__main__":
    main()

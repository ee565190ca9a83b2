"""seh-frag-moo side by side: `gflow bench seh-frag-moo --objectives seh,qed` and
recursionpharma/gflownet's seh_frag_moo task at equal settings (steps, batch 64, graph transformer
4 x 128, preferences w ~ Dirichlet(1.5) and beta ~ U[0.5, 32] as the peer's Config samples them,
weighted-sum scalarisation, seed, one torch thread each), one after the other, load average
recorded.

    .venv/bin/python benchmarks/seh_frag_moo.py --peer      # 120 steps each, about 30 minutes
    .venv/bin/python benchmarks/seh_frag_moo.py --steps 20  # gflow alone, a smoke run

With --peer the peer (built by the shared harness's setup.sh, benchmarks/peers/
recursion_gflownet.py) trains first with its own runner; gflow then trains in its own process for
as long as the peer took. The peer's figure, the hypervolume (reference 0) of the non-dominated
set of every (sEH, QED) vector generated during training with sEH = clip(proxy / 8, 1e-4, 100),
is computed for both sides by the same code: each side's generated SMILES, step by step, are
re-scored with gflow's sEH proxy and RDKit's QED and swept by
`gflow.bench.seh_frag_moo.front_curve`. gflow's MOGFN evaluation (simplex grid of preferences,
top-K, R2) is kept from its own results. Writes benchmarks/results/seh_frag_moo.json and
seh_frag_moo.png (hypervolume against steps and against seconds, both sides on the same axes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem, rdBase

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gflow.envs.rewards import SEHProxy, qed  # noqa: E402
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
    target,
    within,
)

from gflow.bench.seh_frag_moo import GENERATED, front_curve, peer_seh  # noqa: E402
from gflow.checkpoint import save_json  # noqa: E402

TARGETS = {"traj_per_s_ratio": 10.0}
"""Issue 12's targets: throughput >= 10x the peer's; hypervolume >= the peer's at equal steps."""
BUDGET_STEPS = 5_000
"""Step cap of a run with a time budget: MOGFN runs log their loss every steps / 100 steps, so a
cap far beyond what the budget allows would leave the loss curve empty."""
METRICS = [("hypervolume", "hypervolume of generated (sEH, QED)"), ("rss_mb", "RSS (MB)")]


def parse_args() -> argparse.Namespace:
    """Benchmark settings."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_side_by_side_arguments(p, RESULTS_DIR / "seh_frag_moo.json")
    peer_side.add_arguments(p)
    args = p.parse_args()
    check_side_by_side_arguments(p, args, ["--steps", "--batch-size", "--log-every"])
    return args


def vectors(smiles: Sequence[str], proxy: SEHProxy) -> np.ndarray:
    """(n, 2) (sEH as the peer logs it, QED) of molecules given as SMILES (unparsable: floor, 0)."""
    with rdBase.BlockLogs():
        mols = [Chem.MolFromSmiles(s) if s else None for s in smiles]
    out = np.zeros((len(mols), 2))
    out[:, 0] = 1e-4
    valid = [i for i, m in enumerate(mols) if m is not None]
    if valid:
        chosen = [mols[i] for i in valid]
        with torch.no_grad():
            out[valid, 0] = peer_seh(proxy(chosen).cpu()).numpy()
        out[valid, 1] = qed(chosen).double().numpy()
    return out


def hypervolume_curve(
    steps: list[list[str]], seconds: Sequence[float], proxy: SEHProxy, log_every: int
) -> tuple[list[dict[str, Any]], int]:
    """Hypervolume of everything generated up to each `log_every`-th step (and the last), with
    the same scoring for both sides; the curve and the final front's size."""
    batches = [vectors(smiles, proxy) for smiles in steps]
    n = len(batches)
    marks = sorted({*range(log_every, n + 1, log_every), n})
    values, front = front_curve(batches, marks)
    curve = [
        {"step": m, "seconds": float(seconds[m - 1]), "hypervolume": v}
        for m, v in zip(marks, values, strict=True)
    ]
    return curve, len(front)


def peer_figures(run: peer_side.PeerRun, proxy: SEHProxy, log_every: int) -> dict[str, Any]:
    """The peer's speed, memory and hypervolume curve (scored as gflow's)."""
    at = run.columns.index("smi")
    steps = [[row[at] for row in rows] for rows in run.steps]
    curve, front = hypervolume_curve(steps, run.step_end_seconds, proxy, log_every)
    results = run.results
    return {
        "steps": len(steps),
        "seconds": results["wall_seconds"],
        "trajectories_per_second": results["trajectories_per_second"],
        "peak_rss_mb": results["peak_rss_mb"],
        "hypervolume": curve[-1]["hypervolume"],
        "pareto_points": front,
        "peer_own_hypervolume": results.get("hypervolume"),
        "preferences": results.get("config", {}).get("preferences"),
        "temperature": results.get("config", {}).get("temperature"),
        "process": run.process,
        "trajectories_per_cpu_second": per_cpu_second(
            len(steps) * run.results["batch"], run.process
        ),
        "history": curve,
    }


def gflow_figures(
    args: argparse.Namespace, out: Path, budget: float | None, proxy: SEHProxy
) -> dict[str, Any]:
    """Train gflow at the benchmark's settings (up to `budget` seconds), then score what it
    generated as the peer's side is scored."""
    steps = args.steps if budget is None else max(args.steps, BUDGET_STEPS)
    if args.gflow_run is not None:
        out = args.gflow_run
    command = [
        "bench", "seh-frag-moo", "--objectives", "seh,qed", "--steps", str(steps),
        "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--threads",
        str(args.threads), "--eval-every", "0", "--samples", "16", "--max-seconds",
        str(budget or 0), "--head", args.head,
    ]  # fmt: skip
    if args.gflow_run is None:
        results, process = run_gflow(command, out)
    else:
        results, process = json.loads((out / "results.json").read_text()), {}
    generated = json.loads((out / GENERATED).read_text())
    seconds = [g["seconds"] for g in generated]
    curve, front = hypervolume_curve([g["smiles"] for g in generated], seconds, proxy,
                                     args.log_every)  # fmt: skip
    rss = {m["step"]: m["rss_mb"] for m in results["generated"]["curve"]}
    for point in curve:
        point["rss_mb"] = generated[point["step"] - 1]["rss_mb"]
        point["peak_rss_mb"] = generated[point["step"] - 1].get("peak_rss_mb")
    training = results["training"]
    return {
        "steps": training["steps"],
        "seconds": training["train_seconds"],
        "trajectories_per_second": training["trajectories_per_second"],
        "peak_rss_mb": results["peak_rss_mb"],
        "rss_mb_first_last": [min(rss.items())[1], max(rss.items())[1]] if rss else None,
        "hypervolume": curve[-1]["hypervolume"],
        "pareto_points": front,
        "own_generated_hypervolume": results["generated"]["hypervolume"],
        "mogfn_evaluation": {
            k: results["evaluation"].get(k)
            for k in ("hypervolume", "r2", "top_k_reward", "top_k_diversity", "k",
                      "n_preferences", "samples_per_preference", "beta")
        },  # fmt: skip
        "settings": results["settings"],
        "process": process,
        "trajectories_per_cpu_second": per_cpu_second(
            training["steps"] * args.batch_size, process
        ),
        "history": curve,
    }


def compare(args: argparse.Namespace, ours: dict[str, Any], peer: dict[str, Any] | None) -> dict:
    """Figures at the peer's step count and at its wall time, the ratios and the targets."""
    gflow_equal = at_equal_steps(ours, args.steps, args.batch_size)
    out: dict[str, Any] = {"equal_steps": {"gflow": gflow_equal}}
    if peer is None:
        return out
    out["equal_steps"]["peer"] = {k: v for k, v in peer.items() if k != "history"}
    ratio = gflow_equal["trajectories_per_second"] / peer["trajectories_per_second"]
    out["ratios"] = {
        "trajectories_per_second": ratio,
        "peak_rss": gflow_equal["peak_rss_mb"] / peer["peak_rss_mb"],
        "hypervolume_equal_steps": gflow_equal["hypervolume"] / peer["hypervolume"],
    }
    if ours["trajectories_per_cpu_second"] and peer["trajectories_per_cpu_second"]:
        out["ratios"]["trajectories_per_cpu_second"] = (
            ours["trajectories_per_cpu_second"] / peer["trajectories_per_cpu_second"]
        )
    reached = within(ours["history"], peer["seconds"])
    out["equal_wall"] = {"seconds": peer["seconds"], "gflow": reached,
                         "peer": peer["history"][-1]}  # fmt: skip
    out["targets"] = {
        "trajectories_per_second_ratio": target(ratio, ">=", TARGETS["traj_per_s_ratio"]),
        "hypervolume_equal_steps": target(gflow_equal["hypervolume"], ">=", peer["hypervolume"]),
        "hypervolume_equal_wall": target(reached["hypervolume"], ">=", peer["hypervolume"]),
    }
    return out


def main() -> None:
    """Run both sides, write the JSON and the figure."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="seh_frag_moo_side_by_side_"))
    work.mkdir(parents=True, exist_ok=True)
    proxy = SEHProxy.from_file(None)
    peer = None
    if args.peer_run is not None:
        run = peer_side.load(args.peer_run, args.steps, args.batch_size)
        peer = peer_figures(run, proxy, args.log_every) | {"reused_from": str(args.peer_run)}
    elif args.peer:
        python, harness = peer_side.ensure_peer(args)
        sys.stderr.write(f"peer: {args.steps} steps\n")
        run = peer_side.run(python, harness, "run_seh_frag_moo.py", work / "peer", args.steps,
                            args.seed, args.batch_size, args.threads)  # fmt: skip
        peer = peer_figures(run, proxy, args.log_every) | {"reused_from": None}
    budget = args.gflow_seconds or (peer["seconds"] if peer else None)
    sys.stderr.write(f"gflow: budget {budget} s\n")
    ours = gflow_figures(args, work / "gflow", budget, proxy)
    comparison = compare(args, ours, peer)
    results = {
        "benchmark": "seh-frag-moo side by side",
        "peer_task": "recursionpharma/gflownet seh_frag_moo (shared harness runner "
        "run_seh_frag_moo.py; focus regions off, online Pareto monitor on)",
        "settings": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "threads_per_side": args.threads,
            "objectives": ["seh", "qed"],
            "conditioning": "w ~ Dirichlet(1.5) (the peer's Config default for training), beta ~ "
            "U[0.5, 32] with a 32-bin thermometer, weighted sum, both sides",
            "order": "peer, then gflow, never at once",
            "gflow_budget": "the peer's wall time; equal-step figures read at the peer's step "
            "count in the same gflow run",
            "hypervolume": "reference 0, non-dominated set of every generated (clip(proxy / 8, "
            "1e-4, 100), QED), both sides re-scored from SMILES by gflow's proxy and RDKit QED",
            "peer_seconds_axis": "the peer's own per-step timer, scaled to its wall time",
            "gflow_seconds_axis": "training seconds when each batch was scored",
        },
        "note": args.note,
        "gflow_reused_from": None if args.gflow_run is None else str(args.gflow_run),
        "machine": machine(args.threads),
        "comparison": comparison,
        "gflow": ours,
        "peer": peer,
        "figure": args.results.with_suffix(".png").name,
    }
    save_json(args.results, results)
    curves = {"gflow": ours["history"]}
    marks = {}
    if peer is not None:
        curves["peer"] = peer["history"]
        marks["peer wall time"] = peer["seconds"]
    title = f"seh-frag-moo (sEH, QED), batch {args.batch_size}, {args.threads} thread(s) each"
    curve_figure(args.results.with_suffix(".png"), title, curves, METRICS[:1], marks)
    sys.stderr.write(json.dumps(comparison, indent=1, default=str) + f"\nwrote {args.results}\n")


if __name__ == "__main__":
    main()

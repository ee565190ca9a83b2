"""Time gflow.metrics.hypervolume against moocore called directly and botorch's Hypervolume,
in-process on this machine, and check that they agree; writes a JSON report.

    python benchmarks/hypervolume_speed.py [--out benchmarks/results/hypervolume_speed.json]

Points are mutually non-dominated (on the positive unit sphere: the hardest case, every point
is on the front), maximized, reference point at the origin. botorch runs in a child process
per case with a time limit; a case that does not finish records the limit as a lower bound.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
import timeit
from importlib.metadata import version
from pathlib import Path

import moocore
import numpy as np

from gflow.bench.machine import machine_info
from gflow.metrics import hypervolume

CASES = ((2, 1000), (3, 1000), (4, 100), (4, 300), (4, 1000), (5, 100))
TARGET_CASE = (4, 1000)
TOLERANCE = 1e-9
DEFAULT_OUT = Path(__file__).parent / "results" / "hypervolume_speed.json"


def sphere_points(n_objectives: int, n_points: int, seed: int = 0) -> np.ndarray:
    """n mutually non-dominated points on the positive unit sphere."""
    x = np.abs(np.random.default_rng(seed).normal(size=(n_points, n_objectives)))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def time_call(function, repeats: int) -> dict[str, float]:
    """Best and median seconds per call over `repeats` timeit rounds of auto-ranged length."""
    timer = timeit.Timer(function)
    number, _ = timer.autorange()
    rounds = [t / number for t in timer.repeat(repeat=repeats, number=number)]
    return {"best_s": min(rounds), "median_s": statistics.median(rounds), "calls": number}


def _botorch_child(points: np.ndarray, budget_s: float, pipe) -> None:
    """Child process: say "ready" after the imports, then time botorch's Hypervolume on
    `points` (best and median of the runs that fit in a tenth of budget_s, at least one)."""
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    tensor = torch.as_tensor(points, dtype=torch.float64)
    engine = Hypervolume(torch.zeros(points.shape[1], dtype=torch.float64))
    pipe.send("ready")
    times, started = [], time.perf_counter()
    while not times or (time.perf_counter() - started < budget_s / 10 and len(times) < 5):
        tic = time.perf_counter()
        value = engine.compute(tensor)
        times.append(time.perf_counter() - tic)
    pipe.send({"value": value, "best_s": min(times), "median_s": statistics.median(times)})


def time_botorch(points: np.ndarray, timeout_s: float) -> dict[str, object]:
    """botorch's time on `points` in a child process, or timeout_s (counted from the end of the
    child's imports) as a lower bound if it has not finished by then."""
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_botorch_child, args=(points, timeout_s, send), daemon=True)
    child.start()
    try:
        if not receive.poll(300) or receive.recv() != "ready":
            raise RuntimeError(f"botorch child failed to start (exit code {child.exitcode})")
        if receive.poll(timeout_s):
            return {"finished": True, **receive.recv()}
        return {"finished": False, "lower_bound_s": timeout_s}
    except EOFError:
        raise RuntimeError(f"botorch child died (exit code {child.exitcode})") from None
    finally:
        if child.is_alive():
            child.terminate()
        child.join()


def machine() -> dict[str, object]:
    """Where the benchmark ran (`gflow.bench.machine.machine_info`) and the library versions."""
    versions = {name: version(name) for name in ("numpy", "moocore", "botorch", "torch")}
    return machine_info() | {"load_average_1m_at_start": os.getloadavg()[0]} | versions


def relative(a: float, b: float) -> float:
    """Relative difference of two positive numbers."""
    return abs(a - b) / max(abs(a), abs(b))


def run_case(n_objectives: int, n_points: int, repeats: int, timeout_s: float) -> dict:
    """Times, values, agreement and ratios for one (objectives, points) case."""
    points, ref = sphere_points(n_objectives, n_points), np.zeros(n_objectives)
    ours = hypervolume(points, ref)
    direct = moocore.hypervolume(points, ref=ref, maximise=True)
    case = {
        "n_objectives": n_objectives,
        "n_points": n_points,
        "hypervolume": ours,
        "gflow": time_call(lambda: hypervolume(points, ref), repeats),
        "moocore": time_call(lambda: moocore.hypervolume(points, ref=ref, maximise=True), repeats),
        "botorch": time_botorch(points, timeout_s),
        "rel_diff_moocore": relative(ours, direct),
    }
    case["gflow_over_moocore"] = case["gflow"]["median_s"] / case["moocore"]["median_s"]
    if case["botorch"]["finished"]:
        case["rel_diff_botorch"] = relative(ours, case["botorch"]["value"])
        case["botorch_over_gflow"] = case["botorch"]["median_s"] / case["gflow"]["median_s"]
    else:
        case["botorch_over_gflow_at_least"] = timeout_s / case["gflow"]["median_s"]
    diffs = (case["rel_diff_moocore"], case.get("rel_diff_botorch", 0.0))
    case["agree"] = all(diff <= TOLERANCE for diff in diffs)
    return case


def main() -> None:
    """Run every case, print a summary line per case, write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=7, help="timeit rounds per engine")
    parser.add_argument("--botorch-timeout", type=float, default=400.0, help="seconds per case")
    args = parser.parse_args()
    report = {"machine": machine(), "tolerance": TOLERANCE, "cases": []}
    for n_objectives, n_points in CASES:
        case = run_case(n_objectives, n_points, args.repeats, args.botorch_timeout)
        report["cases"].append(case)
        botorch = case["botorch"]
        botorch_s = botorch["median_s"] if botorch["finished"] else f">{botorch['lower_bound_s']}"
        print(
            f"{n_objectives} x {n_points}: gflow {case['gflow']['median_s']:.3g}s, "
            f"moocore {case['moocore']['median_s']:.3g}s, botorch {botorch_s}s, "
            f"agree={case['agree']}",
            flush=True,
        )
    target = next(c for c in report["cases"] if (c["n_objectives"], c["n_points"]) == TARGET_CASE)
    speedup = target.get("botorch_over_gflow", target.get("botorch_over_gflow_at_least"))
    report["targets"] = {
        "case": list(TARGET_CASE),
        "at_least_100x_faster_than_botorch": speedup >= 100,
        "within_10x_of_moocore": target["gflow_over_moocore"] <= 10,
        "exact_to_1e-9_relative": all(c["agree"] for c in report["cases"]),
    }
    report["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["targets"]))


if __name__ == "__main__":
    main()

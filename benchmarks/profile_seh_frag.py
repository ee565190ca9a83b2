"""CPU time and memory of a `gflow bench seh-frag` step, phase by phase, and before/after pairs.

One run trains the benchmark's own trainer (`gflow.bench.seh_frag.build_trainer`: batch 64, graph
transformer 4 x 128, beta ~ U[0.5, 32], TB, one torch thread) with its molecule log, as
`train_fragments` does. The first `--warmup` steps are untimed; the next `--steps` are timed with
this process's CPU clock, phase by phase with the timers of `profile_hypergrid.py` (sampling and
its parts: policy forward passes with featurization, masks, draws, env steps, reward; scoring;
loss; backward; optimizer; the molecule log). It also records the resident memory after the
imports, after building the trainer and at the end, and the peak (`ru_maxrss`).

With `--compare TREE` it runs itself `--rounds` times on each of two code trees, interleaved
(TREE first, then this checkout, in separate processes; TREE is put first on PYTHONPATH, e.g. an
export of an earlier commit: `git archive COMMIT gflow | tar -x -C /tmp/before`), and writes
both sides' runs, the load average around each, and the ratios of their medians. `--compile`
wraps each graph transformer block in `torch.compile` (inductor, dynamic shapes) and records the
first warm-up step's seconds, which include the compilation; with `--compare` only this checkout's
side is compiled, so `--compare` on an export of the same commit measures compiled against eager.

    .venv/bin/python benchmarks/profile_seh_frag.py --steps 40
    .venv/bin/python benchmarks/profile_seh_frag.py --compare /tmp/before --rounds 3 \\
        --out benchmarks/results/profile_seh_frag.json
    .venv/bin/python benchmarks/profile_seh_frag.py --compare /tmp/head --compile --rounds 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "profile_seh_frag.json"
PHASES = ("sampling", "scoring", "loss", "backward", "optimizer", "molecule log")
SAMPLING_PARTS = ("policy forward", "masks", "draws", "env steps", "reward")


def rss_mb() -> float:
    """Resident memory now, in MB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the benchmark's settings."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=40, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-phases", action="store_true", help="time whole steps only")
    p.add_argument("--label", default="current", help="name of this run in the report")
    p.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks")
    p.add_argument("--compare", type=Path, default=None, help="code tree to compare against")
    p.add_argument("--rounds", type=int, default=2, help="interleaved runs per side (--compare)")
    p.add_argument("--out", type=Path, default=None, help="JSON report (default: stdout only)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        p.error("--steps and --rounds must be >= 1, --warmup >= 0")
    if args.compare is not None and not (args.compare / "gflow" / "__init__.py").is_file():
        p.error(f"--compare {args.compare}: no gflow package there")
    return args


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """Train `warmup` steps, then time `steps` more phase by phase."""
    import torch

    rss_torch = rss_mb()
    from gflow.envs.rewards import SEHProxy, seh_reward
    from profile_hypergrid import PhaseClock, instrument

    import gflow
    from gflow.bench.seh_frag import (
        MoleculeLog,
        RecordingReward,
        SEHFragConfig,
        build_trainer,
    )
    from gflow.checkpoint import seed_everything

    rss_imports = rss_mb()
    torch.set_num_threads(1)
    config = SEHFragConfig(seed=args.seed, steps=args.warmup + args.steps)
    seed_everything(config.seed)
    proxy = SEHProxy.from_file(None, device="cpu")
    # the benchmark's scorer; a tree from before score_sanitized scores through __call__
    reward = RecordingReward(getattr(proxy, "score_sanitized", proxy), seh_reward)
    trainer = build_trainer(config, reward)
    if args.compile:
        blocks = trainer.policy.blocks
        for i, block in enumerate(blocks):
            blocks[i] = torch.compile(block, dynamic=True)
    log = MoleculeLog(seh_reward, config.mode_threshold, config.mode_similarity)
    rss_built = rss_mb()
    clock = PhaseClock(time.process_time)

    def step() -> None:
        trainer.train_step()
        with clock.timing("molecule log"):
            for batch in reward.drain():
                log.add(*batch)

    warmup_seconds = []
    for _ in range(args.warmup):
        before = time.perf_counter()
        step()
        warmup_seconds.append(time.perf_counter() - before)
    if not args.no_phases:
        instrument(trainer, clock)
        trainer.env.log_reward = clock.wrap_part("reward", trainer.env.log_reward)
    lengths: list[float] = []
    per_step: list[float] = []
    start = time.process_time()
    for _ in range(args.steps):
        before = time.process_time()
        step()
        per_step.append(time.process_time() - before)
        lengths.append(float(trainer.last_batch.lengths.float().mean()))
    total = time.process_time() - start
    n = args.steps

    def entry(seconds: float) -> dict[str, float]:
        return {"ms": 1e3 * seconds / n, "share": seconds / total}

    seconds = clock.seconds
    phases = {p: entry(seconds.get((p, ""), 0.0)) for p in PHASES}
    phases["other"] = entry(total - sum(seconds.get((p, ""), 0.0) for p in PHASES))
    sampled = seconds.get(("sampling", ""), 0.0)
    parts = {p: entry(seconds.get(("sampling", p), 0.0)) for p in SAMPLING_PARTS}
    parts["rest"] = entry(sampled - sum(seconds.get(("sampling", p), 0.0) for p in SAMPLING_PARTS))
    return {
        "label": args.label,
        "compiled_blocks": args.compile,
        "first_step_seconds": warmup_seconds[0] if warmup_seconds else None,
        "gflow": str(Path(gflow.__file__).parent),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg": list(os.getloadavg()),
        "torch": torch.__version__,
        "setting": {
            "steps": n,
            "warmup": args.warmup,
            "seed": args.seed,
            "batch": 64,
            "hidden": config.hidden,
            "layers": config.layers,
            "threads": 1,
            "phases_timed": not args.no_phases,
        },
        "cpu_seconds_per_step": total / n,
        "cpu_seconds_per_step_median": statistics.median(per_step),
        "mean_trajectory_length": sum(lengths) / len(lengths),
        "phases": phases,
        "sampling_parts": parts,
        "rss_mb": {
            "after_torch": rss_torch,
            "after_imports": rss_imports,
            "after_build": rss_built,
            "end": rss_mb(),
            "peak": peak_mb(),
        },
    }


def markdown(report: dict[str, Any]) -> str:
    """One run as a table: phases, the parts of sampling indented."""
    from timing import phase_rows

    rss = report["rss_mb"]
    rows = [
        f"`{report['label']}`: {report['cpu_seconds_per_step']:.3f} CPU s/step (median "
        f"{report['cpu_seconds_per_step_median']:.3f}), mean length "
        f"{report['mean_trajectory_length']:.2f}, load {report['loadavg'][0]:.2f}; RSS MB: "
        f"torch {rss['after_torch']:.0f}, imports {rss['after_imports']:.0f}, built "
        f"{rss['after_build']:.0f}, end {rss['end']:.0f}, peak {rss['peak']:.0f}",
        "",
        *phase_rows(report, "step", 1),
    ]
    return "\n".join(rows) + "\n"


def run_side(tree: Path | None, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """One profile in a fresh process, on `tree` (None: this checkout)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        command = [
            sys.executable,
            __file__,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--seed",
            str(args.seed),
            "--label",
            label,
            "--out",
            str(out),
        ]
        if args.no_phases:
            command.append("--no-phases")
        if args.compile and tree is None:
            command.append("--compile")
        subprocess.run(command, env=env, check=True)
        return json.loads(out.read_text())


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved runs of both trees and the ratios of their medians."""
    sides: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        sides["before"].append(run_side(args.compare.resolve(), args, "before"))
        sides["after"].append(run_side(None, args, "after"))

    def median(side: str, *keys: str) -> float:
        values = []
        for run in sides[side]:
            value: Any = run
            for key in keys:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    summary = {}
    for name, keys in {
        "cpu_seconds_per_step": ("cpu_seconds_per_step",),
        "peak_rss_mb": ("rss_mb", "peak"),
    }.items():
        before, after = median("before", *keys), median("after", *keys)
        summary[name] = {"before": before, "after": after, "after_over_before": after / before}
    return {"compare": str(args.compare), "rounds": args.rounds, "summary": summary, **sides}


def main(argv: list[str] | None = None) -> None:
    """Profile (or compare), print the tables, write the JSON report when asked."""
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    report = compare(args) if args.compare is not None else profile(args)
    runs = report["before"] + report["after"] if args.compare is not None else [report]
    print("\n".join(markdown(run) for run in runs))
    if args.compare is not None:
        print(json.dumps(report["summary"], indent=1))
    if args.out is not None:
        from gflow.checkpoint import atomic_write

        data = json.dumps(report, indent=1).encode()
        atomic_write(args.out, lambda f: f.write(data))


if __name__ == "__main__":
    main()

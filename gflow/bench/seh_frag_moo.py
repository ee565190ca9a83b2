"""`gflow bench seh-frag-moo`: MOGFN-PC (Jain et al. 2023) on fragment molecules with any subset
of four objectives (`--objectives`, default all), sEH binding proxy, QED, synthetic
accessibility and molecular weight (`gflow.envs.molecules.objectives`), a graph transformer
policy (4 layers x 128) conditioned on the preference and beta, batches of 64, and by default the
conditioning recursionpharma/gflownet's seh_frag_moo task trains with: preferences from
Dirichlet(1.5) (its `Config` default; it validates on Dirichlet(1)) and beta ~ U[0.5, 32] with a
32-bin thermometer.

It reports the peer's figure, the hypervolume (reference 0) of the non-dominated set of every
objective vector generated during training, with sEH as the peer logs it (clip(proxy / 8, 1e-4,
100)), and its curve against steps and training seconds; then the MOGFN evaluation
(`gflow.bench.mogfn_eval`) with Tanimoto diversity, the Pareto-front pair plots and a grid of the
best molecule per preference. Every molecule training generates is recorded in the sample store
(OUT/samples.sqlite unless --store: SMILES, objective vector, preference, beta, step, worker) and
the generated-hypervolume figure is computed from the store; generated.json lists the same
molecules per step with the training clock (seconds, SMILES, objective vectors)."""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem

from gflow.bench import mogfn_pc
from gflow.bench.molecule_grid import save_molecule_grid
from gflow.bench.seh_frag import add_head_argument, peak_rss_mb, rss_mb
from gflow.checkpoint import save_json
from gflow.device import resolve_device
from gflow.envs.molecules.objectives import OBJECTIVE_NAMES, FragmentObjectivesEnv
from gflow.envs.rewards import SEHProxy
from gflow.metrics import hypervolume, pareto_front
from gflow.store import SampleStore, StoreCallback
from gflow.training import Trainer

NAME = "seh-frag-moo"
ENV = None
"""No registered environment: the benchmark declares its options itself."""
HELP = "MOGFN-PC on fragment molecules: sEH, QED, SA, MW; graph transformer 4x128"
MOLECULE_GRID = "best_molecules.png"
GENERATED = "generated.json"
STORE = "samples.sqlite"
SEH_FLOOR, SEH_CEILING = 1e-4, 100.0
"""The peer's sEH flat reward: clip(proxy / 8, 1e-4, 100)."""
CURVE_POINTS = 60
"""Points of the generated-hypervolume curve."""
SHORT = mogfn_pc.Preset(
    steps=200,
    hidden=128,
    layers=4,
    lr=5e-4,
    alpha=1.5,
    beta_min=0.5,
    grid=5,
    samples=32,
    eval_every=100,
    curve_samples=4,
)
"""~3 minutes on one CPU thread: few steps, 32 rather than 128 samples per preference."""
PAPER = replace(SHORT, steps=20_000, samples=128, eval_every=1000, curve_samples=16)
"""MOGFN's setting: 35 preferences x 128 samples at the largest beta, top-10."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The task's options (--max-fragments, --proxy, --fragments) and MOGFN-PC's."""
    parser.add_argument(
        "--objectives",
        default=",".join(OBJECTIVE_NAMES),
        help=f"comma-separated subset of {','.join(OBJECTIVE_NAMES)} (default all four)",
    )
    parser.add_argument("--max-fragments", type=int, default=9, help="fragments per molecule")
    parser.add_argument(
        "--stop",
        choices=("gate", "flat"),
        default="gate",
        help="gate (default): the policy's stop logit is a stop-or-continue gate, so an untrained "
        "policy stops with probability 1/2 at each step; flat: one logit among the thousands of "
        "attachments, so it nearly always grows to --max-fragments",
    )
    add_head_argument(parser)
    parser.add_argument("--proxy", default=None, help="sEH proxy weights (.npz or .pkl.gz)")
    parser.add_argument("--fragments", default=None, help="fragment vocabulary JSON")
    parser.add_argument(
        "--store",
        default=None,
        help=f"sample store (SQLite; default OUT/{STORE}) recording every generated molecule; "
        "the generated hypervolume is computed from it (its earlier samples are replaced)",
    )
    mogfn_pc.add_arguments(parser, SHORT, PAPER)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate; writes results.json, the plots and the molecule grid under args.out."""
    proxy = SEHProxy.from_file(args.proxy, device=resolve_device(args.device))
    base = FragmentObjectivesEnv(
        proxy.score_sanitized,
        args.fragments,
        args.max_fragments,
        device=resolve_device(args.device),
        objectives=args.objectives,
    )
    out = Path(args.out)
    store = SampleStore(args.store or out / STORE)
    generated = GeneratedLog(base.objective_names)
    base.record = generated
    task = mogfn_pc.Task(
        name=NAME,
        base=base,
        objective_names=base.objective_names,
        describe=base.to_smiles,
        distance="tanimoto",
        notes={
            "env": f"fragments ({base.n_types} types), up to {args.max_fragments} per molecule",
            "objectives": "sEH clip(proxy / 8, 0, 1); QED; SA (10 - SA) / 9; "
            "MW clip((300 - MW) / 700 + 1, 0, 1); all in [0, 1], larger is better",
            "conditioning": "default: recursionpharma/gflownet's (w ~ Dirichlet(1.5), beta ~ "
            "U[0.5, 32], 32-bin thermometer); its own code validates on Dirichlet(1)",
            "policy": "graph transformer conditioned on (w, beta), as MOGFN's seh-frag-moo; "
            + (
                "stop-or-continue gate on the stop logit (--stop gate)"
                if args.stop == "gate"
                else "plain stop logit (--stop flat)"
            )
            + (
                "; factored head: attachment slot, then fragment and slot (--head factored)"
                if args.head == "factored"
                else "; one softmax over all attachments (--head flat)"
            ),
            "diversity": "mean pairwise Tanimoto distance (Morgan radius 2, 2048 bits) of the "
            "top-K molecules of each preference",
            "samples": "short preset: 32 samples per preference (MOGFN: 128, --paper)",
            "molecule_grid": "the best molecule (largest scalarized reward) of each preference",
        },
        recording=generated.recording,
        callbacks=[StoreCallback(store, generated.components)],
        model_options={"stop_gate": args.stop == "gate", "factored_head": args.head == "factored"},
    )
    with store:
        results = mogfn_pc.run_mogfn(args, task, SHORT, PAPER)
        steps = generated.read(store)
    results["generated"] = generated.summary(steps) | {"store": str(store.path)}
    results["peak_rss_mb"] = peak_rss_mb()
    save_json(out / GENERATED, steps)
    table = results["evaluation"]["per_preference"]
    save_molecule_grid(
        out / MOLECULE_GRID,
        [row["best_item"] for row in table],
        [_legend(row, base.objective_names) for row in table],
        per_row=7,
        panel=250,
    )
    results["plots"].append(MOLECULE_GRID)
    save_json(out / mogfn_pc.RESULTS, results)
    return results


def peer_seh(raw: torch.Tensor) -> torch.Tensor:
    """The sEH column as the peer logs it: clip(proxy / 8, 1e-4, 100) (-inf gives the floor)."""
    return (raw.double() / 8).clamp(SEH_FLOOR, SEH_CEILING)


def front_curve(batches: list[np.ndarray], marks: list[int]) -> tuple[list[float], np.ndarray]:
    """Hypervolume (reference 0, all objectives maximised) of the non-dominated set of every
    vector in `batches[:m]` for each m in `marks` (increasing), and the final front."""
    front = np.zeros((0, batches[0].shape[1] if batches else 1))
    values, done = [], 0
    for mark in marks:
        if mark > done:
            front = pareto_front(np.concatenate([front, *batches[done:mark]]))
            done = mark
        values.append(hypervolume(front, np.zeros(front.shape[1])) if len(front) else 0.0)
    return values, front


def curve_marks(n: int, points: int = CURVE_POINTS) -> list[int]:
    """About `points` evenly spread step counts in 1..n, ending at n."""
    return sorted({max(1, round(n * (i + 1) / points)) for i in range(points)} | {n}) if n else []


class GeneratedLog:
    """The training clock and memory at each step's reward, and the step's objective vectors
    (sEH as the peer logs it, `peer_seh`) for the sample store's components, which hold the
    molecules. Recording is on only while `recording(True)` holds (evaluations stay out)."""

    def __init__(self, names: list[str]):
        self.names = names
        self.clock: list[dict[str, float]] = []
        """Per training step: training seconds and resident memory (MB) at its reward."""
        self.vectors = torch.zeros(0, len(names), dtype=torch.float64)
        self.on, self.seconds, self.since = False, 0.0, 0.0

    def recording(self, on: bool) -> None:
        """Start or pause recording and the clock."""
        now = time.perf_counter()
        if on and not self.on:
            self.since = now
        elif self.on and not on:
            self.seconds += now - self.since
        self.on = on

    def __call__(self, mols: list[Chem.Mol], raw: torch.Tensor | None, values: torch.Tensor):
        if not self.on:
            return
        vectors = values.double().clone()
        if raw is not None:
            vectors[:, self.names.index("seh")] = peer_seh(raw)
        self.vectors = vectors
        now = self.seconds + time.perf_counter() - self.since
        self.clock.append({"seconds": now, "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()})

    def components(self, trainer: Trainer, batch: Any, states: Any) -> torch.Tensor:
        """The store's reward components of a training step's molecules: their objective
        vectors, as this step's reward computed them."""
        n = trainer.env.size(states)
        if len(self.vectors) != n:
            raise RuntimeError(f"seh-frag-moo: {len(self.vectors)} reward vectors, {n} molecules")
        return self.vectors

    def read(self, store: SampleStore) -> list[dict[str, Any]]:
        """Per training step, from the store: training seconds, resident memory, SMILES and
        objective vectors."""
        steps = []
        for step, group in itertools.groupby(store.samples(), key=lambda row: row["step"]):
            rows = list(group)
            smiles, vectors = [r["object"] for r in rows], [r["components"] for r in rows]
            steps.append(self.clock[step - 1] | {"smiles": smiles, "vectors": vectors})
        return steps

    def summary(self, steps: list[dict[str, Any]]) -> dict[str, Any]:
        """The hypervolume of everything generated (`read` from the store), its curve and
        front."""
        batches = [np.asarray(s["vectors"], dtype=np.float64) for s in steps]
        marks = curve_marks(len(batches))
        values, front = front_curve(batches, marks)
        return {
            "definition": "hypervolume, reference 0, of the non-dominated set of every "
            f"objective vector ({', '.join(self.names)}) generated during training, as the "
            "sample store holds them; sEH as clip(proxy / 8, 1e-4, 100)",
            "objectives": self.names,
            "molecules": int(sum(len(b) for b in batches)),
            "unique": len({s for step in steps for s in step["smiles"]}),
            "hypervolume": values[-1] if values else 0.0,
            "pareto_points": len(front),
            "curve": [
                {
                    "step": m,
                    "seconds": steps[m - 1]["seconds"],
                    "hypervolume": v,
                    "rss_mb": steps[m - 1]["rss_mb"],
                    "peak_rss_mb": steps[m - 1]["peak_rss_mb"],
                }
                for m, v in zip(marks, values, strict=True)
            ],
        }


def _legend(row: dict[str, Any], names: list[str]) -> str:
    """A grid panel's caption: the preference and the molecule's objectives."""
    w = " ".join(f"{x:.2f}" for x in row["preference"])
    r = " ".join(f"{n}={x:.2f}" for n, x in zip(names, row["best_objectives"], strict=True))
    return f"w=({w})\n{r}"

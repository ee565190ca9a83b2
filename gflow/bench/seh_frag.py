"""`gflow bench seh-frag`: fragment-based molecule design against the sEH binding proxy
(Bengio et al. 2021), trained with trajectory balance and temperature conditioning.

The fragment environment (72 fragments, up to 9), the reward R(x) = clip(proxy(x) / 8, 1e-4, 100)
raised to an inverse temperature beta drawn per trajectory (thermometer-encoded for the policy),
a graph transformer policy (4 layers x 128) and batches of 64, as in the recursionpharma/gflownet
seh_frag task. It reports throughput, the mean reward of the top 100 and top 1000 unique molecules
(by canonical SMILES) among everything generated, and the number of modes: unique molecules with
proxy > 7.5 whose Tanimoto similarity (Morgan radius 2, 2048 bits) to every earlier mode, in
generation order, is below 0.7, and the diversity of the top 100 (mean pairwise Tanimoto
distance). Every generated molecule is recorded in the sample store (OUT/samples.sqlite unless
--store: SMILES, raw score, beta, step) and these figures are computed from the store, read back
in step order after each step. It writes results.json, a PNG grid of the top molecules and a
reward-over-time plot.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem, DataStructs

from gflow.bench.machine import machine_info
from gflow.bench.molecule_grid import save_molecule_grid
from gflow.checkpoint import save_json, seed_everything
from gflow.conditioning import ConditionalEnv, Conditioning, TemperatureDistribution
from gflow.device import resolve_device
from gflow.envs.molecules import mol_names
from gflow.envs.molecules.fragments import Fragment, FragmentEnv
from gflow.envs.rewards import SEHProxy, seh_reward
from gflow.metrics.diversity import mean_pairwise_distance, morgan_fingerprints
from gflow.objectives import get_objective
from gflow.run_config import check_at_least
from gflow.store import SampleStore, StoreCallback
from gflow.training import Callback, ModelConfig, TrainConfig, Trainer, build_policy

NAME = "seh-frag"
ENV = None
"""No registered environment: the benchmark declares its options itself."""
HELP = "fragment molecules for the sEH proxy: TB, temperature-conditioned graph transformer"
SHORT_STEPS = 120
"""Default training steps: a few minutes on two CPU cores."""
PAPER_STEPS = 10_000
"""Training steps with --paper (the usual protocol: at least 10,000 steps)."""
PAPER_LOG_EVERY = 500
"""Steps between reports with --paper."""
DEFAULT_BETA = "uniform:0.5,32"
"""recursionpharma/gflownet's default temperature distribution for this task."""
GAMMA_UPPER_QUANTILE = 0.95
"""A gamma temperature is encoded up to this quantile (as recursionpharma/gflownet does)."""
RESULTS = "results.json"
GRID = "top_molecules.png"
REWARD_PLOT = "reward.png"


@dataclass
class SEHFragConfig(TrainConfig, ModelConfig):
    """Everything that defines one benchmark run: the run and model settings (TrainConfig,
    ModelConfig, validated by them, with this benchmark's defaults) and its own."""

    steps: int = SHORT_STEPS
    batch_size: int = 64
    lr: float = 5e-4
    lr_log_z: float = 1e-2
    log_every: int = 10
    checkpoint_every: int = 0
    eval_every: int = 0
    hidden: int = 128
    layers: int = 4
    max_fragments: int = 9
    factored_head: bool = True
    """Choose the attachment slot, then the fragment and its slot (`gflow.factored`); False:
    one softmax over all the 6,931 actions of 9 fragments."""
    beta: str = DEFAULT_BETA
    """Inverse-temperature distribution, `kind:params` (see `parse_beta`)."""
    beta_bins: int = 32
    """Thermometer units encoding beta."""
    mode_threshold: float = 7.5
    """A mode needs a raw score above this."""
    mode_similarity: float = 0.7
    """A mode's Tanimoto similarity to every earlier mode is below this."""
    grid: int = 16
    """Top molecules drawn in the PNG grid."""
    max_seconds: float = 0.0
    """Stop after this many seconds of training (0: run all the steps)."""

    def __post_init__(self) -> None:
        TrainConfig.__post_init__(self)
        ModelConfig.__post_init__(self)
        check_at_least(self, {"max_fragments": 1, "beta_bins": 1, "grid": 1})
        if self.max_seconds < 0:
            raise ValueError(f"max_seconds must be >= 0, got {self.max_seconds}")
        if not 0 < self.mode_similarity <= 1:
            raise ValueError(f"mode_similarity must be in (0, 1], got {self.mode_similarity}")
        parse_beta(self.beta)


def parse_beta(spec: str) -> TemperatureDistribution:
    """`constant:B`, `uniform:A,B`, `loguniform:A,B` or `gamma:K,THETA` as a distribution."""
    kind, _, params = spec.partition(":")
    try:
        values = tuple(float(v) for v in params.split(",")) if params else ()
    except ValueError:
        raise ValueError(
            f"beta distribution {spec!r}: parameters must be numbers, e.g. uniform:0.5,32"
        ) from None
    return TemperatureDistribution(kind.strip(), values)


def beta_upper(distribution: TemperatureDistribution) -> float:
    """Top of the thermometer encoding: the largest beta drawn, or a gamma's 0.95 quantile."""
    if distribution.upper is not None:
        return distribution.upper
    from scipy.stats import gamma

    shape, scale = distribution.params
    return float(gamma.ppf(GAMMA_UPPER_QUANTILE, shape, scale=scale))


class RecordingReward:
    """The environment's reward callable: raw scores from `score`, the reward `transform(raw)`.
    It keeps every scored batch until drained (the sample store's raw-score component) and
    times the scorer."""

    def __init__(
        self,
        score: Callable[[list[Chem.Mol]], torch.Tensor],
        transform: Callable[[torch.Tensor], torch.Tensor],
    ):
        self.score, self.transform = score, transform
        self.pending: list[tuple[list[Chem.Mol], torch.Tensor]] = []
        self.seconds = 0.0

    def __call__(self, mols: list[Chem.Mol]) -> torch.Tensor:
        start = time.perf_counter()
        raw = torch.as_tensor(self.score(mols))
        self.seconds += time.perf_counter() - start
        self.pending.append((mols, raw.detach().cpu().double()))
        return self.transform(raw)

    def drain(self) -> list[tuple[list[Chem.Mol], torch.Tensor]]:
        """The batches scored since the last call."""
        out, self.pending = self.pending, []
        return out


Row = tuple[int, str, float]
"""One generated molecule as the sample store holds it: (step, canonical SMILES, raw score)."""


class MoleculeLog:
    """Every generated molecule in generation order: the unique ones (by canonical SMILES) with
    their raw score and reward, and the modes (see the module docstring)."""

    def __init__(
        self,
        transform: Callable[[torch.Tensor], torch.Tensor],
        threshold: float,
        similarity: float,
    ):
        self.transform, self.threshold, self.similarity = transform, threshold, similarity
        self.generated = 0
        self.smiles: list[str] = []
        self.raw: list[float] = []
        self.reward: list[float] = []
        self.seen: set[str] = set()
        self.modes: list[str] = []
        self.mode_fingerprints: list[Any] = []

    def add_rows(self, rows: Iterable[Row]) -> float:
        """Record generated molecules, in step order; their mean reward (nan for none)."""
        rows = list(rows)
        if not rows:
            return math.nan
        raw = torch.tensor([score for _, _, score in rows], dtype=torch.float64)
        rewards = self.transform(raw).double()
        self.generated += len(rows)
        for (_, key, score), reward in zip(rows, rewards.tolist(), strict=True):
            if key in self.seen:
                continue
            self.seen.add(key)
            self.smiles.append(key)
            self.raw.append(score)
            self.reward.append(reward)
            if score > self.threshold:
                self._consider_mode(key, Chem.MolFromSmiles(key))
        return float(rewards.mean())

    def add(self, mols: Sequence[Chem.Mol], raw: torch.Tensor) -> float:
        """Record one batch of RDKit molecules and their raw scores (`add_rows` on their
        canonical SMILES); the batch's mean reward."""
        keys = mol_names(mols)
        return self.add_rows(zip([0] * len(keys), keys, raw.tolist(), strict=True))

    def _consider_mode(self, key: str, mol: Chem.Mol) -> None:
        fingerprint = morgan_fingerprints([mol])[0]
        if self.mode_fingerprints:
            closest = max(DataStructs.BulkTanimotoSimilarity(fingerprint, self.mode_fingerprints))
            if closest >= self.similarity:
                return
        self.modes.append(key)
        self.mode_fingerprints.append(fingerprint)

    def top_mean(self, k: int) -> float | None:
        """Mean reward of the k best unique molecules (None while fewer than k exist)."""
        if len(self.reward) < k:
            return None
        values = np.asarray(self.reward)
        return float(np.partition(values, len(values) - k)[len(values) - k :].mean())

    def top_diversity(self, k: int) -> float | None:
        """Mean pairwise Tanimoto distance of the k best unique molecules (None below k)."""
        if len(self.reward) < k:
            return None
        return mean_pairwise_distance([m["smiles"] for m in self.top(k)], "tanimoto")

    def top(self, n: int) -> list[dict[str, Any]]:
        """The n best unique molecules, best first: SMILES, raw score, reward."""
        order = np.argsort(-np.asarray(self.reward), kind="stable")[:n]
        return [
            {"smiles": self.smiles[i], "proxy": self.raw[i], "reward": self.reward[i]}
            for i in order.tolist()
        ]


def build_trainer(
    config: SEHFragConfig,
    reward: RecordingReward,
    fragments: Sequence[Fragment] | str | None = None,
) -> Trainer:
    """A TB trainer for the graph transformer on the temperature-conditioned fragment env."""
    device = resolve_device(config.device)
    distribution = parse_beta(config.beta)
    conditioning = Conditioning(
        temperature=distribution,
        beta_encoding="thermometer",
        beta_bins=config.beta_bins,
        beta_max=beta_upper(distribution),
        device=str(device),
    )
    base = FragmentEnv(fragments, config.max_fragments, reward=reward, device=device)
    env = ConditionalEnv(base, conditioning)
    model = ModelConfig(**{f.name: getattr(config, f.name) for f in fields(ModelConfig)})
    policy = build_policy(env, model, device)
    run = {f.name: getattr(config, f.name) for f in fields(TrainConfig)}
    train_config = TrainConfig(**(run | {"device": str(device)}))
    info = {"name": NAME, "options": asdict(config)}
    return Trainer(env, policy, get_objective("tb"), train_config, info)


Progress = Callable[[dict[str, Any]], None]


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux /proc; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MoleculeProgress(Callback):
    """After each training step (and the store's recorder): the molecules it generated, read
    back from the sample store, into the log, its mean reward, a progress entry every
    `log_every` steps (and at the end), and whether the run is out of time
    (`config.max_seconds`)."""

    def __init__(
        self,
        config: SEHFragConfig,
        store: SampleStore,
        log: MoleculeLog,
        progress: Progress | None,
    ):
        self.config, self.store, self.log, self.progress = config, store, log, progress
        self.read = 0
        """Id of the last store row read."""
        self.rewards: list[float] = []
        self.history: list[dict[str, Any]] = []
        self.out_of_time = False
        self.start = time.perf_counter()

    def after_step(self, trainer: Trainer, loss: torch.Tensor, batch: Any) -> None:
        config, log, step = self.config, self.log, trainer.step
        rows = self.store.samples(after=self.read)
        if rows:
            self.read = max(r["id"] for r in rows)
        self.rewards.append(log.add_rows(store_rows(rows)))
        elapsed = time.perf_counter() - self.start
        self.out_of_time = 0 < config.max_seconds <= elapsed
        if step % config.log_every == 0 or step == config.steps or self.out_of_time:
            entry = {
                "step": step,
                "seconds": elapsed,
                "loss": float(loss),
                "mean_reward": float(np.mean(self.rewards[-config.log_every :])),
                "top_100_reward": log.top_mean(100),
                "top_1000_reward": log.top_mean(1000),
                "unique": len(log.smiles),
                "modes": len(log.modes),
                "rss_mb": rss_mb(),
                "peak_rss_mb": peak_rss_mb(),
            }
            self.history.append(entry)
            if self.progress is not None:
                self.progress(entry)


def store_rows(samples: Iterable[dict[str, Any]]) -> list[Row]:
    """The (step, SMILES, raw score) rows of sample-store samples (`SampleStore.samples`)."""
    return [(s["step"], s["object"], s["components"][0]) for s in samples]


def train_fragments(
    config: SEHFragConfig,
    score: Callable[[list[Chem.Mol]], torch.Tensor],
    transform: Callable[[torch.Tensor], torch.Tensor],
    store: SampleStore,
    fragments: Sequence[Fragment] | str | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], MoleculeLog]:
    """Train on the fragment environment with reward transform(score(mol)) ** beta; the run's
    summary (throughput, rewards, modes, history) and the log of generated molecules. Every
    generated molecule is recorded in `store` (its raw score the one component; the store's
    earlier samples are deleted) and the figures are computed from what the store holds. With
    `config.max_seconds` it stops at the first step that ends past that many seconds."""
    seed_everything(config.seed)
    reward = RecordingReward(score, transform)
    trainer = build_trainer(config, reward, fragments)
    log = MoleculeLog(transform, config.mode_threshold, config.mode_similarity)
    cpu_start = time.process_time()
    watch = MoleculeProgress(config, store, log, progress)
    molecules = StepMolecules(reward)
    recorder = StoreCallback(store, molecules.components, molecules.names)
    trainer.run(quiet=True, until=lambda _: watch.out_of_time, callbacks=[recorder, watch])
    step, start, step_rewards, history = trainer.step, watch.start, watch.rewards, watch.history
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    tenth = max(1, step // 10)
    summary = {
        "steps": step,
        "trajectories": log.generated,
        "seconds": seconds,
        "steps_per_second": step / seconds,
        "trajectories_per_second": log.generated / seconds,
        "cpu_seconds": cpu_seconds,
        "trajectories_per_cpu_second": log.generated / cpu_seconds,
        "reward_seconds": reward.seconds,
        "mean_reward_first_tenth": float(np.mean(step_rewards[:tenth])),
        "mean_reward_last_tenth": float(np.mean(step_rewards[-tenth:])),
        "top_100_reward": log.top_mean(100),
        "top_1000_reward": log.top_mean(1000),
        "top_100_diversity": log.top_diversity(100),
        "unique_molecules": len(log.smiles),
        "modes": len(log.modes),
        "peak_rss_mb": peak_rss_mb(),
        "history": history,
        "step_rewards": step_rewards,
    }
    return summary, log


class StepMolecules:
    """The sample store's raw-score component and names (canonical SMILES) of a step's
    molecules, read from the batches the reward scored that step (drained once per step, by
    whichever of `components` and `names` asks first), so that the molecules are not rebuilt
    from the states."""

    def __init__(self, reward: RecordingReward):
        self.reward = reward
        self.step = -1
        self.mols: list[Chem.Mol] = []
        self.raw = torch.zeros(0)

    def _read(self, trainer: Trainer, states: Any) -> None:
        """Drain the reward's batches once per training step; checks one per generated molecule."""
        if self.step == trainer.step:
            return
        drained = self.reward.drain()
        self.step = trainer.step
        self.mols = [mol for mols, _ in drained for mol in mols]
        self.raw = torch.cat([raw for _, raw in drained]) if drained else torch.zeros(0)
        if len(self.raw) != trainer.env.size(states):
            raise RuntimeError(
                f"seh-frag: {len(self.raw)} molecules scored this step for "
                f"{trainer.env.size(states)} generated"
            )

    def components(self, trainer: Trainer, batch: Any, states: Any) -> torch.Tensor:
        """The raw scores of the step's molecules, one column."""
        self._read(trainer, states)
        return self.raw[:, None]

    def names(self, trainer: Trainer, batch: Any, states: Any) -> list[str]:
        """Canonical SMILES of the step's molecules (the fragment env's names)."""
        self._read(trainer, states)
        return mol_names(self.mols)


def save_reward_plot(
    path: str | Path, step_rewards: Sequence[float], history: Sequence[dict]
) -> None:
    """Mean batch reward per step (with a moving average) and the running top-100 mean, as PNG."""
    from matplotlib.figure import Figure  # after training: plotting costs no training memory

    from gflow.bench.plots import save_figure

    steps = np.arange(1, len(step_rewards) + 1)
    window = max(1, len(step_rewards) // 20)
    smooth = np.convolve(step_rewards, np.ones(window) / window, mode="valid")
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.subplots()
    ax.plot(steps, step_rewards, color="tab:blue", alpha=0.3, lw=0.8, label="batch mean reward")
    ax.plot(steps[window - 1 :], smooth, color="tab:blue", lw=2, label=f"moving mean ({window})")
    top = [(h["step"], h["top_100_reward"]) for h in history if h["top_100_reward"] is not None]
    if top:
        ax.plot(*zip(*top, strict=True), color="tab:red", lw=2, label="top-100 unique so far")
    ax.set_xlabel("training step")
    ax.set_ylabel("reward clip(proxy / 8, 1e-4, 100)")
    ax.set_title("seh-frag: reward over training")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    save_figure(figure, path, dpi=100)


def write_outputs(out: Path, results: dict[str, Any], log: MoleculeLog, grid: int) -> None:
    """results.json, the top-molecule grid and the reward plot under `out`."""
    best = log.top(grid)
    if best:
        save_molecule_grid(
            out / GRID,
            [m["smiles"] for m in best],
            [f"R={m['reward']:.3f}  proxy={m['proxy']:.2f}" for m in best],
        )
    save_reward_plot(out / REWARD_PLOT, results["step_rewards"], results["history"])
    save_json(out / RESULTS, results)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `gflow bench seh-frag` besides the common --steps --seed --device --out."""
    d = SEHFragConfig()
    parser.add_argument(
        "--paper",
        action="store_true",
        help=f"the usual protocol: {PAPER_STEPS} steps (unless --steps), a report every "
        f"{PAPER_LOG_EVERY} (unless --log-every)",
    )
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="trajectories/step")
    parser.add_argument(
        "--beta-dist",
        default=d.beta,
        help="inverse temperature: constant:B, uniform:A,B, loguniform:A,B or gamma:K,THETA "
        f"(default {d.beta})",
    )
    parser.add_argument("--beta-bins", type=int, default=d.beta_bins, help="thermometer units")
    parser.add_argument("--hidden", type=int, default=d.hidden, help="graph transformer width")
    parser.add_argument("--layers", type=int, default=d.layers, help="graph transformer depth")
    parser.add_argument("--heads", type=int, default=d.heads, help="attention heads")
    parser.add_argument("--max-fragments", type=int, default=d.max_fragments)
    add_head_argument(parser)
    parser.add_argument("--lr", type=float, default=d.lr, help="policy learning rate")
    parser.add_argument("--lr-log-z", type=float, default=d.lr_log_z, help="log Z learning rate")
    parser.add_argument("--log-every", type=int, default=None, help="steps between progress lines")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=d.max_seconds,
        help="stop training after this many seconds (default 0: run all the steps)",
    )
    parser.add_argument("--grid", type=int, default=d.grid, help="top molecules in the PNG grid")
    parser.add_argument("--proxy", default=None, help="sEH proxy weights (.npz or .pkl.gz)")
    parser.add_argument(
        "--reward",
        default=None,
        help="a user's reward in place of the sEH proxy: module:fn or path/to/file.py:fn, a "
        "batched function of RDKit molecules returning non-negative rewards (floored at 1e-4)",
    )
    parser.add_argument("--fragments", default=None, help="fragment vocabulary JSON")
    parser.add_argument(
        "--store",
        default=None,
        help="sample store (SQLite; default OUT/samples.sqlite) recording every molecule; the "
        "reported figures are computed from it (its earlier samples are replaced)",
    )


def add_head_argument(parser: argparse.ArgumentParser) -> None:
    """--head factored|flat: the fragment policy's forward head."""
    parser.add_argument(
        "--head",
        choices=("factored", "flat"),
        default="factored",
        help="factored (default): choose a free attachment slot, then the new fragment and its "
        "slot; flat: one softmax over every (slot, fragment, slot) action",
    )


def config_from_args(args: argparse.Namespace) -> SEHFragConfig:
    """The run configuration the command-line options describe."""
    steps = args.steps if args.steps is not None else PAPER_STEPS if args.paper else SHORT_STEPS
    default_every = PAPER_LOG_EVERY if args.paper else max(1, min(100, steps // 15))
    log_every = args.log_every or default_every
    return SEHFragConfig(
        steps=steps,
        batch_size=args.batch_size,
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        max_fragments=args.max_fragments,
        factored_head=args.head == "factored",
        beta=args.beta_dist,
        beta_bins=args.beta_bins,
        lr=args.lr,
        lr_log_z=args.lr_log_z,
        seed=args.seed,
        device=args.device,
        log_every=log_every,
        grid=args.grid,
        max_seconds=args.max_seconds,
    )


def print_progress(steps: int) -> Progress:
    """A progress callback printing one line per logged step to stderr."""

    def show(entry: dict[str, Any]) -> None:
        top = entry["top_100_reward"]
        rate = entry["step"] / entry["seconds"]
        sys.stderr.write(
            f"step {entry['step']:>{len(str(steps))}}/{steps}  {entry['seconds']:6.1f}s  "
            f"{rate:5.2f} steps/s  mean R {entry['mean_reward']:.3f}  "
            f"top-100 {'-' if top is None else f'{top:.3f}'}  unique {entry['unique']}  "
            f"modes {entry['modes']}  loss {entry['loss']:.3g}\n"
        )
        sys.stderr.flush()

    return show


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark the options describe and write its results under --out."""
    config = config_from_args(args)
    out = Path(args.out)
    score, transform, reward_text = _reward(args, config.device)
    sys.stderr.write(
        f"seh-frag: {config.steps} steps of {config.batch_size} trajectories on "
        f"{config.device} (torch threads: {torch.get_num_threads()}), graph transformer "
        f"{config.layers}x{config.hidden}, beta ~ {config.beta}\n"
    )
    store = SampleStore(args.store or out / "samples.sqlite")
    try:
        summary, log = train_fragments(
            config, score, transform, store, args.fragments, print_progress(config.steps)
        )
    finally:
        store.close()
    results = {
        "benchmark": NAME,
        "config": asdict(config),
        "reward": reward_text,
        "store": str(store.path),
        "figures_from": "the sample store (SMILES, raw score, step), read back in step order",
        "modes_definition": (
            f"unique molecules with proxy > {config.mode_threshold} whose Tanimoto similarity "
            f"(Morgan radius 2, 2048 bits) to every earlier mode is < {config.mode_similarity}"
        ),
        "machine": machine_info() | {"device": config.device},
        **summary,
        "top_molecules": log.top(max(config.grid, 20)),
        "files": {"grid": GRID, "reward_plot": REWARD_PLOT},
    }
    write_outputs(out, results, log, config.grid)
    sys.stderr.write(_summary_line(results) + f"\nwrote {out / RESULTS}, {GRID}, {REWARD_PLOT}\n")
    return results


def _reward(
    args: argparse.Namespace, device: str
) -> tuple[Callable[[list[Chem.Mol]], torch.Tensor], Callable[[torch.Tensor], torch.Tensor], str]:
    """The raw score, its transform into R and how results describe them: the sEH proxy, or a
    user's reward function (--reward) checked and floored at 1e-4."""
    if args.reward is None:
        proxy = SEHProxy.from_file(args.proxy, device=device)
        return proxy.score_sanitized, seh_reward, "clip(proxy / 8, 1e-4, 100) ** beta"
    from gflow.plugins import load_reward

    return load_reward(args.reward), _floor, f"max({args.reward}(mol), 1e-4) ** beta"


def _floor(raw: torch.Tensor) -> torch.Tensor:
    """A user's reward floored at 1e-4, so that log R stays finite."""
    return raw.clamp(min=1e-4)


def _summary_line(results: dict[str, Any]) -> str:
    def fmt(value: float | None) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"

    return (
        f"seh-frag: {results['trajectories_per_second']:.1f} trajectories/s, "
        f"{results['steps_per_second']:.3f} steps/s, top-100 {fmt(results['top_100_reward'])}, "
        f"top-1000 {fmt(results['top_1000_reward'])}, modes {results['modes']}, "
        f"top-100 diversity {fmt(results['top_100_diversity'])}, "
        f"unique {results['unique_molecules']}, peak RSS {results['peak_rss_mb']:.0f} MB"
    )

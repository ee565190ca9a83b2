"""Scaling with a Ray worker pool: fragment molecules (the `gflow bench seh-frag` setup: TB,
temperature-conditioned graph transformer) whose reward is the sEH proxy behind an oracle with an
added fixed latency per molecule (default 50 ms, standing in for docking). Trajectories per second
trained in-process against 1 and 2 Ray workers, interleaved rounds, one torch thread per process,
load average recorded; the pipelining measured (how much of the learner's time hides behind the
oracle's); the cost of each stage (sampling, reward, loss, weight broadcast); optionally the
learner's RSS at steps 200 and 2,000 (--rss); and a simulation from the measured costs of 8 GPUs
with 256 oracle workers. Writes benchmarks/results/scaling.json. DDP (1 against 2 processes on
hypergrid, the all-reduce's cost) is measured by benchmarks/ddp_scaling.py.

    .venv/bin/python benchmarks/scaling.py                 # about 5 minutes
    .venv/bin/python benchmarks/scaling.py --rss 2000      # plus the memory run (long)

No GPU was lent to the session that wrote this: GPU figures are absent, never estimated as if
measured (the simulation's learner speed-up is an explicit, labelled assumption).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from gflow.envs.rewards import SEHProxy, seh_reward

from gflow.bench.machine import code_state, machine_info
from gflow.bench.seh_frag import RecordingReward, SEHFragConfig, build_trainer, rss_mb
from gflow.checkpoint import save_json, seed_everything
from gflow.pool import Oracle, PoolTrainer, RayPool, find_oracle
from gflow.sampling import sample_forward
from gflow.training import Callback, Trainer

RESULTS = Path(__file__).resolve().parent / "results" / "scaling.json"


class Latency:
    """The sEH proxy as an oracle that takes `seconds` per molecule longer (a docking stand-in)."""

    def __init__(self, proxy: SEHProxy, seconds: float):
        self.proxy, self.seconds = proxy, seconds
        self.__name__ = f"seh+{seconds * 1e3:g}ms"

    def __call__(self, mols: list) -> torch.Tensor:
        time.sleep(self.seconds * len(mols))
        return self.proxy(mols)


class Clock(Callback):
    """The wall time at the end of every step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.rss: dict[int, float] = {}

    def after_step(self, trainer: Trainer, loss: torch.Tensor, batch: Any) -> None:
        self.times.append(time.perf_counter())
        if trainer.step in (200, 2000):
            self.rss[trainer.step] = rss_mb()


def config(args: argparse.Namespace, steps: int) -> SEHFragConfig:
    return SEHFragConfig(
        steps=steps, batch_size=args.batch_size, hidden=args.hidden, layers=args.layers,
        seed=args.seed, device="cpu", log_every=10**9, top_k=0,
    )


def trainer_for(args: argparse.Namespace, proxy: SEHProxy, steps: int) -> tuple[Trainer, Oracle]:
    """A seeded seh-frag trainer whose reward goes through an in-process latency oracle."""
    seed_everything(args.seed)
    oracle = Oracle(Latency(proxy, args.latency), name="seh-latency")
    return build_trainer(config(args, steps), RecordingReward(oracle, seh_reward)), oracle


def timed_run(args: argparse.Namespace, proxy: SEHProxy, workers: int) -> dict[str, Any]:
    """One run of warmup + steps; trajectories/s over the steps after the warmup."""
    steps = args.warmup + args.steps
    base, oracle = trainer_for(args, proxy, steps)
    pool = None
    trainer = base
    if workers:
        pool = RayPool(base.env, base.policy, workers=workers, fn=oracle.fn)
        oracle.pool = pool
        trainer = PoolTrainer(base.env, base.policy, base.objective, base.config, pool)
    clock = Clock()
    try:
        trainer.run(quiet=True, callbacks=[clock])
    finally:
        if pool is not None:
            pool.close()
    t = clock.times
    seconds = t[-1] - t[args.warmup - 1]
    per_step = seconds / args.steps
    out = {
        "workers": workers,
        "steps_timed": args.steps,
        "seconds": seconds,
        "trajectories_per_second": args.steps * args.batch_size / seconds,
        "seconds_per_step": per_step,
        "oracle_evaluations": oracle.evaluated,
        "oracle_seconds": oracle.seconds,
    }
    if isinstance(trainer, PoolTrainer):
        out["learner_wait_seconds_total"] = trainer.wait_seconds
        out["workers_replaced"] = pool.replaced if pool is not None else 0
    return out


def stage_costs(args: argparse.Namespace, proxy: SEHProxy) -> dict[str, Any]:
    """Seconds per batch of each stage, measured alone in this process (median of a few)."""
    trainer, oracle = trainer_for(args, proxy, 10)
    env, policy, b = trainer.env, trainer.policy, args.batch_size
    oracle.placeholder = 1.0  # sampling alone: no reward evaluation
    sampling, loss_times, proxy_times = [], [], []
    batches = []
    for _ in range(args.cost_repeats):
        cond = env.conditioning.sample(b)
        start = time.perf_counter()
        batch = sample_forward(env, policy, b, cond)
        sampling.append(time.perf_counter() - start)
        batches.append(batch)
    oracle.placeholder = None
    for batch in batches:
        mols = env.to_mol(env.select(batch.terminal, batch.done))
        start = time.perf_counter()
        proxy(mols)
        proxy_times.append((time.perf_counter() - start) / max(1, len(mols)))
        start = time.perf_counter()
        loss = trainer.loss(batch)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
        loss_times.append(time.perf_counter() - start)
    state = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    size = sum(v.numel() * v.element_size() for v in state.values())
    return {
        "batch_size": b,
        "sampling_seconds_per_batch": statistics.median(sampling),
        "proxy_seconds_per_molecule": statistics.median(proxy_times),
        "oracle_latency_seconds_per_molecule": args.latency,
        "reward_seconds_per_batch": b * (args.latency + statistics.median(proxy_times)),
        "loss_seconds_per_batch": statistics.median(loss_times),
        "weights_bytes": size,
        **broadcast_cost(args, trainer, state),
    }


def broadcast_cost(args: argparse.Namespace, trainer: Trainer, state: dict) -> dict[str, float]:
    """Seconds to publish the weights (ray.put) and for a worker to load a new version (a
    one-trajectory sample with new weights, minus one with the weights it has)."""
    import ray

    pool = RayPool(trainer.env, trainer.policy, workers=1)
    try:
        opts = {"temperature": 1.0, "epsilon": 0.0, "max_steps": None}
        cond = trainer.env.conditioning.sample(1)
        puts, loads = [], []
        ref = [ray.put(state)]
        pool.result(pool.submit("sample", ref, 0, 1, 0, cond, opts))
        for version in range(1, 6):
            start = time.perf_counter()
            ref = [ray.put(state)]
            puts.append(time.perf_counter() - start)
            start = time.perf_counter()
            pool.result(pool.submit("sample", ref, version, 1, 0, cond, opts))
            fresh = time.perf_counter() - start
            start = time.perf_counter()
            pool.result(pool.submit("sample", ref, version, 1, 0, cond, opts))
            loads.append(fresh - (time.perf_counter() - start))
    finally:
        pool.close()
    return {
        "broadcast_put_seconds": statistics.median(puts),
        "broadcast_worker_load_seconds": max(0.0, statistics.median(loads)),
    }


def simulate(
    costs: dict[str, Any], gpus: int, workers: int, gpu_speedup: float, refresh_every: int = 1
) -> dict[str, Any]:
    """Steady-state trajectories/s of each stage for `gpus` learners (batches of the measured
    size; the loss `gpu_speedup` times faster than on this CPU: an assumption, no GPU was
    measured) and `workers` CPU workers that sample and call the oracle; weights published
    every `refresh_every` steps. The slowest stage bounds the pipeline."""
    b = costs["batch_size"]
    per_mol = costs["oracle_latency_seconds_per_molecule"] + costs["proxy_seconds_per_molecule"]
    worker_time = per_mol + costs["sampling_seconds_per_batch"] / b  # per trajectory
    put = costs["broadcast_put_seconds"] / refresh_every
    learner_step = costs["loss_seconds_per_batch"] / gpu_speedup + put
    rates = {
        "workers (sampling + oracle)": workers / worker_time,
        "learners": gpus * b / learner_step,
    }
    bottleneck = min(rates, key=lambda k: rates[k])
    return {
        "gpus": gpus,
        "workers": workers,
        "assumed_gpu_speedup_of_loss": gpu_speedup,
        "refresh_every": refresh_every,
        "trajectories_per_second_by_stage": rates,
        "bottleneck": bottleneck,
        "trajectories_per_second": rates[bottleneck],
        "workers_to_saturate_learners": rates["learners"] * worker_time,
        "weights_mb_per_refresh_per_node": costs["weights_bytes"] / 2**20,
        "all_reduce": "TODO (DDP engineer): the per-step all-reduce cost is not included",
    }


def rss_run(args: argparse.Namespace, proxy: SEHProxy) -> dict[str, Any]:
    """The learner's RSS at steps 200 and 2,000 of an in-process run without latency."""
    seed_everything(args.seed)
    trainer = build_trainer(config(args, args.rss), RecordingReward(proxy, seh_reward))
    reward = find_oracle(trainer.env)
    assert reward is None
    clock = Clock()

    class Drain(Callback):
        def after_step(self, trainer: Trainer, loss: torch.Tensor, batch: Any) -> None:
            trainer.env.env.reward.drain()  # the bench's molecule log would take these

    trainer.run(quiet=True, callbacks=[clock, Drain()])
    out: dict[str, Any] = {"steps": args.rss, "rss_mb_at_step": clock.rss}
    if 200 in clock.rss and 2000 in clock.rss:
        out["growth_200_to_2000"] = clock.rss[2000] / clock.rss[200] - 1
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency", type=float, default=0.05, help="oracle seconds per molecule")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=6, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    p.add_argument("--cost-repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rss", type=int, default=0, help="steps of the memory run (0: skip)")
    p.add_argument("--rss-only", action="store_true", help="only the memory run, into --out")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.rss_only:
        memory = rss_run(args, SEHProxy.from_file())
        save_json(args.out, {"machine": machine_info(), "settings": vars(args), "memory": memory})
        return
    import ray

    load_before = os.getloadavg()
    start = time.perf_counter()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             configure_logging=False, object_store_memory=256 * 2**20)
    ray_start = time.perf_counter() - start
    proxy = SEHProxy.from_file()
    costs = stage_costs(args, proxy)
    print(f"stage costs: {costs}", file=sys.stderr)
    runs: dict[str, list[dict[str, Any]]] = {"in_process": [], "workers_1": [], "workers_2": []}
    for round_ in range(args.rounds):
        for name, workers in (("in_process", 0), ("workers_1", 1), ("workers_2", 2)):
            result = timed_run(args, proxy, workers) | {"round": round_, "load": os.getloadavg()[0]}
            runs[name].append(result)
            print(f"round {round_} {name}: {result['trajectories_per_second']:.2f} traj/s",
                  file=sys.stderr)
    ray.shutdown()
    rate = {k: statistics.median(r["trajectories_per_second"] for r in v) for k, v in runs.items()}
    serial = costs["sampling_seconds_per_batch"] + costs["reward_seconds_per_batch"]
    pipelining = {}
    for name, workers in (("workers_1", 1), ("workers_2", 2)):
        step = statistics.median(r["seconds_per_step"] for r in runs[name])
        pool_work = serial / workers  # the workers' share of sampling and oracle per batch
        learner = costs["loss_seconds_per_batch"]
        pipelining[name] = {
            "seconds_per_step": step,
            "workers_seconds_per_step": pool_work,
            "learner_seconds_per_step": learner,
            "serial_seconds_per_step": pool_work + learner,
            "learner_time_hidden": min(1.0, max(0.0, (pool_work + learner - step) / learner)),
        }
    results = {
        "benchmark": "scaling (Ray worker pool, fragment molecules, sEH proxy + oracle latency)",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": machine_info() | code_state(),
        "gpu": "no GPU was lent to this session: no GPU figures",
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "ray_start_seconds": ray_start,
        "stage_costs": costs,
        "runs": runs,
        "trajectories_per_second": rate,
        "speedup_vs_in_process": {k: v / rate["in_process"] for k, v in rate.items()},
        "target_workers_2_speedup": 1.8,
        "pipelining": pipelining,
        "simulation_8_gpus_256_workers": [
            simulate(costs, 8, 256, speedup, refresh)
            for speedup in (10.0, 50.0)
            for refresh in (1, 10)
        ],
    }
    if args.rss:
        results["memory"] = rss_run(args, proxy)
    save_json(args.out, results)
    print(f"speed-up vs in-process: {results['speedup_vs_in_process']} -> {args.out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()

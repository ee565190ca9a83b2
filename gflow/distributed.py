"""Data-parallel training on several processes with `torch.distributed` (launched by
`torchrun`, or by `gflow train --nproc N`, which starts the same launcher).

Each rank samples its share of the batch (`batch_size` split as evenly as it goes: ranks below
`batch_size % world` take one more trajectory) with its own random stream, reseeded before every
step from (seed, step, rank) (`rank_seed`), so a run is reproducible and a resumed run, at any
number of processes, needs nothing from the other ranks' generators. Each rank scores its own
trajectories; the scored values (not the network activations) are gathered so that every rank
evaluates the objective on the whole batch, exactly the loss one process would compute whatever
the objective's reduction (means over trajectories or over transitions, pairwise order losses).
Each rank back-propagates only through its own trajectories, and the sum of the ranks'
gradients (one all-reduce of every parameter of the optimizer, log Z included) is the gradient
of the whole batch's loss. Parameters no rank used keep no gradient, as in one process.

Rank 0 writes checkpoints, metrics, TensorBoard and the sample store; the other ranks write
nothing. Each step, every rank's complete objects are gathered to rank 0 (`gather`), which offers
them to the top-k tracker (so top-k reward and distinct-object counts cover the whole batch) and,
with a store, records them there with the rank as the worker. Backend: `nccl` when training on
CUDA, `gloo` otherwise. Replay buffers are per rank; a checkpoint holds rank 0's buffer and
tracker, and on resume every rank starts from them.
"""

from __future__ import annotations

import io
import logging
import os
import random
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from gflow.checkpoint import CHECKPOINT, open_run
from gflow.env import Env
from gflow.errors import GflowError, UsageError
from gflow.objectives import Loss, Objective
from gflow.policies.base import Policy
from gflow.run_config import TrainConfig
from gflow.sampling import Rollout
from gflow.scoring import score
from gflow.training import Trainer
from gflow.trajectories import Trajectories

__all__ = [
    "DistributedTrainer",
    "LaunchError",
    "all_reduce_gradients",
    "batch_share",
    "gather_trajectories",
    "init",
    "launch",
    "launched",
    "rank",
    "rank_seed",
    "reseed",
    "shutdown",
]

STEP_FIELDS = ("log_pf", "log_pb")
"""Trajectories fields indexed (B, T) by transition."""
STATE_FIELDS = (
    "log_flow",
    "log_inflow",
    "log_outflow",
    "energy",
    "log_pf_stop",
    "can_stop",
    "backward_kl",
)
"""Trajectories fields indexed (B, T+1) by flow position; every other field is (B, ...)."""
TIMEOUT = timedelta(minutes=30)
"""How long a rank waits for the others in a collective before failing (rank 0's evaluations
and checkpoints happen while the others wait)."""


class LaunchError(GflowError):
    """A multi-process run whose workers failed (their own errors are printed above)."""


def launched() -> bool:
    """Whether this process is a worker started by torchrun (its environment variables set)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


def init(device: torch.device) -> torch.device:
    """Join the process group torchrun set up (`nccl` for CUDA, `gloo` otherwise) and return
    this rank's device (`cuda:LOCAL_RANK` on CUDA)."""
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise UsageError(
                f"process {local} of this machine needs GPU {local}, but only "
                f"{torch.cuda.device_count()} are visible: use fewer processes or --device cpu"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
    return device


def rank() -> int:
    """This process's rank in the process group (0 outside one)."""
    return dist.get_rank() if dist.is_initialized() else 0


def shutdown(finished: bool) -> None:
    """Leave the process group (if this process joined one); when this rank `finished` its
    work, first wait for every rank to finish (gloo could abort a rank that tore its group
    down while another still held it), otherwise at once, so that a failure stops the run."""
    if dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def batch_share(batch_size: int, rank: int, world: int) -> int:
    """Trajectories rank `rank` of `world` samples per step: an even split, the first
    `batch_size % world` ranks taking one more; a batch smaller than `world` is refused."""
    if batch_size < world:
        raise UsageError(
            f"--batch-size {batch_size} is smaller than the {world} processes: each process "
            "needs at least one trajectory per step"
        )
    return batch_size // world + (rank < batch_size % world)


def rank_seed(seed: int, step: int, rank: int) -> int:
    """The seed of rank `rank`'s generators before step `step + 1`: a hash of the three
    (numpy's SeedSequence), so streams of different ranks and steps do not overlap."""
    entropy = [seed % 2**64, step, rank]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0])


def reseed(seed: int, step: int, rank: int) -> None:
    """Seed this rank's generators for step `step + 1` with `rank_seed`: torch's CPU generator
    and, where CUDA is in use, the current GPU's, numpy's and Python's global ones
    (`torch.manual_seed` would also visit every device backend, 0.4 ms a step on a CPU)."""
    value = rank_seed(seed, step, rank)
    random.seed(value)
    np.random.seed(value)
    torch.default_generator.manual_seed(value)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed(value)


def _pad(value: torch.Tensor, rows: int, width: int | None) -> torch.Tensor:
    """`value` padded with zeros to `rows` rows and, when `width` is given, `width` columns."""
    if width is not None and value.shape[1] < width:
        extra = value.new_zeros(value.shape[0], width - value.shape[1], *value.shape[2:])
        value = torch.cat([value, extra], 1)
    if value.shape[0] < rows:
        value = torch.cat([value, value.new_zeros(rows - value.shape[0], *value.shape[1:])])
    return value


def gather_trajectories(traj: Trajectories) -> Trajectories:
    """Every rank's scored trajectories in rank order, padded to the longest; this rank's part
    keeps its autograd graph, the others' are constants. Each rank may hold a different number
    of trajectories of any lengths; all must carry the same fields."""
    world, rank = dist.get_world_size(), dist.get_rank()
    device = traj.log_pf.device
    rows, steps = traj.log_pf.shape
    sizes = [torch.zeros(2, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([rows, steps], device=device))
    counts = [int(s[0]) for s in sizes]
    most_rows, most_steps = max(counts), max(int(s[1]) for s in sizes)
    widths = dict.fromkeys(STEP_FIELDS, most_steps) | dict.fromkeys(STATE_FIELDS, most_steps + 1)
    ours = {
        f.name: _pad(getattr(traj, f.name), most_rows, widths.get(f.name))
        for f in fields(traj)
        if getattr(traj, f.name) is not None
    }
    flat = torch.cat([v.detach().to(torch.float64).reshape(-1) for v in ours.values()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in ours}
    for r, buffer in enumerate(gathered):
        chunks = buffer.split([v.numel() for v in ours.values()])
        for (name, value), chunk in zip(ours.items(), chunks, strict=True):
            part = value if r == rank else chunk.view(value.shape).to(value.dtype)
            parts[name].append(part[: counts[r]])
    return Trajectories(**{name: torch.cat(values) for name, values in parts.items()})


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace each parameter's gradient with the sum over ranks (one all-reduce for all of
    them); a parameter without a gradient on every rank keeps none."""
    params = list(parameters)
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    used = torch.tensor([p.grad is not None for p in params], device=params[0].device)
    flat = torch.cat([g.reshape(-1) for g in grads] + [used.to(grads[0].dtype)])
    dist.all_reduce(flat)
    summed, anywhere = flat[: -len(params)], flat[-len(params) :] > 0
    chunks = summed.split([p.numel() for p in params])
    for p, chunk, used_somewhere in zip(params, chunks, anywhere, strict=True):
        p.grad = chunk.view_as(p).to(p.dtype) if used_somewhere else None


class DistributedTrainer(Trainer):
    """A `Trainer` for one rank of a data-parallel run (the process group joined, `init`):
    samples its share of each batch, evaluates the objective on the gathered whole batch and
    sums gradients over ranks; only rank 0 evaluates and writes."""

    def __init__(
        self,
        env: Env,
        policy: Policy,
        objective: Objective | Loss,
        config: TrainConfig,
        env_info: dict[str, Any] | None = None,
    ):
        if not dist.is_initialized():
            raise RuntimeError("DistributedTrainer needs the process group: gflow.distributed.init")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        share = batch_share(config.batch_size, self.rank, self.world)
        super().__init__(env, policy, objective, config, env_info)
        self.batch_size = share
        if self.rank != 0:
            self.out = None
        for tensor in [*policy.parameters(), *policy.buffers()]:
            dist.broadcast(tensor.data, 0)

    def batch(self) -> Rollout:
        """This rank's share of the batch, from its (seed, step, rank) stream."""
        reseed(self.config.seed, self.step, self.rank)
        return super().batch()

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's `value` (tensors, numbers, strings and containers of them) in rank order
        on rank 0, on its device; None on the other ranks."""
        buffer = io.BytesIO()
        torch.save(value, buffer)
        parts: list[Any] | None = [None] * self.world if self.rank == 0 else None
        dist.gather_object(buffer.getvalue(), parts, dst=0)
        if parts is None:
            return None
        device = self.config.device
        return [torch.load(io.BytesIO(p), map_location=device, weights_only=True) for p in parts]

    def track(self, online: Rollout) -> None:
        """Offer every rank's complete objects of this step to rank 0's top-k tracker."""
        if self.top is None:
            return
        env, done = self.env, online.done
        ours = (env.states_to_data(env.select(online.terminal, done)), online.log_reward[done])
        for data, log_reward in self.gather(ours) or []:
            self.top.add_objects(env.states_from_data(data), log_reward)

    def loss(self, batch: Rollout) -> torch.Tensor:
        """The objective on every rank's scored trajectories (the whole batch's loss)."""
        obj = self.objective
        return obj.loss(gather_trajectories(score(self.env, self.policy, batch, obj.needs)))

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate through this rank's trajectories, then sum gradients over ranks."""
        loss.backward()
        all_reduce_gradients(p for group in self.optimizer.param_groups for p in group["params"])

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        """Continue from rank 0's checkpoint (errors name its file on every rank)."""
        if self.rank != 0 and self.config.out is not None:
            source = f"{self.config.out}/{CHECKPOINT}"
        super().load_state_dict(state, source)

    def metrics(self) -> dict[str, Any]:
        """The run's summary, with the number of processes that trained it."""
        return super().metrics() | {"processes": self.world}

    def evaluate(self) -> dict[str, float] | None:
        """Rank 0's evaluation (the policy is the same on every rank); None elsewhere."""
        return super().evaluate() if self.rank == 0 else None

    def open_run(self, resume: bool | None, restart: bool) -> dict[str, Any] | None:
        """Rank 0 prepares the output folder and reads the checkpoint; every rank gets it on its
        own device (or rank 0's error, raised on every rank alike)."""
        message: list[Any] = [None, None]
        if self.rank == 0:
            try:
                state = open_run(self.out, "cpu", resume, restart)
                if state is not None:
                    buffer = io.BytesIO()
                    torch.save(state, buffer)
                    message[0] = buffer.getvalue()
            except (GflowError, ValueError, OSError) as err:
                message[1] = err
        dist.broadcast_object_list(message, 0)
        payload, error = message
        if error is not None:
            raise error
        if payload is None:
            return None
        device = self.config.device
        return torch.load(io.BytesIO(payload), map_location=device, weights_only=True)


def launch(nproc: int, argv: Sequence[str]) -> None:
    """Run `python -m gflow ARGV` on `nproc` processes on this machine with torch's launcher
    (what `torchrun --standalone --nproc-per-node NPROC -m gflow ARGV` does); LaunchError
    naming the failed ranks when any worker fails."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise UsageError(f"--nproc must be >= 1, got {nproc}")
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # we report
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"gflow-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "gflow", *argv)
    except ChildFailedError as err:
        failed = ", ".join(
            f"rank {rank} (exit code {failure.exitcode})"
            if failure.exitcode >= 0
            else f"rank {rank} (killed by signal {-failure.exitcode})"
            for rank, failure in sorted(err.failures.items())
        )
        raise LaunchError(f"{nproc}-process training failed: {failed}") from None
    except SignalException as err:  # Ctrl-C or a kill reaching the launcher: workers stopped
        raise KeyboardInterrupt from err

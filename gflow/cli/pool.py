"""The sample store, oracle and worker-pool options of `gflow train` (--store, --oracle,
--workers, --ray-address, ...) and what they set up around a trainer (`Session`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gflow.errors import UsageError

if TYPE_CHECKING:
    from gflow.env import Env
    from gflow.pool import RayPool
    from gflow.training import Callback, Trainer

STORE_NAME = "samples.sqlite"
"""The sample store's default file in a molecule run's output folder."""


def add_pool_options(parser: argparse.ArgumentParser) -> None:
    """Add the store, oracle and pool options to a command's parser."""
    g = parser.add_argument_group("sample store, oracle and worker pool")
    g.add_argument(
        "--store",
        default=None,
        help=f"record every sampled object in this SQLite file (default OUT/{STORE_NAME} for "
        "molecule environments, none otherwise); export it with gflow export",
    )
    g.add_argument(
        "--oracle",
        action="store_true",
        help="the reward is expensive: evaluate each distinct object once (cached in the "
        "store across restarts), in batches, on the pool with --workers",
    )
    g.add_argument(
        "--workers", type=int, default=0, help="sample (and run the oracle) on N local Ray workers"
    )
    g.add_argument("--ray-address", default=None, help="use the Ray cluster at HOST:PORT instead")
    g.add_argument(
        "--refresh-every",
        type=int,
        default=1,
        help="steps between sending the learner's weights to the workers (default 1)",
    )
    g.add_argument(
        "--oracle-timeout",
        type=float,
        default=600.0,
        help="seconds a pool task may run before its worker is replaced (default 600)",
    )
    g.add_argument(
        "--retries", type=int, default=3, help="re-runs of a failed pool task (default 3)"
    )
    g.add_argument(
        "--max-reward-failures",
        type=int,
        default=20,
        help="stop after the oracle raises on this many objects in a row (default 20)",
    )


MOLECULE_ENVS = ("atoms", "frags")
"""The registered environments whose runs keep a sample store by default."""


def store_path(args: argparse.Namespace, name: str, out: str | Path) -> Path | None:
    """--store, or OUT/samples.sqlite for the molecule environments (named `name`)."""
    if args.store:
        return Path(args.store)
    return Path(out) / STORE_NAME if name in MOLECULE_ENVS else None


class Session:
    """The store, oracle and pool a run asked for: opened before training (a store that
    cannot be written fails here), the trainer built on them, closed at the end. In a run on
    several processes (`ranked`) rank 0 holds the store and records every rank's samples."""

    pool: RayPool | None

    def __init__(
        self, args: argparse.Namespace, env: Env, out: str | Path, ranked: bool = False,
        name: str = "",
    ):
        from gflow.distributed import rank
        from gflow.pool import Oracle, install_oracle
        from gflow.store import SampleStore

        if args.workers < 0:
            raise UsageError(f"--workers must be >= 0, got {args.workers}")
        if ranked and args.oracle:
            raise UsageError(
                "--oracle with several processes (--nproc, torchrun) is not supported: each "
                "process would call the oracle on its own share, outside rank 0's cache"
            )
        self.args, self.store, self.pool, self.oracle = args, None, None, None
        path = store_path(args, name, out)
        self.recording = path is not None
        if path is not None and rank() == 0:
            self.store = SampleStore(path)
        if args.oracle:
            self.oracle = install_oracle(
                env, lambda fn: Oracle(fn, self.store, max_failures=args.max_reward_failures)
            )

    @property
    def pooled(self) -> bool:
        """Whether the run samples on a worker pool."""
        return bool(self.args.workers or self.args.ray_address)

    def trainer(self, kind: type[Trainer], env: Env, policy: Any, *rest: Any) -> Trainer:
        """A `kind` trainer, or a `PoolTrainer` when the run has workers."""
        from gflow.training import Trainer

        if not self.pooled:
            return kind(env, policy, *rest)
        if kind is not Trainer:
            raise UsageError("--workers / --ray-address cannot be combined with --nproc")
        from gflow.pool import PoolTrainer, RayPool

        args = self.args
        fn = None if self.oracle is None else self.oracle.fn
        pool = RayPool(
            env, policy, args.workers or None, args.ray_address, fn, args.oracle_timeout,
            args.retries,
        )
        self.pool = pool
        if self.oracle is not None:
            self.oracle.pool = pool
        objective, config, info = rest
        return PoolTrainer(env, policy, objective, config, pool, args.refresh_every, info)

    @property
    def callbacks(self) -> list[Callback]:
        """The store's recorder, where the run keeps a store (on every rank of a run on
        several processes: each hands its samples to rank 0's)."""
        from gflow.store import StoreCallback

        return [StoreCallback(self.store)] if self.recording else []

    def close(self) -> None:
        """Stop the pool (and the Ray it started) and close the store."""
        if self.pool is not None:
            self.pool.close()
        if self.store is not None:
            self.store.close()

"""The sample store: every object a run generates, in SQLite (WAL mode), with its reward, reward
components, condition (temperature, preference), training step and the worker that sampled it;
and the oracle cache, one row per object an expensive reward has evaluated, which no later call
or restarted run evaluates again.

One transaction per training step: a crash loses at most the step being written. On resume, the
store is made to match the checkpoint: the samples of steps after the checkpoint's step (written
before the crash, and about to be generated again) are deleted, so counts and figures never
include a step twice; the oracle cache is kept whole (its results were paid for and stay valid).
A fresh run (step 1) likewise starts with no samples but the old oracle cache.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gflow.errors import UsageError

if TYPE_CHECKING:
    from gflow.env import Env
    from gflow.sampling import Rollout
    from gflow.training import Trainer

from gflow.training import Callback

__all__ = ["SampleStore", "StoreCallback", "export_store"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    step INTEGER NOT NULL,
    worker TEXT NOT NULL,
    object TEXT NOT NULL,
    log_reward REAL NOT NULL,
    components TEXT,
    temperature REAL,
    preference TEXT
);
CREATE INDEX IF NOT EXISTS samples_step ON samples (step);
CREATE TABLE IF NOT EXISTS oracle (
    object TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    seconds REAL,
    worker TEXT
);
"""

SAMPLE_COLUMNS = ("id", "step", "worker", "object", "log_reward", "temperature")


class SampleStore:
    """One SQLite file holding a run's samples and its oracle cache (see the module docstring).
    Creating one checks that the file can be written, so a bad path fails before any training;
    the connection opens on first use (after a run's output folder is prepared: `--restart`
    moves the old folder, store included, aside)."""

    def __init__(self, path: str | os.PathLike, option: str = "--store"):
        self.path, self.option = Path(path), option
        self._db: sqlite3.Connection | None = None
        if self.path.is_dir():
            raise UsageError(f"{option} {self.path} is a directory, expected a file")
        self._connect().close()

    def _connect(self) -> sqlite3.Connection:
        """A connection to the file (created with its tables if new), checked by a write."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            with db:
                db.executescript(SCHEMA)
                db.execute("DELETE FROM samples WHERE 0")  # a real write, here and now
        except (OSError, sqlite3.Error) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise UsageError(
                f"{self.option} {self.path}: cannot write the sample store ({reason})"
            ) from None
        return db

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection (opened on first use)."""
        if self._db is None:
            self._db = self._connect()
        return self._db

    def close(self) -> None:
        """Close the file (every write is already committed)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(
        self,
        step: int,
        objects: Sequence[str],
        log_reward: Sequence[float],
        components: Sequence[Sequence[float]] | None = None,
        temperature: Sequence[float] | None = None,
        preference: Sequence[Sequence[float]] | None = None,
        worker: str | Sequence[str] = "learner",
    ) -> None:
        """Record one step's objects, in one transaction."""
        n = len(objects)
        workers = [worker] * n if isinstance(worker, str) else list(worker)
        rows = zip(
            [step] * n,
            workers,
            objects,
            [float(v) for v in log_reward],
            _json_rows(components, n),
            [None] * n if temperature is None else [float(t) for t in temperature],
            _json_rows(preference, n),
            strict=True,
        )
        with self.db:
            self.db.executemany(
                "INSERT INTO samples (step, worker, object, log_reward, components, temperature,"
                " preference) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def rollback_after(self, step: int) -> int:
        """Delete the samples of steps after `step` (a resumed run generates them again); how
        many were deleted."""
        with self.db:
            return self.db.execute("DELETE FROM samples WHERE step > ?", (step,)).rowcount

    def count(self, distinct: bool = False) -> int:
        """How many samples (or distinct objects) the store holds."""
        what = "COUNT(DISTINCT object)" if distinct else "COUNT(*)"
        return int(self.db.execute(f"SELECT {what} FROM samples").fetchone()[0])

    def samples(self, after: int = 0) -> list[dict[str, Any]]:
        """Every sample (or those whose id is above `after`: the ones written since) as a dict,
        in step order (components and preference decoded)."""
        cursor = self.db.execute(
            "SELECT id, step, worker, object, log_reward, temperature, components, preference "
            "FROM samples WHERE id > ? ORDER BY step, id",
            (after,),
        )
        return [
            dict(zip(SAMPLE_COLUMNS, row[:6], strict=True))
            | {"components": _loads(row[6]), "preference": _loads(row[7])}
            for row in cursor
        ]

    def cached(self, objects: Iterable[str]) -> dict[str, Any]:
        """The oracle's stored results for those of `objects` it has evaluated."""
        keys = list(dict.fromkeys(objects))
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):  # SQLite's bound on query parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            cursor = self.db.execute(
                f"SELECT object, value FROM oracle WHERE object IN ({marks})", chunk
            )
            found.update((key, json.loads(value)) for key, value in cursor)
        return found

    def remember(
        self, results: Mapping[str, Any], seconds: float | None = None, worker: str = "learner"
    ) -> None:
        """Store oracle results (object -> value: a number or a list of numbers), in one
        transaction; an object already stored keeps its first result."""
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO oracle (object, value, seconds, worker) VALUES (?, ?, ?, ?)",
                [(key, json.dumps(value), seconds, worker) for key, value in results.items()],
            )

    def oracle_count(self) -> int:
        """How many objects the oracle cache holds."""
        return int(self.db.execute("SELECT COUNT(*) FROM oracle").fetchone()[0])


def _json_rows(values: Sequence[Sequence[float]] | None, n: int) -> list[str | None]:
    """Each row as JSON text (None everywhere without values)."""
    if values is None:
        return [None] * n
    return [json.dumps([float(v) for v in row]) for row in values]


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


ROW_FIELDS = ("objects", "log_reward", "components", "temperature", "preference", "worker")
"""What `StoreCallback.rows` gives for each object (the arguments of `SampleStore.add`)."""

Components = Callable[["Trainer", "Rollout", Any], "torch.Tensor | None"]
"""Reward components (n, k) of a batch's complete objects, or None to store none."""

Names = Callable[["Trainer", "Rollout", Any], list[str]]
"""The names of a batch's complete objects (`Env.object_names` unless a caller knows them)."""


class StoreCallback(Callback):
    """Records each training step's newly sampled complete objects in a `SampleStore`: name
    (`Env.object_names`: canonical SMILES for molecules),
    log reward (as trained on: the conditional one for conditional environments), reward
    components, temperature and preference (read back from the conditioning rows where the
    conditioning can `decode` them), step and worker. Replayed objects are not new samples:
    only the first `trainer.online` rows of a batch are recorded.

    With several training processes (`gflow.distributed`) every process has one: each hands its
    rows to the writing process (`Trainer.gather`), whose callback holds the store and records
    all of them in one transaction, the worker being the rank (`rank0`, `rank1`, ...); the
    others hold no store (`store=None`).

    Its first step deletes the store's samples from that step on (see the module docstring).
    """

    def __init__(
        self,
        store: SampleStore | None,
        components: Components | None = None,
        names: Names | None = None,
    ):
        self.store, self.components = store, components or env_components
        self.names = names or env_names
        self.synced = False

    def after_step(self, trainer: Trainer, loss: torch.Tensor, batch: Rollout | None) -> None:
        if self.store is not None and not self.synced:
            self.store.rollback_after(trainer.step - 1)
            self.synced = True
        parts = trainer.gather(None if batch is None else self.rows(trainer, batch))
        if parts is None or self.store is None:
            return
        rows: dict[str, list[Any]] = {key: [] for key in ROW_FIELDS}
        for rank, part in enumerate(parts):
            if part is None:
                continue
            if len(parts) > 1:
                part["worker"] = [f"rank{rank}"] * len(part["objects"])
            for key in ROW_FIELDS:
                rows[key].extend(part[key] or [])
        if rows["objects"]:
            self.store.add(
                trainer.step,
                rows["objects"],
                rows["log_reward"],
                rows["components"] or None,
                rows["temperature"] or None,
                rows["preference"] or None,
                rows["worker"],
            )

    def rows(self, trainer: Trainer, batch: Rollout) -> dict[str, Any] | None:
        """This process's new complete objects of `batch` as `SampleStore.add` arguments (None
        without any)."""
        env = trainer.env
        n = len(batch.done) if trainer.online is None else trainer.online
        done = batch.done.clone()
        done[n:] = False
        if not bool(done.any()):
            return None
        states = env.select(batch.terminal, done)
        cond = None if batch.cond is None else batch.cond[done]
        temperature, preference = _condition(env, cond)
        components = self.components(trainer, batch, states)
        workers = getattr(trainer, "workers_of", None)
        names = self.names(trainer, batch, states)
        return {
            "objects": names,
            "log_reward": batch.log_reward[done].tolist(),
            "components": None if components is None else components.tolist(),
            "temperature": temperature,
            "preference": preference,
            "worker": ["learner"] * len(names)
            if workers is None
            else [workers[i] for i in done.nonzero()[:, 0].tolist()],
        }


def env_names(trainer: Trainer, batch: Rollout, states: Any) -> list[str]:
    """The environment's names of the objects (`Env.object_names`)."""
    return trainer.env.object_names(states)


def env_components(trainer: Trainer, batch: Rollout, states: Any) -> torch.Tensor | None:
    """The environment's declared reward components of the objects (None where it declares
    none: the log reward is then the only one)."""
    env = trainer.env
    if not env.n_reward_components:
        return None
    return env.reward_components(states)


def _condition(
    env: Env, cond: torch.Tensor | None
) -> tuple[list[float] | None, list[list[float]] | None]:
    """Temperatures and preferences carried by conditioning rows (None where there are none)."""
    decode = getattr(env.conditioning, "decode", None)
    if cond is None or not callable(decode):
        return None, None
    info = decode(cond)
    prefs = None if info.preferences is None else info.preferences.tolist()
    return info.beta.tolist(), prefs


EXPORT_FORMATS = ("csv", "parquet")


def export_store(source: str | os.PathLike, out: str | os.PathLike, fmt: str) -> int:
    """Write a store's samples (components and preference spread into columns component_i and
    preference_i, the oracle's cached value beside each) to `out` as CSV or Parquet,
    atomically; the number of rows."""
    import pyarrow as pa

    path = Path(source)
    if not path.is_file():
        raise UsageError(f"no sample store at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = db.execute(
            "SELECT s.id, s.step, s.worker, s.object, s.log_reward, s.temperature, "
            "s.components, s.preference, o.value FROM samples s "
            "LEFT JOIN oracle o ON o.object = s.object ORDER BY s.id"
        ).fetchall()
        db.close()
    except sqlite3.Error as err:
        raise UsageError(f"{path} is not a gflow sample store ({err})") from None
    columns: dict[str, list[Any]] = {
        name: [r[i] for r in rows] for i, name in enumerate(SAMPLE_COLUMNS)
    }
    for index, prefix in ((6, "component"), (7, "preference")):
        decoded = [_loads(r[index]) or [] for r in rows]
        for j in range(max((len(d) for d in decoded), default=0)):
            columns[f"{prefix}_{j}"] = [d[j] if j < len(d) else None for d in decoded]
    columns["oracle"] = _oracle_column([None if r[8] is None else json.loads(r[8]) for r in rows])
    table = pa.table(columns)
    target = Path(out)
    if target.is_dir():
        raise UsageError(f"--out {target} is a directory, expected a file")
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        if fmt == "csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, tmp)
        else:
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)
        os.replace(tmp, target)
    except OSError as err:
        reason = err.strerror or str(err).split(". Detail")[0]
        raise UsageError(f"--out {target}: cannot write it ({reason})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return len(rows)


def _oracle_column(values: list[Any]) -> list[Any]:
    """Cached oracle values as one column: numbers where every value is one, else JSON text."""
    if all(v is None or isinstance(v, (int, float)) for v in values):
        return [None if v is None else float(v) for v in values]
    return [None if v is None else json.dumps(v) for v in values]

"""A Ray worker pool for rollouts and expensive rewards (oracles), and the trainer that uses it.

`RayPool` starts a local Ray (`workers=N`, stopped again by `close`) or joins an existing cluster
(`address=`), and keeps N actors, each holding a copy of the environment and the policy. Tasks
are supervised: a task whose worker dies, or that runs past its timeout, is re-run on a fresh
worker that replaces the failed one, up to `retries` times.

`PoolTrainer` samples its batches on the pool, pipelined: the next batch is submitted before the
learner trains on the current one, so sampling (and reward evaluation) overlaps training. The
workers' policy copies are refreshed from the learner every `refresh_every` steps, so a batch
may come from a policy a few steps old (at most `refresh_every` steps plus the one step of the
pipeline). Every objective gflow trains with stays correct on such off-policy samples:

- TB, DB, SubTB (and FL-DB, the order-preserving and conditional variants) are consistency
  losses: each is minimised, at zero, exactly when the flows are balanced on the trajectories
  it is given, whatever distribution those trajectories were drawn from, as long as that
  distribution covers the trajectories of the target (any policy with full support does).
  Their gradients are computed on the learner with a fresh forward pass of the current
  policy (no quantity recorded while sampling is reused), so the loss is that of the current
  parameters on the stale samples: an off-policy update, the same as with replay.
- A user's loss is the user's to judge: it is given the same Trajectories either way.

`Oracle` wraps an expensive reward function: each distinct object is evaluated once (deduplicated
by key within a batch, against the results in memory and against the sample store's oracle
cache, which survives restarts), in batches, on the pool when there is one. An object whose
evaluation raises gets the minimum reward and a warning naming it; `max_failures` failures in a
row stop the run with the reward's error. Failures are not cached: a restarted run tries again.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gflow.env import Env
from gflow.errors import GflowError, UsageError
from gflow.guards import RewardError
from gflow.objectives import Loss, Objective
from gflow.policies.base import Policy
from gflow.replay import cat_rollouts
from gflow.run_config import TrainConfig
from gflow.sampling import Rollout, sample_forward, terminal_log_reward
from gflow.store import SampleStore
from gflow.training import Trainer

__all__ = [
    "Oracle",
    "PoolError",
    "PoolTrainer",
    "RayPool",
    "evaluate_items",
    "install_oracle",
]


class PoolError(GflowError):
    """The pool cannot go on: Ray unreachable, or a task failed on every retry."""


Outcome = tuple[Any, str | None]
"""One object's evaluation: (value, None) or (None, 'ErrorType: message')."""


def evaluate_items(fn: Callable[[Sequence[Any]], Any], items: Sequence[Any]) -> list[Outcome]:
    """`fn` on a batch of items, one outcome per item: the batch in one call, or, when that
    call raises, each item alone, so that one bad item fails alone."""
    try:
        return [(v, None) for v in _values(fn(items), len(items))]
    except Exception:  # noqa: BLE001 - the user's reward: find the items that fail
        if len(items) == 1:
            return [(None, _error_text(sys.exc_info()[1]))]
    outcomes: list[Outcome] = []
    for item in items:
        try:
            outcomes.append((_values(fn([item]), 1)[0], None))
        except Exception as err:  # noqa: BLE001 - the user's reward, reported per item
            outcomes.append((None, _error_text(err)))
    return outcomes


def _values(raw: Any, n: int) -> list[Any]:
    """A reward's output as n plain values (floats, or lists of floats for vectors)."""
    values = torch.as_tensor(raw, dtype=torch.float64).detach().cpu()
    if values.dim() == 0 or len(values) != n:
        raise ValueError(f"the reward returned shape {tuple(values.shape)} for {n} objects")
    return values.tolist()


def _error_text(err: BaseException | None) -> str:
    return f"{type(err).__name__}: {err}" if err is not None else "unknown error"


def default_key(item: Any) -> str:
    """An object's cache key: canonical SMILES for an RDKit molecule, else its repr."""
    if hasattr(item, "GetNumAtoms"):
        from rdkit import Chem

        return Chem.MolToSmiles(item)
    return repr(item)


@dataclass
class Pending:
    """Oracle evaluations under way: their tasks, each with the keys it evaluates."""

    tasks: list[tuple[Any, list[str]]] = field(default_factory=list)
    done: bool = False


class Oracle:
    """An expensive batched reward `fn(items) -> (n,)` (or (n, k)) called once per distinct
    object: see the module docstring. An object whose evaluation raises gets `fallback` (by
    default 1e-4, the floor of gflow's molecule rewards) and a warning on stderr; after
    `max_failures` in a row, a RewardError. Used as the environment's reward callable (a molecule
    environment's `reward`); `prefetch`/`wait` let a pipelined trainer evaluate a batch while
    it trains on the previous one. A copy sent to a worker (pickled) is a placeholder returning
    `placeholder` for every item: the learner evaluates rewards, the workers only sample."""

    def __init__(
        self,
        fn: Callable[[Sequence[Any]], Any],
        store: SampleStore | None = None,
        pool: RayPool | None = None,
        key: Callable[[Any], Hashable] = default_key,
        fallback: float = 1e-4,
        max_failures: int = 20,
        name: str | None = None,
        chunk: int = 0,
    ):
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {max_failures}")
        self.fn, self.store, self.pool, self.key = fn, store, pool, key
        self.fallback, self.max_failures, self.chunk = fallback, max_failures, chunk
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.memory: dict[str, Any] = {}
        self.failed_in_a_row = 0
        self.evaluated = 0
        """Objects evaluated by this process's calls (cache hits not counted)."""
        self.seconds = 0.0
        self.placeholder: float | None = None
        self.collecting: list[Any] | None = None
        """While a list: calls only collect their items into it (and return placeholders)."""
        self.outstanding: list[Pending] = []
        """Evaluations started on the pool and not collected yet."""

    def __getstate__(self) -> dict[str, Any]:
        """A worker's copy: no store, pool or cache, and no evaluation (see the class)."""
        return {"name": self.name, "placeholder": 1.0}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name, self.placeholder, self.collecting = state["name"], state["placeholder"], None
        self.outstanding = []

    def __call__(self, items: Sequence[Any]) -> torch.Tensor:
        """The rewards of `items`, evaluating those not known yet."""
        if self.collecting is not None:
            self.collecting.extend(items)
        if self.placeholder is not None or self.collecting is not None:
            return torch.full((len(items),), self.placeholder or 1.0, dtype=torch.float64)
        keys = [str(self.key(item)) for item in items]
        self.wait(self.prefetch(items, keys))
        if any(self.memory[k] is None for k in keys):  # asked for while in flight: collect all
            for pending in list(self.outstanding):
                self.wait(pending)
        return torch.as_tensor([self.memory[k] for k in keys], dtype=torch.float64)

    def prefetch(self, items: Sequence[Any], keys: Sequence[str] | None = None) -> Pending:
        """Start evaluating the items not known yet (once each): on the pool when there is one,
        else here and now; `wait` collects the results."""
        if keys is None:
            keys = [str(self.key(item)) for item in items]
        todo: dict[str, Any] = {}
        for k, item in zip(keys, items, strict=True):
            if k not in self.memory and k not in todo:
                todo[k] = item
        if todo and self.store is not None:
            self.memory.update(self.store.cached(todo))
            todo = {k: v for k, v in todo.items() if k not in self.memory}
        pending = Pending()
        if not todo:
            return pending
        self.memory.update(dict.fromkeys(todo))  # in flight: a later batch does not ask again
        names, objects = list(todo), list(todo.values())
        if self.pool is None:
            start = time.perf_counter()
            outcomes = evaluate_items(self.fn, objects)
            self._record(names, outcomes, time.perf_counter() - start, "learner")
            return pending
        size = self.chunk or math.ceil(len(objects) / len(self.pool.actors))
        for i in range(0, len(objects), size):
            task = self.pool.submit("evaluate", objects[i : i + size])
            pending.tasks.append((task, names[i : i + size]))
        self.outstanding.append(pending)
        return pending

    def wait(self, pending: Pending) -> None:
        """Collect the evaluations `prefetch` started into the cache (and the store)."""
        if pending.done:
            return
        pending.done = True
        if pending in self.outstanding:
            self.outstanding.remove(pending)
        assert self.pool is not None or not pending.tasks
        for task, names in pending.tasks:
            outcomes, seconds = self.pool.result(task)  # type: ignore[union-attr]
            self._record(names, outcomes, seconds, task.worker)

    def _record(
        self, keys: list[str], outcomes: list[Outcome], seconds: float, worker: str
    ) -> None:
        """Cache the results (the good ones in the store too), warn about failures, and stop
        after `max_failures` in a row (the good results of the batch are kept first)."""
        good: dict[str, Any] = {}
        stop = None
        for k, (value, error) in zip(keys, outcomes, strict=True):
            if error is None:
                good[k] = value
                self.failed_in_a_row = 0
                continue
            self.failed_in_a_row += 1
            if self.failed_in_a_row >= self.max_failures and stop is None:
                stop = RewardError(
                    f"reward {self.name} failed on {self.failed_in_a_row} objects in a row "
                    f"(the last: {k}): {error}"
                )
            if stop is None:
                print(
                    f"warning: reward {self.name} raised on {k} ({error[:300]}); it gets the "
                    f"minimum reward {self.fallback:g}",
                    file=sys.stderr,
                )
            self.memory[k] = self.fallback
        self.memory.update(good)
        self.evaluated += len(keys)
        self.seconds += seconds
        if good and self.store is not None:
            self.store.remember(good, seconds / len(keys), worker)
        if stop is not None:
            for k in keys:  # failures are not cached: a restarted run tries them again
                if k not in good:
                    self.memory.pop(k, None)
            raise stop


def install_oracle(env: Env, make: Callable[[Callable[..., Any]], Oracle]) -> Oracle:
    """Replace the reward callable an environment holds (a molecule environment's `reward`,
    under any wrappers) by the oracle `make(reward)`; the oracle."""
    inner: Any = env
    for _ in range(16):
        reward = vars(inner).get("reward") if hasattr(inner, "__dict__") else None
        if callable(reward):
            oracle = make(reward)
            inner.reward = oracle
            return oracle
        inner = vars(inner).get("env") if hasattr(inner, "__dict__") else None
        if not isinstance(inner, Env):
            break
    raise UsageError(
        f"{type(env).__name__} holds no reward function to call as an oracle "
        "(the molecule environments do: --reward)"
    )


def find_oracle(env: Env) -> Oracle | None:
    """The oracle installed in an environment (see `install_oracle`), if any."""
    inner: Any = env
    for _ in range(16):
        found = vars(inner).get("reward") if hasattr(inner, "__dict__") else None
        while found is not None and not isinstance(found, Oracle):
            found = getattr(found, "score", None)  # a recording wrapper around the oracle
        if isinstance(found, Oracle):
            return found
        inner = vars(inner).get("env") if hasattr(inner, "__dict__") else None
        if not isinstance(inner, Env):
            return None
    return None


# --- Ray ---------------------------------------------------------------------------------------


class _Worker:
    """A pool actor: a copy of the environment and the policy (weights refreshed on demand),
    sampling rollouts and evaluating an oracle's function."""

    def __init__(self, env: Env, policy: Policy, fn: Callable[..., Any] | None, name: str):
        torch.set_num_threads(1)
        self.env, self.policy, self.fn, self.name = env, policy.cpu(), fn, name
        self.version = -1

    def sample(
        self, weights: list[Any], version: int, n: int, seed: int, cond: torch.Tensor | None,
        options: dict[str, Any],
    ) -> Rollout:
        """n rollouts from seed with the policy's weights of `version` (fetched when new)."""
        if version != self.version:
            state = weights[0]
            if not isinstance(state, dict):  # a reference into Ray's object store
                import ray

                state = ray.get(state)
            self.policy.load_state_dict(state)
            self.version = version
        torch.manual_seed(seed)
        return sample_forward(self.env, self.policy, n, cond, **options)

    def evaluate(self, items: Sequence[Any]) -> tuple[list[Outcome], float]:
        """The oracle function on items (`evaluate_items`) and the seconds it took."""
        assert self.fn is not None, "this pool has no oracle function"
        start = time.perf_counter()
        outcomes = evaluate_items(self.fn, items)
        return outcomes, time.perf_counter() - start

    def pid(self) -> int:
        return os.getpid()


@dataclass
class Task:
    """A task on the pool: what to run, where it runs now and how often it was tried."""

    method: str
    args: tuple[Any, ...]
    actor: int
    ref: Any = None
    handle: Any = None
    """The actor the task was last launched on."""
    started: float = 0.0
    attempts: int = 0

    @property
    def worker(self) -> str:
        return f"worker-{self.actor}"


STARTUP_SECONDS = 300.0
"""How long a new worker may take to start (importing torch on a loaded machine is slow)."""


class RayPool:
    """N supervised Ray actors (see the module docstring): `submit` a method call, `result`
    waits for it, replacing a worker that died or timed out and re-running its task."""

    def __init__(
        self,
        env: Env,
        policy: Policy,
        workers: int | None = None,
        address: str | None = None,
        fn: Callable[..., Any] | None = None,
        timeout: float = 600.0,
        retries: int = 3,
    ):
        if address is None and (workers is None or workers < 1):
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout <= 0 or retries < 0:
            raise ValueError(f"need timeout > 0 and retries >= 0, got {timeout}, {retries}")
        try:
            import ray
        except ImportError:
            raise UsageError(
                "a worker pool (--workers, --ray-address) needs Ray: pip install 'gflow[ray]'"
            ) from None
        self.ray, self.timeout, self.retries = ray, timeout, retries
        self.started = _start_ray(ray, workers, address)
        _pickle_plugins_by_value(ray)
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.actor_class = ray.remote(num_cpus=1, max_restarts=0)(_Worker)
        self.env_ref = ray.put(env)
        self.policy_ref = ray.put(policy)
        self.fn_ref = ray.put(fn)
        self.actors = [self._actor(i) for i in range(n)]
        self._ready(self.actors)
        self.replaced = 0
        self.next = 0

    def _actor(self, i: int) -> Any:
        return self.actor_class.remote(self.env_ref, self.policy_ref, self.fn_ref, f"worker-{i}")

    def _ready(self, actors: list[Any]) -> None:
        """Wait until the actors have started (a task's timeout then counts its run alone)."""
        try:
            self.ray.get([actor.pid.remote() for actor in actors], timeout=STARTUP_SECONDS)
        except Exception as err:  # noqa: BLE001 - Ray's failures to start a worker, named
            raise PoolError(
                f"could not start {len(actors)} pool worker(s) within {STARTUP_SECONDS} s: "
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from None

    def publish(self, state: dict[str, torch.Tensor]) -> list[Any]:
        """The learner's weights put in the object store once for every worker, wrapped in a
        list (so that a task fetches them only when its worker's copy is older)."""
        return [self.ray.put(state)]

    def submit(self, method: str, *args: Any) -> Task:
        """Run `method(*args)` on the next worker (round robin)."""
        task = Task(method, args, self.next % len(self.actors))
        self.next += 1
        self._launch(task)
        return task

    def _launch(self, task: Task) -> None:
        task.handle = self.actors[task.actor]
        task.ref = getattr(task.handle, task.method).remote(*task.args)
        task.started = time.monotonic()
        task.attempts += 1

    def result(self, task: Task) -> Any:
        """The task's result; a worker that died or ran past the timeout is replaced and the
        task re-run, up to `retries` times."""
        ray = self.ray
        while True:
            left = task.started + self.timeout - time.monotonic()
            ready, _ = ray.wait([task.ref], timeout=max(left, 0.0))
            failure = f"timed out after {self.timeout:g} s"
            if ready:
                try:
                    return ray.get(task.ref)
                except ray.exceptions.RayTaskError as err:
                    raise err.as_instanceof_cause() from None
                except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as err:
                    failure = f"its worker died ({type(err).__name__})"
            if task.attempts > self.retries:
                raise PoolError(
                    f"pool task {task.method} failed {task.attempts} times; the last: {failure}"
                )
            if self.actors[task.actor] is task.handle:  # not replaced yet by another task
                self.replace(task.actor)
            self._launch(task)

    def replace(self, i: int) -> None:
        """Kill worker i (if it still runs) and start a fresh one in its place."""
        self.ray.kill(self.actors[i], no_restart=True)
        self.actors[i] = self._actor(i)
        self._ready([self.actors[i]])
        self.replaced += 1

    def close(self) -> None:
        """Stop the workers, and Ray itself when this pool started it."""
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        self.actors = []
        if self.started:
            self.ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _start_ray(ray: Any, workers: int | None, address: str | None) -> bool:
    """Join the cluster at `address` (an unreachable one is a one-line error naming it), or
    start a local Ray with `workers` CPUs and nothing else (no dashboard, a small object
    store); whether this call started Ray."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is not None:
        _check_reachable(address)
        try:
            ray.init(address=address, **quiet)
        except Exception as err:  # noqa: BLE001 - Ray raises many kinds here; all mean "unreachable"
            first = next((line for line in str(err).splitlines() if line.strip()), "")
            raise PoolError(
                f"--ray-address {address}: cannot reach a Ray cluster there ({first[:200]})"
            ) from None
        return True
    ray.init(num_cpus=workers, num_gpus=0, object_store_memory=256 * 2**20, **quiet)
    return True


def _check_reachable(address: str, seconds: float = 5.0) -> None:
    """A one-line error naming `address` unless something listens there (Ray itself would
    retry for minutes); `auto` and `ray://` addresses are left to Ray."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise PoolError(f"--ray-address {address}: expected HOST:PORT (or auto, ray://HOST:PORT)")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=seconds).close()
    except OSError as err:
        raise PoolError(
            f"--ray-address {address}: cannot reach a Ray cluster there "
            f"({err.strerror or err})"
        ) from None


def _pickle_plugins_by_value(ray: Any) -> None:
    """Send the user's plug-in modules (loaded from files, `gflow.plugins`) to workers by
    value: the workers cannot import them by their generated names."""
    for name, module in list(sys.modules.items()):
        if name.startswith("gflow_plugin_"):
            ray.cloudpickle.register_pickle_by_value(module)


class PoolTrainer(Trainer):
    """A `Trainer` whose batches are sampled on a `RayPool`, pipelined (see the module
    docstring): `batch()` submits the next batch before returning the current one. With an
    oracle installed in the environment, the workers only sample and the learner evaluates
    the rewards through the oracle, on the pool, one batch ahead of training."""

    def __init__(
        self,
        env: Env,
        policy: Policy,
        objective: Objective | Loss,
        config: TrainConfig,
        pool: RayPool,
        refresh_every: int = 1,
        env_info: dict[str, Any] | None = None,
        chunks: int = 0,
    ):
        if config.replay_capacity:
            raise UsageError("replay is not supported with a worker pool yet (--replay-capacity)")
        if refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1, got {refresh_every}")
        super().__init__(env, policy, objective, config, env_info)
        self.pool, self.refresh_every = pool, refresh_every
        self.chunks = chunks or len(pool.actors)
        self.oracle = find_oracle(env)
        self.queue: list[tuple[list[Task], torch.Tensor | None]] = []
        self.ahead: tuple[Rollout, Pending, list[str]] | None = None
        self.weights: list[Any] = []
        self.version = -1
        self.workers_of: list[str] = []
        self.wait_seconds = 0.0
        """Seconds the learner waited for the pool (sampling and oracle not hidden)."""

    def run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """`Trainer.run`; then the oracle evaluations still under way for the batch ahead are
        waited for, so that their paid-for results reach the cache (and the store)."""
        metrics = super().run(*args, **kwargs)
        if self.oracle is not None and self.ahead is not None:
            self.oracle.wait(self.ahead[1])
            self.ahead = None
        return metrics

    def _refresh(self) -> None:
        """Publish the learner's weights when the workers' copy is `refresh_every` old."""
        if self.version < 0 or self.step - self.version >= self.refresh_every:
            state = {k: v.detach().cpu() for k, v in self.policy.state_dict().items()}
            self.weights = self.pool.publish(state)
            self.version = self.step

    def _submit(self) -> tuple[list[Task], torch.Tensor | None]:
        """Submit one batch's rollouts, split across the workers, each chunk with its seed."""
        cfg, env = self.config, self.env
        self._refresh()
        n = cfg.batch_size
        cond = env.conditioning.sample(n).cpu() if env.conditional else None
        options = {"temperature": cfg.temperature, "epsilon": cfg.epsilon,
                   "max_steps": cfg.max_steps}
        sizes = [len(part) for part in torch.arange(n).chunk(min(self.chunks, n))]
        tasks, start = [], 0
        for size in sizes:
            seed = int(torch.randint(2**62, ()))
            part = None if cond is None else cond[start : start + size]
            tasks.append(
                self.pool.submit("sample", self.weights, self.version, size, seed, part, options)
            )
            start += size
        return tasks, cond

    def _collect(self, tasks: list[Task]) -> tuple[Rollout, list[str]]:
        """The rollouts of a submitted batch, concatenated on the learner's device, and the
        worker that sampled each."""
        start = time.perf_counter()
        parts = [self.pool.result(t) for t in tasks]
        self.wait_seconds += time.perf_counter() - start
        workers = [t.worker for t, r in zip(tasks, parts, strict=True) for _ in r.lengths]
        rollout = parts[0] if len(parts) == 1 else cat_rollouts(self.env, parts)
        return _to_device(rollout, self.env.device), workers

    def batch(self) -> Rollout:
        """The next batch from the pool (the one after it already submitted). With an oracle,
        batches go through two stages ahead of training: sampled on the workers, then
        evaluated by the oracle while the learner trains on the batch before."""
        if self.oracle is not None:
            rollout = self._batch_with_oracle(self.oracle)
        else:
            if not self.queue:
                self.queue.append(self._submit())
            tasks, _ = self.queue.pop(0)
            self.queue.append(self._submit())
            rollout, self.workers_of = self._collect(tasks)
        self.online = len(rollout.lengths)
        if self.top is not None:
            self.top.add(rollout)
        return rollout

    def _batch_with_oracle(self, oracle: Oracle) -> Rollout:
        """This step's batch with its rewards, whose evaluation started a step earlier; then
        the next batch (sampled a step earlier) goes to the oracle and one more is sampled."""
        if self.ahead is None:
            self.ahead = self._stage(oracle, self.queue.pop(0)[0] if self.queue else None)
            self.queue.append(self._submit())
        rollout, pending, workers = self.ahead
        start = time.perf_counter()
        oracle.wait(pending)
        self.wait_seconds += time.perf_counter() - start
        done = rollout.done
        if bool(done.any()):
            cond = None if rollout.cond is None else rollout.cond[done]
            states = self.env.select(rollout.terminal, done)
            rollout.log_reward[done] = terminal_log_reward(self.env, states, cond).float()
        self.ahead = self._stage(oracle, self.queue.pop(0)[0])
        self.queue.append(self._submit())
        self.workers_of = workers
        return rollout

    def _stage(
        self, oracle: Oracle, tasks: list[Task] | None
    ) -> tuple[Rollout, Pending, list[str]]:
        """A submitted batch's rollouts (sampled with placeholder rewards) and the oracle's
        evaluation of their complete objects, started on the pool."""
        rollout, workers = self._collect(tasks if tasks is not None else self._submit()[0])
        done = rollout.done
        if not bool(done.any()):
            return rollout, Pending(), workers
        states = self.env.select(rollout.terminal, done)
        return rollout, oracle.prefetch(self._items(oracle, states, rollout.cond, done)), workers

    def _items(
        self, oracle: Oracle, states: Any, cond: torch.Tensor | None, done: torch.Tensor
    ) -> list[Any]:
        """The items the oracle will be asked about for these objects: found by running the
        environment's reward path with the oracle only collecting them (a wrapper around the
        oracle sees placeholder values in this pass)."""
        oracle.collecting = []
        try:
            terminal_log_reward(self.env, states, None if cond is None else cond[done])
        finally:
            items, oracle.collecting = oracle.collecting, None
        return items


def _to_device(rollout: Rollout, device: torch.device) -> Rollout:
    """The rollout's tensors on `device` (states through `.to` where they have it)."""
    if device.type == "cpu":
        return rollout
    moved = {}
    for name, value in vars(rollout).items():
        moved[name] = value.to(device) if hasattr(value, "to") else value
    return Rollout(**moved)

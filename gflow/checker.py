"""Environment checker: random trajectories (and every state, when enumerable) verify that steps,
masks, rewards and features keep the `Env` contract, naming the first state that breaks it."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import torch

from gflow.env import Env, States

DEFAULT_MAX_STEPS = 10_000
"""Step bound for non-enumerable environments: a trajectory still running after it fails."""
CHUNK = 4096
"""States checked per batch when walking an enumeration."""


class EnvCheckError(Exception):
    """An environment broke its contract; the message names the state and action."""

    def __init__(self, message: str, key: Hashable | None = None, action: int | None = None):
        super().__init__(message)
        self.key = key
        self.action = action


@dataclass
class CheckReport:
    """What a passing check covered."""

    env: str
    trajectories: int
    states: int
    """Distinct states whose masks, steps, features and rewards were checked."""
    edges: int
    """(state, action) pairs checked, forward and backward."""
    max_length: int
    mean_length: float
    """Sampled trajectory lengths, the stop included."""
    enumerated: int | None
    """Number of enumerated states (all checked), None when not enumerable."""
    seconds: float

    def summary(self) -> str:
        """One line describing the check."""
        enum = f", all {self.enumerated} enumerated states" if self.enumerated is not None else ""
        return (
            f"{self.env}: {self.trajectories} random trajectories (length mean "
            f"{self.mean_length:.1f}, max {self.max_length}){enum}; {self.states} states and "
            f"{self.edges} actions checked in {self.seconds:.2f}s"
        )


def check_env(
    env: Env,
    n_trajectories: int = 64,
    seed: int = 0,
    max_steps: int | None = None,
    use_enumeration: bool = True,
) -> CheckReport:
    """Verify `env` on uniformly random trajectories, and on every state if it is enumerable.

    At each state: masks have the declared shapes; some action is legal; every legal forward
    action leads to a new state whose backward mask allows the reverse action, which steps back
    to the state and maps back to the forward action; every legal backward action leads to a
    parent whose forward mask allows the way back; features have the declared shape and are
    finite; energies (if any) are finite; where stop is legal the log reward is finite (R > 0)
    and equals -energy, and the declared reward components have their declared number. Every
    trajectory must stop within `max_steps` (default: the number of enumerated states, else
    10000, and at most a declared `horizon`). The contract's declarations (`policy_kind`,
    `n_reward_components`, `conditional` with its `conditioning`, `exact_target`, `horizon`) are
    checked first; declared integer `state_ids` must tell states apart exactly as keys do, and a
    declared horizon needs `step` to leave states as they are under the stop action. Raises
    `EnvCheckError` at the first violation.
    """
    if n_trajectories < 1:
        raise ValueError(f"check_env needs n_trajectories >= 1, got {n_trajectories}")
    start = time.perf_counter()
    checker = _Checker(env, seed)
    checker.check_declarations()
    if env.conditional:
        raise ValueError(f"{type(env).__name__} has a conditional reward: check env.at(cond)")
    enumerated = None
    if use_enumeration and env.is_enumerable():
        enumerated = checker.load_enumeration()
    bound = max_steps or (enumerated or DEFAULT_MAX_STEPS)
    if env.horizon is not None:
        bound = min(bound, env.horizon)
    lengths = checker.walk(n_trajectories, bound)
    if enumerated is not None:
        checker.check_enumeration()
    return CheckReport(
        env=type(env).__name__,
        trajectories=n_trajectories,
        states=len(checker.seen),
        edges=checker.edges,
        max_length=int(lengths.max()),
        mean_length=float(lengths.float().mean()),
        enumerated=enumerated,
        seconds=time.perf_counter() - start,
    )


def forbidden(allowed: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """(n,) bool, on the mask's device: where row i of mask `allowed` forbids `actions[i]`."""
    rows = torch.arange(len(actions), device=allowed.device)
    return ~allowed[rows, actions.to(allowed.device)]


class _Checker:
    """The state of one check: the env, its random generator and what was already verified."""

    def __init__(self, env: Env, seed: int):
        self.env = env
        self.name = type(env).__name__
        self.seed = seed
        self.generator: torch.Generator | None = None
        self.seen: set[Hashable] = set()
        self.known: set[Hashable] | None = None
        self.enumeration: States | None = None
        self.edges = 0
        self.ids: dict[int, Hashable] = {}

    def fail(
        self, message: str, key: Hashable | None = None, action: int | None = None
    ) -> NoReturn:
        """Raise the error for the first inconsistency."""
        raise EnvCheckError(f"{self.name}: {message}", key, action)

    def describe(self, states: States, i: int) -> str:
        """State i by its values (tensor states) or its key, with the key when it adds to them."""
        key = self.env.keys(self.env.select(states, torch.tensor([i])))[0]
        if not isinstance(states, torch.Tensor):
            return f"{key}"
        values = states[i].tolist()
        if isinstance(key, bytes) or key == tuple(states[i].reshape(-1).tolist()):
            return f"{values}"
        return f"{key} {values}"

    def call(self, method: str, states: States, *args: torch.Tensor) -> Any:
        """env.method(states, *args); if it raises, name the first state (and action) that fails."""
        fn: Callable[..., Any] = getattr(self.env, method)
        try:
            return fn(states, *args)
        except EnvCheckError:
            raise
        except Exception as err:
            for i in range(self.env.size(states)):
                one = torch.tensor([i])
                try:
                    fn(self.env.select(states, one), *(a[one.to(a.device)] for a in args))
                except Exception:
                    key = self.env.keys(self.env.select(states, one))[0]
                    action = int(args[0][i]) if args else None
                    with_action = "" if action is None else f", action {action}"
                    where = f"at state {self.describe(states, i)}{with_action}"
                    self.fail(f"{method} raised {type(err).__name__} {where}: {err}", key, action)
            self.fail(f"{method} raised {type(err).__name__} on a batch of states: {err}")

    def check_declarations(self) -> None:
        """The contract's declarations: a registered policy kind, a whole number of reward
        components, fine actions only on graphs, conditioning rows of the declared width when
        conditional, and an exact target on the same states and actions."""
        from gflow.policies.registry import POLICIES

        env = self.env
        if env.policy_kind not in POLICIES:
            self.fail(
                f"policy_kind {env.policy_kind!r} is not a registered policy "
                f"({', '.join(sorted(POLICIES))})"
            )
        if not isinstance(env.n_reward_components, int) or env.n_reward_components < 0:
            self.fail(f"n_reward_components must be an int >= 0, got {env.n_reward_components!r}")
        fine = env.fine_actions
        if not isinstance(fine, int) or fine < 0:
            self.fail(f"fine_actions must be an int >= 0, got {fine!r}")
        if fine and env.policy_kind != "graph-transformer":
            self.fail(
                f"fine_actions = {fine} splits graph node actions; policy_kind is "
                f"{env.policy_kind!r}"
            )
        if not isinstance(env.conditional, bool):
            self.fail(f"conditional must be a bool, got {env.conditional!r}")
        if env.conditional:
            self.check_conditioning()
        target = env.exact_target()
        if not isinstance(target, Env):
            self.fail(f"exact_target() returned {type(target).__name__}, not an Env")
        if (target.n_actions, target.n_backward) != (env.n_actions, env.n_backward):
            self.fail(
                f"exact_target() has {target.n_actions} forward and {target.n_backward} "
                f"backward actions, the environment {env.n_actions} and {env.n_backward}"
            )
        if target.keys(target.initial(1)) != env.keys(env.initial(1)):
            self.fail("exact_target() starts from another initial state")
        horizon = env.horizon
        if horizon is not None and (not isinstance(horizon, int) or horizon < 1):
            self.fail(f"horizon must be None or an int >= 1, got {horizon!r}")

    def check_conditioning(self) -> None:
        """A conditional environment's `conditioning` draws (n, cond_dim) finite float rows."""
        env, source = self.env, self.env.conditioning
        if source is None or not callable(getattr(source, "sample", None)):
            self.fail("conditional, but `conditioning` has no sample(n) for the rows")
        if not isinstance(env.cond_dim, int) or env.cond_dim < 1:
            self.fail(f"conditional, but cond_dim is {env.cond_dim!r} (must be an int >= 1)")
        rows = source.sample(3)
        if (
            not isinstance(rows, torch.Tensor)
            or tuple(rows.shape) != (3, env.cond_dim)
            or not rows.is_floating_point()
            or not torch.isfinite(rows).all()
        ):
            got = tuple(rows.shape) if isinstance(rows, torch.Tensor) else type(rows).__name__
            self.fail(
                f"conditioning.sample(3) must give finite float rows (3, {env.cond_dim}), got {got}"
            )

    def load_enumeration(self) -> int:
        """List every state once, check there are no duplicates and that s0 is among them."""
        try:
            states = self.env.enumerate_states()
        except Exception as err:
            self.fail(f"enumerate_states raised {type(err).__name__}: {err}")
        keys = self.env.keys(states)
        known: set[Hashable] = set()
        for i, key in enumerate(keys):
            if key in known:
                self.fail(f"enumerate_states lists state {self.describe(states, i)} twice", key)
            known.add(key)
        s0 = self.env.keys(self.env.initial(1))[0]
        if s0 not in known:
            self.fail(f"enumerate_states omits the initial state {s0}", s0)
        self.known, self.enumeration = known, states
        return len(keys)

    def walk(self, n: int, bound: int) -> torch.Tensor:
        """Roll out `n` uniformly random trajectories, checking each new state; their lengths."""
        env = self.env
        state = env.initial(n)
        if env.size(state) != n:
            self.fail(f"initial({n}) returned {env.size(state)} states")
        first = env.keys(env.select(state, torch.tensor([0])))[0]
        if any(key != first for key in env.keys(state)):
            self.fail("initial(n) returned states that are not all equal")
        at_s0 = self.call("backward_mask", state)
        if at_s0.any():
            b = int(at_s0[0].nonzero()[0])
            self.fail(f"backward action {b} is legal at the initial state {first}", first, b)
        lengths = torch.zeros(n, dtype=torch.long)
        alive = torch.arange(n)
        for _ in range(bound):
            forward = self.check_states(state)
            action = self.sample(forward)
            stop = (action == env.stop).cpu()
            lengths[alive] += 1
            move = ~stop
            alive = alive[move]
            if not len(alive):
                return lengths
            move_dev = move.to(action.device)
            state = self.call("step", env.select(state, move_dev), action[move_dev])
        self.fail(
            f"a trajectory did not stop within {bound} steps (still running at state "
            f"{self.describe(state, 0)})",
            env.keys(env.select(state, torch.tensor([0])))[0],
        )

    def sample(self, forward: torch.Tensor) -> torch.Tensor:
        """One uniformly random legal action per state."""
        if self.generator is None or self.generator.device != forward.device:
            self.generator = torch.Generator(device=forward.device).manual_seed(self.seed)
        return torch.multinomial(forward.float(), 1, generator=self.generator).squeeze(1)

    def check_enumeration(self) -> None:
        """Check every enumerated state the walk did not reach, in chunks."""
        states = self.enumeration
        for lo in range(0, self.env.size(states), CHUNK):
            index = torch.arange(lo, min(lo + CHUNK, self.env.size(states)))
            self.check_states(self.env.select(states, index))

    def check_states(self, states: States) -> torch.Tensor:
        """Check a batch of states (those not seen before in full); their forward masks."""
        env = self.env
        n = env.size(states)
        forward = self.mask("forward_mask", states, env.n_actions)
        keys = env.keys(states)
        fresh = [i for i, key in enumerate(keys) if key not in self.seen]
        if not fresh:
            return forward
        self.seen.update(keys)
        index = torch.tensor(fresh) if len(fresh) < n else torch.arange(n)
        sub = env.select(states, index.to(forward.device))
        fwd, sub_keys = forward[index.to(forward.device)], [keys[i] for i in fresh]
        dead = ~fwd.any(dim=1)
        if dead.any():
            i = int(dead.nonzero()[0])
            self.fail(f"no forward action is legal at state {self.describe(sub, i)}", sub_keys[i])
        backward = self.mask("backward_mask", sub, env.n_backward)
        self.check_features(sub, sub_keys)
        if env.has_state_ids():
            self.check_state_ids(sub, sub_keys)
        if env.horizon is not None:
            self.check_stop_in_place(sub, sub_keys)
        self.check_terminal(sub, sub_keys, fwd[:, env.stop])
        if env.has_energy():
            self.check_values("energy", sub, sub_keys, ())
        self.check_children(sub, sub_keys, fwd)
        self.check_parents(sub, sub_keys, backward)
        return forward

    def check_state_ids(self, states: States, keys: list[Hashable]) -> None:
        """Declared integer ids: one long per state, equal exactly when the states are equal
        (checked against every state seen so far)."""
        ids = self.call("state_ids", states)
        shape = (len(keys),)
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.shape != shape:
            got = f"{getattr(ids, 'dtype', type(ids).__name__)} {tuple(getattr(ids, 'shape', ()))}"
            self.fail(f"state_ids must return a long tensor of shape {shape}, got {got}")
        for key, value in zip(keys, ids.tolist(), strict=True):
            other = self.ids.setdefault(value, key)
            if other != key:
                self.fail(f"state_ids gives {value} to two states, {other} and {key}", key)

    def check_stop_in_place(self, states: States, keys: list[Hashable]) -> None:
        """A declared horizon promises that `step` with the stop action leaves a state as it is."""
        stop = torch.full((len(keys),), self.env.stop, dtype=torch.long, device=self.env.device)
        after = self.env.keys(self.call("step", states, stop))
        for i, (key, kept) in enumerate(zip(keys, after, strict=True)):
            if key != kept:
                self.fail(
                    f"horizon is declared, but step with the stop action changes state "
                    f"{self.describe(states, i)}",
                    key,
                    self.env.stop,
                )

    def mask(self, method: str, states: States, width: int) -> torch.Tensor:
        """A mask from the env, checked for dtype and shape."""
        mask = self.call(method, states)
        shape = (self.env.size(states), width)
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            self.fail(f"{method} must return a bool tensor, got {getattr(mask, 'dtype', mask)}")
        if tuple(mask.shape) != shape:
            self.fail(f"{method} returned shape {tuple(mask.shape)}, expected {shape}")
        return mask

    def check_features(self, states: States, keys: list[Hashable]) -> None:
        """Features: a float tensor (n, feature_dim), or a torch-geometric `Batch` of n graphs
        whose node features `x` (and `edge_attr`, if any) are finite floats."""
        features = self.call("featurize", states)
        if isinstance(features, torch.Tensor):
            self.check_values("featurize", states, keys, (self.env.feature_dim,), features)
            return
        from torch_geometric.data import Batch

        if not isinstance(features, Batch):
            self.fail(
                "featurize must return a float tensor or a torch-geometric Batch, got "
                f"{type(features).__name__}"
            )
        n = self.env.size(states)
        if features.num_graphs != n:
            self.fail(f"featurize returned a Batch of {features.num_graphs} graphs for {n} states")
        if getattr(features, "x", None) is None:
            self.fail("featurize returned a Batch without node features x")
        for name in ("x", "edge_attr"):
            values = getattr(features, name, None)
            if values is None:
                continue
            if not isinstance(values, torch.Tensor) or not values.is_floating_point():
                got = getattr(values, "dtype", values)
                self.fail(f"featurize must give a float Batch.{name}, got {got}")
            finite = torch.isfinite(values)
            bad = ~(finite.flatten(1).all(dim=1) if values.dim() > 1 else finite)
            if bad.any():
                row = int(bad.nonzero()[0])
                node = row if name == "x" else int(features.edge_index[0, row])
                i = int(features.batch[node])
                self.fail(
                    f"featurize gives a non-finite {name} at state {self.describe(states, i)}: "
                    f"{values[row].tolist()}",
                    keys[i],
                )

    def check_values(
        self,
        method: str,
        states: States,
        keys: list[Hashable],
        tail: tuple[int, ...],
        values: Any = None,
    ) -> torch.Tensor:
        """A float tensor from the env (or `values`, its output if already called) with shape
        (n, *tail), finite everywhere."""
        values = self.call(method, states) if values is None else values
        shape = (self.env.size(states), *tail)
        if not isinstance(values, torch.Tensor) or not values.is_floating_point():
            self.fail(
                f"{method} must return a float tensor, got {getattr(values, 'dtype', values)}"
            )
        if tuple(values.shape) != shape:
            self.fail(f"{method} returned shape {tuple(values.shape)}, expected {shape}")
        bad = ~torch.isfinite(values).reshape(shape[0], -1).all(dim=1)
        if bad.any():
            i = int(bad.nonzero()[0])
            self.fail(
                f"{method} is not finite at state {self.describe(states, i)}: {values[i].tolist()}",
                keys[i],
            )
        return values

    def check_terminal(self, states: States, keys: list[Hashable], can_stop: torch.Tensor) -> None:
        """Where stop is legal: a finite log reward (R > 0), equal to -energy if there is one."""
        if not can_stop.any():
            return
        env = self.env
        where = can_stop.nonzero().squeeze(1)
        terminal = env.select(states, where)
        term_keys = [keys[i] for i in where.tolist()]
        log_r = self.call("log_reward", terminal)
        if not isinstance(log_r, torch.Tensor) or tuple(log_r.shape) != (len(where),):
            self.fail(
                f"log_reward returned shape {tuple(getattr(log_r, 'shape', ()))}, "
                f"expected ({len(where)},)"
            )
        bad = ~torch.isfinite(log_r)
        if bad.any():
            i = int(bad.nonzero()[0])
            self.fail(
                f"log_reward is {float(log_r[i])} at terminal state {self.describe(terminal, i)}"
                " (the reward must be finite and > 0)",
                term_keys[i],
            )
        if env.n_reward_components:
            components = self.call("reward_components", terminal)
            want = (len(where), env.n_reward_components)
            if not isinstance(components, torch.Tensor) or tuple(components.shape) != want:
                got = tuple(getattr(components, "shape", ()))
                self.fail(
                    f"reward_components returned shape {got}, expected {want} (n_reward_components)"
                )
        if env.has_energy():
            energy = self.call("energy", terminal).to(log_r.dtype)
            off = ~torch.isclose(energy, -log_r, rtol=1e-4, atol=1e-4)
            if off.any():
                i = int(off.nonzero()[0])
                self.fail(
                    f"energy {float(energy[i])} != -log_reward {float(-log_r[i])} at terminal "
                    f"state {self.describe(terminal, i)}",
                    term_keys[i],
                )

    def check_children(self, states: States, keys: list[Hashable], forward: torch.Tensor) -> None:
        """Every legal non-stop action leads to a new state that steps back here."""
        env = self.env
        moves = forward.clone()
        moves[:, env.stop] = False
        row, action = moves.nonzero(as_tuple=True)
        if not len(row):
            return
        self.edges += len(row)
        parents = env.select(states, row)
        parent_keys = [keys[i] for i in row.tolist()]
        children = self.call("step", parents, action)
        child_keys = self.sized_keys("step", children, len(row))

        def where(j: int) -> str:
            return f"forward action {int(action[j])} at state {self.describe(states, int(row[j]))}"

        for j, (key, child) in enumerate(zip(parent_keys, child_keys, strict=True)):
            if key == child:
                self.fail(f"{where(j)} leaves the state unchanged", key, int(action[j]))
            if self.known is not None and child not in self.known:
                self.fail(
                    f"{where(j)} leads to {self.describe(children, j)}, which enumerate_states "
                    "does not list",
                    key,
                    int(action[j]),
                )
        back = self.actions("backward_action", parents, action, env.n_backward, where)
        denied = forbidden(self.mask("backward_mask", children, env.n_backward), back)
        if denied.any():
            j = int(denied.nonzero()[0])
            self.fail(
                f"{where(j)} leads to {self.describe(children, j)}, whose backward mask forbids "
                f"the reverse action {int(back[j])}",
                keys[int(row[j])],
                int(action[j]),
            )
        undone = self.call("backward_step", children, back)
        undone_keys = self.sized_keys("backward_step", undone, len(row))
        for j, (key, got) in enumerate(zip(parent_keys, undone_keys, strict=True)):
            if got != key:
                self.fail(
                    f"{where(j)} leads to {self.describe(children, j)}, and backward action "
                    f"{int(back[j])} from there gives {self.describe(undone, j)} instead",
                    key,
                    int(action[j]),
                )
        again = self.actions("forward_action", children, back, env.n_actions - 1, where)
        wrong = again.to(action.device) != action
        if wrong.any():
            j = int(wrong.nonzero()[0])
            self.fail(
                f"{where(j)}: forward_action maps its reverse {int(back[j])} back to "
                f"{int(again[j])}, expected {int(action[j])}",
                keys[int(row[j])],
                int(action[j]),
            )

    def check_parents(self, states: States, keys: list[Hashable], backward: torch.Tensor) -> None:
        """Every legal backward action leads to a parent whose forward mask allows the way back."""
        env = self.env
        row, back = backward.nonzero(as_tuple=True)
        if not len(row):
            return
        self.edges += len(row)
        here = env.select(states, row)

        def where(j: int) -> str:
            return f"backward action {int(back[j])} at state {self.describe(states, int(row[j]))}"

        parents = self.call("backward_step", here, back)
        parent_keys = self.sized_keys("backward_step", parents, len(row))
        if self.known is not None:
            for j, key in enumerate(parent_keys):
                if key not in self.known:
                    self.fail(
                        f"{where(j)} leads to {self.describe(parents, j)}, which "
                        "enumerate_states does not list",
                        keys[int(row[j])],
                        int(back[j]),
                    )
        action = self.actions("forward_action", here, back, env.n_actions - 1, where)
        denied = forbidden(self.mask("forward_mask", parents, env.n_actions), action)
        if denied.any():
            j = int(denied.nonzero()[0])
            self.fail(
                f"{where(j)} leads to parent {self.describe(parents, j)}, whose forward mask "
                f"forbids the way back (forward action {int(action[j])})",
                keys[int(row[j])],
                int(back[j]),
            )
        redone = self.call("step", parents, action)
        redone_keys = self.sized_keys("step", redone, len(row))
        for j, (key, got) in enumerate(
            zip([keys[i] for i in row.tolist()], redone_keys, strict=True)
        ):
            if got != key:
                self.fail(
                    f"{where(j)} leads to parent {self.describe(parents, j)}, and forward action "
                    f"{int(action[j])} from there gives {self.describe(redone, j)} instead",
                    key,
                    int(back[j]),
                )
        again = self.actions("backward_action", parents, action, env.n_backward, where)
        if isinstance(here, torch.Tensor):
            wrong = again.to(back.device) != back
        else:
            wrong = self.undo_elsewhere(redone, again, parent_keys)
        if wrong.any():
            j = int(wrong.nonzero()[0])
            self.fail(
                f"{where(j)}: backward_action maps its forward action {int(action[j])} back to "
                f"{int(again[j])}, expected {int(back[j])}"
                + ("" if isinstance(here, torch.Tensor) else " or one leading to the same parent"),
                keys[int(row[j])],
                int(back[j]),
            )

    def undo_elsewhere(
        self, states: States, actions: torch.Tensor, parent_keys: Sequence[Hashable]
    ) -> torch.Tensor:
        """(n,) bool: where backward action `actions` from `states` is illegal or leads to a
        state whose key differs from `parent_keys` (for states known only up to their keys,
        e.g. graphs up to isomorphism, where the exact reverse action is not unique)."""
        denied = forbidden(self.mask("backward_mask", states, self.env.n_backward), actions)
        undone = self.call("backward_step", states, actions)
        undone_keys = self.sized_keys("backward_step", undone, len(actions))
        moved = [got != key for got, key in zip(undone_keys, parent_keys, strict=True)]
        return denied.cpu() | torch.tensor(moved, dtype=torch.bool)

    def sized_keys(self, method: str, states: States, n: int) -> Sequence[Hashable]:
        """Keys of the states a method returned, checking that it returned one per input."""
        if self.env.size(states) != n:
            self.fail(f"{method} returned {self.env.size(states)} states for {n} inputs")
        return self.env.keys(states)

    def actions(
        self,
        method: str,
        states: States,
        given: torch.Tensor,
        limit: int,
        where: Callable[[int], str],
    ) -> torch.Tensor:
        """Mapped actions from backward_action / forward_action, checked to lie in [0, limit)."""
        out = self.call(method, states, given)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(given),):
            self.fail(f"{method} must return one integer action per state")
        bad = (out < 0) | (out >= limit)
        if bad.any():
            j = int(bad.nonzero()[0])
            self.fail(f"{where(j)}: {method} gives {int(out[j])}, outside [0, {limit})")
        return out.long()

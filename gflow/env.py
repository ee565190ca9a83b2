"""The contract a GFlowNet environment meets: batched states, masks, steps and rewards, and the
declarations the core reads instead of probing (`conditional`, `conditioning`, `cond_dim`,
`n_reward_components`, `policy_kind`, `fine_actions`, `exact_target`); `gflow.checker.check_env`
verifies them."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch

States = Any
"""A batch of states: a tensor whose first dimension is the batch, unless an environment
overrides `cat`, `select`, `size` and `keys` for a richer type (graphs)."""


class Env:
    """A discrete environment whose every method works on a batch of states.

    Forward actions are integers in ``[0, n_actions)``; the last one, ``stop``, ends the
    trajectory at the current state, which becomes the terminal object. Backward actions are
    integers in ``[0, n_backward)`` and undo one forward action. Subclasses implement the
    methods that raise ``NotImplementedError``; the others have defaults for tensor states.
    """

    n_actions: int
    n_backward: int
    feature_dim: int
    device: torch.device = torch.device("cpu")
    horizon: int | None = None
    """The most transitions (stop included) any trajectory takes, declared by environments whose
    `step` also accepts the stop action and leaves those states unchanged: they can be sampled
    for a fixed number of steps with no host synchronisation
    (`gflow.sampling.sample_forward_fixed`). None: no such bound is declared."""
    conditional: bool = False
    """Whether the reward is conditional: `log_reward(states, cond)` then needs one conditioning
    row per state, and training draws rows from `conditioning`."""
    conditioning: Any = None
    """Where conditioning rows come from when `conditional`: an object with `cond_dim` and
    `sample(n) -> (n, cond_dim)` rows (`gflow.conditioning.Conditioning` and the outcome
    conditioning are two); None otherwise."""
    n_reward_components: int = 0
    """How many reward components `reward_components(states)` returns (0: not declared; the
    single component is then log R(x))."""
    policy_kind: str = "mlp"
    """The registered policy builder that fits these states (`gflow.policies.registry`):
    ``mlp`` over `featurize` vectors, ``graph-transformer`` for graph environments."""
    fine_actions: int = 0
    """Graph environments: when > 0, each per-node forward sub-action s reads as
    (k, m) = divmod(s, fine_actions), so that a factored head (`gflow.factored`) can choose k,
    then m; 0: no such split."""

    @property
    def stop(self) -> int:
        """Index of the stop action (always the last forward action)."""
        return self.n_actions - 1

    def initial(self, n: int) -> States:
        """A batch of `n` copies of the initial state s0."""
        raise NotImplementedError

    def forward_mask(self, states: States) -> torch.Tensor:
        """Bool tensor (n, n_actions): which forward actions are legal, stop included."""
        raise NotImplementedError

    def backward_mask(self, states: States) -> torch.Tensor:
        """Bool tensor (n, n_backward): which backward actions are legal (none at s0)."""
        raise NotImplementedError

    def step(self, states: States, actions: torch.Tensor) -> States:
        """Apply legal non-stop forward actions, one per state."""
        raise NotImplementedError

    def backward_step(self, states: States, actions: torch.Tensor) -> States:
        """Apply legal backward actions, one per state, giving the parents."""
        raise NotImplementedError

    def log_reward(self, states: States) -> torch.Tensor:
        """Float tensor (n,): log R(x) of terminal states. A `conditional` environment takes one
        conditioning row c per state too, `log_reward(states, cond)` with cond (n, cond_dim),
        and returns log R(x | c) (`gflow.sampling.terminal_log_reward` passes them)."""
        raise NotImplementedError

    def featurize(self, states: States) -> torch.Tensor:
        """Policy input for a batch of states: (n, feature_dim) float tensor."""
        raise NotImplementedError

    def energy(self, states: States) -> torch.Tensor:
        """Intermediate energy E(s) of any state, with E(x) = -log R(x) on terminal states."""
        raise NotImplementedError(f"{type(self).__name__} defines no intermediate energy")

    def state_ids(self, states: States) -> torch.Tensor:
        """(n,) long: one integer per state, equal exactly when the states are equal (a compact
        integer encoding); declared by overriding, so that the sampler can evaluate the policy
        once per distinct state of a large batch (`sample_forward(dedupe=True)`) and, for an
        enumerable environment, walk a table of ids (`gflow.tabular.state_table`)."""
        raise NotImplementedError(f"{type(self).__name__} declares no integer state ids")

    def reward_components(self, states: States) -> torch.Tensor:
        """Reward components (n, k) of terminal states, larger is better: the parts of a vector
        reward (multi-objective tasks scalarize them; order-preserving training compares them
        in Pareto order); by default the single component log R(x)."""
        return self.log_reward(states)[:, None]

    def enumerate_states(self) -> States:
        """Every state reachable from s0 (only for environments small enough to list)."""
        raise NotImplementedError(f"{type(self).__name__} is not enumerable")

    @property
    def cond_dim(self) -> int:
        """Width of the conditioning rows the reward reads (0 when unconditional)."""
        return int(self.conditioning.cond_dim) if self.conditional else 0

    def exact_target(self) -> Env:
        """The environment whose R/Z exact evaluation measures the sampler against: this one,
        unless a wrapper changes the training reward only to change how objects are counted
        (a symmetry correction says the uncorrected environment)."""
        return self

    def backward_action(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        """The backward action that undoes forward `actions` taken from `states`."""
        return actions

    def forward_action(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        """The forward action that backward `actions` from `states` undo."""
        return actions

    def is_initial(self, states: States) -> torch.Tensor:
        """Bool tensor (n,): which states are s0."""
        return ~self.backward_mask(states).any(dim=1)

    def size(self, states: States) -> int:
        """Number of states in a batch."""
        return len(states)

    def cat(self, batches: Sequence[States]) -> States:
        """Concatenate batches of states."""
        return torch.cat(list(batches))

    def select(self, states: States, index: torch.Tensor) -> States:
        """The states at `index` (bool mask or integer indices)."""
        return states[index]

    def where(self, cond: torch.Tensor, a: States, b: States) -> States:
        """Per state: `a` where `cond` holds, else `b`."""
        return torch.where(cond.view(-1, *([1] * (a.dim() - 1))), a, b)

    def keys(self, states: States) -> Sequence[Hashable]:
        """One hashable key per state, equal exactly when the states are equal."""
        return [tuple(row) for row in states.reshape(len(states), -1).tolist()]

    def object_names(self, states: States) -> list[str]:
        """One canonical text name per object, equal exactly when the objects are equal (the
        sample store's `object` column): the `keys` as text by default; molecule environments
        give canonical SMILES."""
        return [k if isinstance(k, str) else repr(k) for k in self.keys(states)]

    def states_to_data(self, states: States) -> Any:
        """A batch of states as plain data (tensors, numbers, strings and containers of them),
        which a checkpoint can hold; `states_from_data` undoes it."""
        return states

    def states_from_data(self, data: Any) -> States:
        """The batch of states that `states_to_data` encoded."""
        return data

    def describe(self, states: States) -> list[str]:
        """A short readable description of each state for messages (its values, by default)."""
        return [str(row) for row in states.tolist()]

    def is_enumerable(self) -> bool:
        """Whether `enumerate_states` is implemented."""
        return type(self).enumerate_states is not Env.enumerate_states

    def has_energy(self) -> bool:
        """Whether `energy` is implemented."""
        return type(self).energy is not Env.energy

    def has_state_ids(self) -> bool:
        """Whether `state_ids` is implemented."""
        return type(self).state_ids is not Env.state_ids


class EnvWrapper(Env):
    """Another environment with some of its methods replaced (a reward transform, say):
    everything a subclass does not override is the wrapped environment's, `env`."""

    def __init__(self, env: Env):
        self.env = env
        self.n_actions, self.n_backward = env.n_actions, env.n_backward
        self.feature_dim, self.device = env.feature_dim, env.device
        self.horizon = env.horizon

    def __getattr__(self, name: str) -> Any:
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    @property
    def conditional(self) -> bool:  # type: ignore[override]
        """The wrapped environment's."""
        return self.env.conditional

    @property
    def conditioning(self) -> Any:
        """The wrapped environment's."""
        return self.env.conditioning

    @property
    def n_reward_components(self) -> int:  # type: ignore[override]
        """The wrapped environment's."""
        return self.env.n_reward_components

    @property
    def policy_kind(self) -> str:  # type: ignore[override]
        """The wrapped environment's."""
        return self.env.policy_kind

    @property
    def fine_actions(self) -> int:  # type: ignore[override]
        """The wrapped environment's."""
        return self.env.fine_actions

    def initial(self, n: int) -> States:
        return self.env.initial(n)

    def forward_mask(self, states: States) -> torch.Tensor:
        return self.env.forward_mask(states)

    def backward_mask(self, states: States) -> torch.Tensor:
        return self.env.backward_mask(states)

    def step(self, states: States, actions: torch.Tensor) -> States:
        return self.env.step(states, actions)

    def backward_step(self, states: States, actions: torch.Tensor) -> States:
        return self.env.backward_step(states, actions)

    def log_reward(self, states: States, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is None:
            return self.env.log_reward(states)
        return self.env.log_reward(states, cond)  # type: ignore[call-arg]  # a conditional env

    def featurize(self, states: States) -> Any:
        return self.env.featurize(states)

    def energy(self, states: States) -> torch.Tensor:
        return self.env.energy(states)

    def state_ids(self, states: States) -> torch.Tensor:
        return self.env.state_ids(states)

    def reward_components(self, states: States) -> torch.Tensor:
        return self.env.reward_components(states)

    def enumerate_states(self) -> States:
        return self.env.enumerate_states()

    def backward_action(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        return self.env.backward_action(states, actions)

    def forward_action(self, states: States, actions: torch.Tensor) -> torch.Tensor:
        return self.env.forward_action(states, actions)

    def is_initial(self, states: States) -> torch.Tensor:
        return self.env.is_initial(states)

    def size(self, states: States) -> int:
        return self.env.size(states)

    def cat(self, batches: Sequence[States]) -> States:
        return self.env.cat(batches)

    def select(self, states: States, index: torch.Tensor) -> States:
        return self.env.select(states, index)

    def where(self, cond: torch.Tensor, a: States, b: States) -> States:
        return self.env.where(cond, a, b)

    def keys(self, states: States) -> Sequence[Hashable]:
        return self.env.keys(states)

    def object_names(self, states: States) -> list[str]:
        return self.env.object_names(states)

    def states_to_data(self, states: States) -> Any:
        return self.env.states_to_data(states)

    def states_from_data(self, data: Any) -> States:
        return self.env.states_from_data(data)

    def describe(self, states: States) -> list[str]:
        return self.env.describe(states)

    def is_enumerable(self) -> bool:
        return self.env.is_enumerable()

    def has_energy(self) -> bool:
        return self.env.has_energy()

    def has_state_ids(self) -> bool:
        return self.env.has_state_ids()

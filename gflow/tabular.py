"""State tables: an enumerable environment with integer state ids walked by table lookups.

An environment that declares `Env.state_ids` and `Env.enumerate_states` has every state's
features, forward mask and children computed once (`state_table`); the sampler then walks
integer ids (`TableWalk`), one lookup per step for each of featurize, mask and step instead of
the environment's own operations, and turns ids back into states when it assembles the rollout.
The features, masks and children are the environment's own, so the draws are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gflow.env import Env, States

TABLE_IDS = 1 << 20
"""Largest state id (plus one) a table is built for."""
TABLE_BYTES = 1 << 28
"""Largest size of the tables, in bytes."""


@dataclass
class StateTable:
    """Every state of an environment, indexed by its id: its features, forward mask and the id
    of the state each forward action leads to (its own id for stop and for illegal actions)."""

    states: States
    """(n_ids, ...) the state of each id (ids no state has hold the initial state)."""
    features: torch.Tensor
    """(n_ids, feature_dim) `env.featurize` of each state."""
    forward_mask: torch.Tensor
    """(n_ids, n_actions) `env.forward_mask` of each state."""
    children: torch.Tensor
    """(n_ids, n_actions) long: the id that each legal non-stop action leads to; the state's own
    id for stop and for illegal actions."""
    initial: int
    """The id of s0."""


def state_table(env: Env) -> StateTable | None:
    """The table of an enumerable environment with integer state ids and tensor features whose
    ids lie in [0, TABLE_IDS) and whose tables fit in TABLE_BYTES; None for any other."""
    if not (env.has_state_ids() and env.is_enumerable()):
        return None
    states = env.enumerate_states()
    ids = env.state_ids(states)
    features = env.featurize(states)
    if not isinstance(features, torch.Tensor) or not len(ids):
        return None
    n_ids = int(ids.max()) + 1
    size = n_ids * (features.shape[1] * features.element_size() + 9 * env.n_actions)
    if int(ids.min()) < 0 or n_ids > TABLE_IDS or size > TABLE_BYTES:
        return None
    if len(torch.unique(ids)) != len(ids):
        raise ValueError(f"{type(env).__name__}.state_ids gives one id to two listed states")
    initial = int(env.state_ids(env.initial(1))[0])
    # every id maps to its row in `states`; ids no state has map to s0's row, never reached
    row = torch.full((n_ids,), -1, dtype=torch.long, device=ids.device)
    row[ids] = torch.arange(len(ids), device=ids.device)
    if int(row[initial]) < 0:
        raise ValueError(f"{type(env).__name__}.enumerate_states does not list s0")
    known = row >= 0
    row[~known] = row[initial]
    by_id = env.select(states, row)
    mask = env.forward_mask(by_id)
    moves = mask.clone()
    moves[:, env.stop] = False
    parent, action = moves.nonzero(as_tuple=True)
    child = env.state_ids(env.step(env.select(by_id, parent), action))
    if len(child) and (int(child.min()) < 0 or int(child.max()) >= n_ids or not known[child].all()):
        raise ValueError(
            f"{type(env).__name__}: a step leads to a state missing from enumerate_states"
        )
    own = torch.arange(n_ids, device=ids.device)
    children = own[:, None].repeat(1, env.n_actions)
    children[parent, action] = child
    return StateTable(by_id, features[row], mask, children, initial)


class TableWalk(Env):
    """The environment whose states are the ids of a table: initial, masks, features and steps
    are lookups; `states_of` gives the environment's states back. Only what forward sampling
    uses is defined."""

    def __init__(self, env: Env, table: StateTable):
        self.env, self.table = env, table
        self.n_actions, self.n_backward = env.n_actions, env.n_backward
        self.feature_dim, self.device = env.feature_dim, env.device
        self.horizon = env.horizon

    def initial(self, n: int) -> torch.Tensor:
        return torch.full((n,), self.table.initial, dtype=torch.long, device=self.device)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return self.table.forward_mask.index_select(0, states)

    def featurize(self, states: torch.Tensor) -> torch.Tensor:
        return self.table.features.index_select(0, states)

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.table.children[states, actions]

    def state_ids(self, states: torch.Tensor) -> torch.Tensor:
        return states

    def select(self, states: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return states[index] if index.dtype == torch.bool else states.index_select(0, index)

    def states_of(self, ids: torch.Tensor) -> States:
        """The environment's states of these ids."""
        return self.env.select(self.table.states, ids)

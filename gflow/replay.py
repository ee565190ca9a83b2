"""Replay of terminal objects: a buffer of the best distinct ones, and mixing replayed rollouts
with on-policy ones into one batch."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch

from gflow.env import Env, States
from gflow.sampling import Rollout


class ReplayBuffer:
    """The highest-reward distinct terminal objects seen so far (with their log rewards and
    conditioning), at most `capacity` of them. Objects are distinct by `env.keys` (and by
    conditioning, when there is some)."""

    def __init__(self, env: Env, capacity: int):
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.env, self.capacity = env, capacity
        self.states: States | None = None
        self.log_reward = torch.empty(0, device=env.device)
        self.cond: torch.Tensor | None = None
        self._keys: list[Hashable] = []
        self._known: set[Hashable] = set()

    def __len__(self) -> int:
        return len(self._keys)

    def _key(self, states: States, cond: torch.Tensor | None) -> list[Hashable]:
        keys = self.env.keys(states)
        if cond is None:
            return list(keys)
        return list(zip(keys, map(tuple, cond.tolist()), strict=True))

    def add(
        self, states: States, log_reward: torch.Tensor, cond: torch.Tensor | None = None
    ) -> None:
        """Offer terminal objects; new distinct ones enter, then the lowest rewards leave."""
        if len(self) and (cond is None) != (self.cond is None):
            raise ValueError("replay buffer: mixing conditioned and unconditioned objects")
        fresh, keys = [], []
        for i, key in enumerate(self._key(states, cond)):
            if key not in self._known:
                self._known.add(key)
                fresh.append(i)
                keys.append(key)
        if not fresh:
            return
        index = torch.tensor(fresh, device=log_reward.device)
        new_states = self.env.select(states, index)
        new_cond = None if cond is None else cond[index]
        if self.states is None:
            self.states, self.cond = new_states, new_cond
        else:
            self.states = self.env.cat([self.states, new_states])
            self.cond = (
                None if self.cond is None or new_cond is None else torch.cat([self.cond, new_cond])
            )
        self.log_reward = torch.cat([self.log_reward, log_reward[index]])
        self._keys += keys
        if len(self) > self.capacity:
            self._keep_best()

    def _keep_best(self) -> None:
        """Drop the lowest rewards beyond capacity (older ones win ties); keep the order."""
        order = torch.sort(self.log_reward, descending=True, stable=True).indices
        keep = order[: self.capacity].sort().values
        self.states = self.env.select(self.states, keep)
        self.log_reward = self.log_reward[keep]
        self.cond = None if self.cond is None else self.cond[keep]
        self._keys = [self._keys[i] for i in keep.tolist()]
        self._known = set(self._keys)

    def sample(self, n: int) -> tuple[States, torch.Tensor, torch.Tensor | None]:
        """`n` objects drawn uniformly with replacement: states, log rewards, conditioning."""
        if not len(self):
            raise ValueError("cannot sample from an empty replay buffer")
        index = torch.randint(len(self), (n,), device=self.log_reward.device)
        cond = None if self.cond is None else self.cond[index]
        return self.env.select(self.states, index), self.log_reward[index], cond

    def state_dict(self) -> dict[str, Any]:
        """The buffer's contents as plain data, for a checkpoint."""
        states = None if self.states is None else self.env.states_to_data(self.states)
        return {"states": states, "log_reward": self.log_reward, "cond": self.cond}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore contents saved by `state_dict`."""
        data = state["states"]
        self.states = None if data is None else self.env.states_from_data(data)
        self.cond = state["cond"]
        self.log_reward = state["log_reward"]
        self._keys = [] if self.states is None else self._key(self.states, self.cond)
        self._known = set(self._keys)


def cat_rollouts(env: Env, rollouts: Sequence[Rollout]) -> Rollout:
    """One rollout holding the trajectories of several, in order (states kept step-major)."""
    width = max(r.state_mask.shape[1] for r in rollouts)
    total = sum(len(r.lengths) for r in rollouts)
    if len({r.cond is None for r in rollouts}) > 1:
        raise ValueError("cannot mix conditioned and unconditioned rollouts")

    def pad(x: torch.Tensor, columns: int, value: int | bool) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, columns - x.shape[1]), value=value)

    positions, offset = [], 0
    for r in rollouts:
        t, b = r.state_mask.T.nonzero(as_tuple=True)
        positions.append(t * total + b + offset)
        offset += len(r.lengths)
    order = torch.argsort(torch.cat(positions))
    return Rollout(
        states=env.select(env.cat([r.states for r in rollouts]), order),
        state_mask=torch.cat([pad(r.state_mask, width, False) for r in rollouts]),
        actions=torch.cat([pad(r.actions, width - 1, -1) for r in rollouts]),
        backward_actions=torch.cat([pad(r.backward_actions, width - 1, -1) for r in rollouts]),
        lengths=torch.cat([r.lengths for r in rollouts]),
        done=torch.cat([r.done for r in rollouts]),
        terminal=env.cat([r.terminal for r in rollouts]),
        log_reward=torch.cat([r.log_reward for r in rollouts]),
        cond=None
        if rollouts[0].cond is None
        else torch.cat([r.cond for r in rollouts if r.cond is not None]),
    )

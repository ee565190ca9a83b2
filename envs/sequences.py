"""Autoregressive token sequences: append tokens left to right, stop once the sequence is long
enough. The base of the sequence tasks (N-grams, DNA aptamers); `MultiObjectiveSequence` adds an
alphabet of characters and the multi-objective reward contract of `gflow.conditioning`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gflow.conditioning import log_scalarize
from gflow.env import Env

ENUMERATION_LIMIT = 1_000_000
"""Largest number of states `enumerate_states` will list."""


class TokenSequence(Env):
    """States are (n, max_length) tensors of token ids in ``[0, n_tokens)`` filled left to right;
    -1 marks an empty slot.

    Forward action a < n_tokens appends token a (legal while the sequence is shorter than
    `max_length`); stop is legal once it holds at least `min_length` tokens. The one backward
    action removes the last token, so the state graph is a tree and P_B is trivial. Subclasses
    define the reward of the sequences where stop is legal.
    """

    def __init__(self, n_tokens: int, min_length: int, max_length: int, device: str = "cpu"):
        if n_tokens < 1:
            raise ValueError(f"a token sequence needs n_tokens >= 1, got {n_tokens}")
        if not 1 <= min_length <= max_length:
            raise ValueError(
                f"sequence lengths need 1 <= min_length <= max_length, got {min_length=} "
                f"{max_length=}"
            )
        self.n_tokens, self.min_length, self.max_length = n_tokens, min_length, max_length
        self.n_actions = n_tokens + 1
        self.n_backward = 1
        self.feature_dim = max_length * (n_tokens + 1)
        self.device = torch.device(device)

    def initial(self, n: int) -> torch.Tensor:
        return torch.full((n, self.max_length), -1, dtype=torch.long, device=self.device)

    def lengths(self, states: torch.Tensor) -> torch.Tensor:
        """(n,) number of tokens already placed."""
        return (states >= 0).sum(dim=1)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        length = self.lengths(states)[:, None]
        grow = (length < self.max_length).expand(-1, self.n_tokens)
        return torch.cat([grow, length >= self.min_length], dim=1)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return (self.lengths(states) > 0)[:, None]

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(states), device=states.device)
        out = states.clone()
        out[rows, self.lengths(states)] = actions
        return out

    def backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(states), device=states.device)
        out = states.clone()
        out[rows, self.lengths(states) - 1] = -1
        return out

    def backward_action(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(actions)

    def forward_action(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(states), device=states.device)
        return states[rows, self.lengths(states) - 1]

    def keys(self, states: torch.Tensor) -> list[bytes]:
        return [row.tobytes() for row in states.to(torch.int32).cpu().numpy()]

    def featurize(self, states: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(states + 1, self.n_tokens + 1).flatten(1).float()

    def check_complete(self, states: torch.Tensor) -> None:
        """Raise a clear error unless every state is a complete sequence (stop is legal)."""
        short = self.lengths(states) < self.min_length
        if short.any():
            row = int(short.nonzero()[0])
            raise ValueError(
                f"rewards need sequences of at least {self.min_length} tokens; row {row} has "
                f"{int(self.lengths(states[row : row + 1])[0])}"
            )

    def n_states(self) -> int:
        """Number of states: every sequence of every length up to `max_length`."""
        return sum(self.n_tokens**t for t in range(self.max_length + 1))

    def is_enumerable(self) -> bool:
        return self.n_states() <= ENUMERATION_LIMIT

    def enumerate_states(self) -> torch.Tensor:
        if not self.is_enumerable():
            raise ValueError(
                f"{type(self).__name__} has {self.n_states()} states, over {ENUMERATION_LIMIT}"
            )
        rows = [self.initial(1)]
        for t in range(1, self.max_length + 1):
            codes = torch.arange(self.n_tokens**t, device=self.device)
            powers = self.n_tokens ** torch.arange(t - 1, -1, -1, device=self.device)
            tokens = codes[:, None] // powers % self.n_tokens
            rows.append(torch.cat([tokens, self.initial(len(codes))[:, t:]], dim=1))
        return torch.cat(rows)


class MultiObjectiveSequence(TokenSequence):
    """Sequences of characters from `alphabet` (token i is ``alphabet[i]``) scored by a vector of
    `n_reward_components` objectives in [0, 1], larger is better: subclasses implement `objectives`.

    The scalar reward of the unconditioned environment is the equal-weight sum of the objectives,
    floored at `floor`; conditioned training wraps the environment in
    `gflow.conditioning.ConditionalEnv`.
    """

    def __init__(
        self,
        alphabet: str,
        min_length: int,
        max_length: int,
        n_reward_components: int,
        floor: float = 1e-6,
        device: str = "cpu",
    ):
        if not alphabet or len(set(alphabet)) != len(alphabet) or not alphabet.isascii():
            raise ValueError(f"the alphabet must be distinct ASCII characters, got {alphabet!r}")
        super().__init__(len(alphabet), min_length, max_length, device)
        self.alphabet, self.n_reward_components, self.floor = alphabet, n_reward_components, floor
        self._chars = np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8)
        self._codes = np.full(256, -1, dtype=np.int64)
        self._codes[self._chars] = np.arange(len(alphabet))
        self._alphabet_set = set(alphabet)

    def from_strings(self, strings: Sequence[str]) -> torch.Tensor:
        """States (n, max_length) holding the given strings over the alphabet."""
        out = np.full((len(strings), self.max_length), -1, dtype=np.int64)
        for i, text in enumerate(strings):
            if len(text) > self.max_length:
                raise ValueError(f"{text!r} is longer than max_length {self.max_length}")
            bad = set(text) - self._alphabet_set
            if bad:
                raise ValueError(
                    f"{text!r} has {min(bad)!r}, not in the alphabet {self.alphabet!r}"
                )
            out[i, : len(text)] = self._codes[np.frombuffer(text.encode("ascii"), np.uint8)]
        return torch.from_numpy(out).to(self.device)

    def to_strings(self, states: torch.Tensor) -> list[str]:
        """The strings that states hold."""
        chars = self._chars[states.clamp(min=0).cpu().numpy()]
        lengths = self.lengths(states).tolist()
        return [row[:t].tobytes().decode("ascii") for row, t in zip(chars, lengths, strict=True)]

    def reward_components(self, states: torch.Tensor) -> torch.Tensor:
        """(n, n_reward_components) objective values in [0, 1] of complete sequences (1 is best)."""
        raise NotImplementedError

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        r = self.reward_components(states)
        equal = torch.full_like(r, 1 / self.n_reward_components)
        return log_scalarize(r, equal, "weighted_sum", floor=self.floor)

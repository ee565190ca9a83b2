"""N-grams (MOGFN, Jain et al. 2023, after Stanton et al. 2022): sequences over an alphabet scored
by how often each of k given n-grams occurs in them, one objective per n-gram.

MOGFN's setting: the 20 amino acids, lengths 32 to 36, bigrams such as AV, VC, CA (2 or 3
objectives; its "unigram" variant uses A, V, C at lengths 16 to 18). Occurrences overlap (AVAV
holds AV twice). MOGFN divides each count by a fixed constant (8 for the bigram tasks, 16 for
the unigram ones), which lets values exceed 1; here objective i is ``count_i / max_count_i``
in [0, 1], where max_count_i is by default the largest count any sequence of `max_length` can
hold (``(max_length - n) // p + 1`` for an n-gram of smallest period p), so 1 means a sequence
that repeats that n-gram as densely as possible. Giving `max_count` uses that constant for every
n-gram instead, with counts above it clipped to 1 (``max_count=8`` is MOGFN's bigram scaling).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from gflow.envs.sequences import MultiObjectiveSequence

AMINO_ACIDS = "ARNDCEQGHILKMFPSTWYV"
"""The 20 standard amino acids, MOGFN's N-grams alphabet."""


def smallest_period(ngram: str) -> int:
    """The smallest p >= 1 with ngram[i] == ngram[i + p] for every i (len(ngram) if none)."""
    return next(p for p in range(1, len(ngram) + 1) if ngram[p:] == ngram[: len(ngram) - p])


def max_occurrences(ngram: str, length: int) -> int:
    """The most (overlapping) occurrences of `ngram` a sequence of `length` tokens can hold."""
    if len(ngram) > length:
        return 0
    return (length - len(ngram)) // smallest_period(ngram) + 1


class NGrams(MultiObjectiveSequence):
    """Sequences of `min_length` to `max_length` characters from `alphabet`; objective i is the
    count of (overlapping) occurrences of ``ngrams[i]`` over its normalizer (see the module)."""

    def __init__(
        self,
        ngrams: Sequence[str] = ("AV", "VC"),
        alphabet: str = AMINO_ACIDS,
        min_length: int = 32,
        max_length: int = 36,
        max_count: int | None = None,
        floor: float = 1e-6,
        device: str = "cpu",
    ):
        ngrams = list(ngrams)
        if not ngrams or len(set(ngrams)) != len(ngrams) or not all(ngrams):
            raise ValueError(f"ngrams needs distinct non-empty n-grams, got {ngrams}")
        super().__init__(alphabet, min_length, max_length, len(ngrams), floor, device)
        for gram in ngrams:
            if set(gram) - set(alphabet) or len(gram) > max_length:
                raise ValueError(
                    f"n-gram {gram!r} must use the alphabet {alphabet!r} and fit in "
                    f"max_length {max_length}"
                )
        if max_count is not None and max_count < 1:
            raise ValueError(f"ngrams max_count must be >= 1, got {max_count}")
        self.ngrams, self.max_count = ngrams, max_count
        counts = [
            max_occurrences(g, max_length) if max_count is None else max_count for g in ngrams
        ]
        self.scale = torch.tensor(counts, dtype=torch.get_default_dtype(), device=self.device)
        """(k,) the count that maps to objective 1, per n-gram."""
        self._groups = []
        for size in sorted({len(g) for g in ngrams}):
            columns = [i for i, g in enumerate(ngrams) if len(g) == size]
            codes = self._window_codes(self.from_strings([ngrams[i] for i in columns])[:, :size])
            self._groups.append((size, torch.tensor(columns, device=self.device), codes))

    def _window_codes(self, windows: torch.Tensor) -> torch.Tensor:
        """(...) integer code of each window (..., size) of tokens; -1 for a window that reaches
        past the end of its sequence."""
        size = windows.shape[-1]
        powers = self.n_tokens ** torch.arange(size - 1, -1, -1, device=windows.device)
        codes = (windows.clamp(min=0) * powers).sum(-1)
        return codes.masked_fill((windows < 0).any(-1), -1)

    def counts(self, states: torch.Tensor) -> torch.Tensor:
        """(n, k) number of (overlapping) occurrences of each n-gram in each (partial) state."""
        shape = (len(states), self.n_reward_components)
        out = torch.zeros(shape, dtype=torch.long, device=states.device)
        for size, columns, targets in self._groups:
            codes = self._window_codes(states.unfold(1, size, 1))
            out[:, columns] = (codes[:, :, None] == targets).sum(1)
        return out

    def reward_components(self, states: torch.Tensor) -> torch.Tensor:
        self.check_complete(states)
        return (self.counts(states) / self.scale).clamp(max=1)

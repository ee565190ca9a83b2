"""Bit sequences (Malkin et al. 2022): append k-bit words until n bits, reward near a mode set."""

from __future__ import annotations

import torch
from gflow.envs.sequences import TokenSequence

BLOCKS = ("00000000", "11111111", "11110000", "00001111", "00111100")
"""The 8-bit blocks that modes are made of."""


class BitSequence(TokenSequence):
    """States are sequences of n/k words of k bits, filled left to right; -1 marks an empty slot.

    A token sequence (`gflow.envs.sequences.TokenSequence`) of exactly n/k tokens from 2^k words:
    action w < 2^k appends word w, stop is legal only on a full sequence, and the one backward
    action removes the last word.

    Reward: ``log R(x) = beta * (1 - min_m d(x, m) / n)`` with d the Hamming distance to the
    modes. Energy of a prefix s with t bits: ``beta * (min_m d(s, m[:t]) / n - 1)``, the lowest
    energy among the full sequences that extend s (complete s with the suffix of its nearest
    mode); it equals -log R on full sequences and never decreases along a trajectory.
    """

    def __init__(
        self,
        length: int = 120,
        word_size: int = 8,
        n_modes: int = 60,
        beta: float = 1.0,
        mode_threshold: int | None = None,
        seed: int = 0,
        device: str = "cpu",
    ):
        if length < 8 or length % 8:
            raise ValueError(f"bitseq length must be a positive multiple of 8, got {length}")
        if not 1 <= word_size <= 16 or length % word_size:
            raise ValueError(
                f"bitseq word_size must be in 1..16 and divide length {length}, got {word_size}"
            )
        if n_modes < 1:
            raise ValueError(f"bitseq needs n_modes >= 1, got {n_modes}")
        if not beta > 0:
            raise ValueError(f"bitseq reward exponent beta must be > 0, got {beta}")
        self.length, self.word_size, self.beta = length, word_size, float(beta)
        self.n_words, self.vocab = length // word_size, 2**word_size
        super().__init__(self.vocab, self.n_words, self.n_words, device)
        self.mode_threshold = length // 4 if mode_threshold is None else mode_threshold
        if self.mode_threshold < 0:
            raise ValueError(f"bitseq mode_threshold must be >= 0, got {self.mode_threshold}")
        self._shifts = torch.arange(word_size - 1, -1, -1, device=self.device)
        self.modes = self._make_modes(n_modes, seed)
        """(M, n) float tensor of mode bits; M = min(n_modes, 5^(n/8)) distinct modes."""

    def _make_modes(self, n_modes: int, seed: int) -> torch.Tensor:
        """Distinct random sequences of n/8 blocks drawn from BLOCKS, reproducible from `seed`."""
        n_blocks = self.length // 8
        n_modes = min(n_modes, len(BLOCKS) ** n_blocks)
        gen = torch.Generator().manual_seed(seed)
        picks = torch.empty(0, n_blocks, dtype=torch.long)
        while len(picks) < n_modes:
            draw = torch.randint(len(BLOCKS), (n_modes, n_blocks), generator=gen)
            picks = _unique_rows(torch.cat([picks, draw]))[:n_modes]
        table = torch.tensor([[int(b) for b in block] for block in BLOCKS], dtype=torch.float32)
        return table[picks].reshape(n_modes, self.length).to(self.device)

    def bits(self, states: torch.Tensor) -> torch.Tensor:
        """(n, length) float bits of the placed words, 0 in empty slots."""
        words = states.clamp(min=0)
        return ((words[:, :, None] >> self._shifts) & 1).flatten(1).float()

    def to_states(self, bits: torch.Tensor) -> torch.Tensor:
        """Full-sequence states from an (n, length) tensor of 0/1 bits."""
        words = bits.long().reshape(len(bits), self.n_words, self.word_size)
        return (words << self._shifts).sum(dim=2)

    def distances(self, states: torch.Tensor) -> torch.Tensor:
        """(n, M) Hamming distance from each state's placed bits to the same bits of each mode."""
        placed = (states >= 0).repeat_interleave(self.word_size, dim=1).float()
        ones = self.bits(states) * placed
        zeros = placed - ones
        return ones @ (1 - self.modes).T + zeros @ self.modes.T

    def energy(self, states: torch.Tensor) -> torch.Tensor:
        nearest = self.distances(states).min(dim=1).values
        return self.beta * (nearest / self.length - 1)

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        return -self.energy(states)

    def mode_hits(self, samples: torch.Tensor, threshold: int | None = None) -> torch.Tensor:
        """(M,) bool: which modes lie within `threshold` Hamming distance of some sample."""
        limit = self.mode_threshold if threshold is None else threshold
        if len(samples) == 0:
            return torch.zeros(len(self.modes), dtype=torch.bool, device=self.device)
        return (self.distances(samples) <= limit).any(dim=0)

    def modes_found(self, samples: torch.Tensor, threshold: int | None = None) -> int:
        """Number of modes within `threshold` (default `mode_threshold`) bits of some sample."""
        return int(self.mode_hits(samples, threshold).sum())


def _unique_rows(rows: torch.Tensor) -> torch.Tensor:
    """The distinct rows of a 2-D tensor, in order of first appearance."""
    uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
    index = torch.arange(len(rows))
    first = torch.full((len(uniq),), len(rows)).scatter_reduce(0, inverse, index, reduce="amin")
    return rows[first.sort().values]

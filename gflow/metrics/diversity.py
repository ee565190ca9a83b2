"""Top-K metrics: mean top-K reward and top-K diversity (Tanimoto distance of Morgan fingerprints
for molecules, Levenshtein distance for sequences)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

MORGAN_RADIUS = 2
MORGAN_BITS = 2048
# Largest (pairs x sequence length) block the vectorised Levenshtein evaluates at once.
_LEVENSHTEIN_BLOCK = 1 << 20


def _as_rewards(rewards: Any) -> np.ndarray:
    """`rewards` as a finite float64 array of 1 or 2 dimensions."""
    if hasattr(rewards, "detach"):
        rewards = rewards.detach().cpu().numpy()
    array = np.asarray(rewards, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(f"rewards must be 1-D (n,) or 2-D (groups, n), got shape {array.shape}")
    if not np.isfinite(array).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(f"rewards{list(index)} is {array[index]} (must be finite)")
    return array


def _check_k(k: int, n: int, minimum: int = 1) -> None:
    """Raise a ValueError unless minimum <= k <= n."""
    if not minimum <= k <= n:
        raise ValueError(f"k must be between {minimum} and the number of items ({n}), got {k}")


def top_k_reward(rewards: Any, k: int) -> float | np.ndarray:
    """Mean of the k largest rewards: a float for 1-D rewards, one value per row for 2-D
    rewards (e.g. one row of samples per preference vector)."""
    array = _as_rewards(rewards)
    _check_k(k, array.shape[-1])
    top = np.partition(array, array.shape[-1] - k, axis=-1)[..., array.shape[-1] - k :]
    means = top.mean(axis=-1)
    return float(means) if array.ndim == 1 else means


@lru_cache(maxsize=1)
def _morgan_generator() -> Any:
    """The shared RDKit Morgan fingerprint generator (radius 2, 2048 bits)."""
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_BITS)


def morgan_fingerprints(molecules: Sequence[Any]) -> list[Any]:
    """Morgan bit-vector fingerprints (radius 2, 2048 bits) of SMILES strings or RDKit mols."""
    from rdkit import Chem

    fingerprints = []
    for index, item in enumerate(molecules):
        mol = Chem.MolFromSmiles(item) if isinstance(item, str) else item
        if not isinstance(mol, Chem.Mol):
            raise ValueError(f"molecule {index} ({item!r}) is not a valid SMILES or RDKit Mol")
        fingerprints.append(_morgan_generator().GetFingerprint(mol))
    return fingerprints


def pairwise_tanimoto(molecules: Sequence[Any]) -> np.ndarray:
    """(n, n) matrix of Tanimoto distances (1 - similarity) between Morgan fingerprints."""
    from rdkit import DataStructs

    fingerprints = morgan_fingerprints(molecules)
    similarity = np.array(
        [DataStructs.BulkTanimotoSimilarity(fp, fingerprints) for fp in fingerprints]
    ).reshape(len(fingerprints), len(fingerprints))
    return 1.0 - similarity


def tanimoto_distance(a: Any, b: Any) -> float:
    """Tanimoto distance (1 - similarity) of the Morgan fingerprints of two molecules."""
    return float(pairwise_tanimoto([a, b])[0, 1])


def _encode(sequences: Sequence[Sequence[Hashable]]) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of hashable tokens as a padded int matrix (n, max_len) and their lengths."""
    vocabulary: dict[Hashable, int] = {}
    codes = [[vocabulary.setdefault(token, len(vocabulary)) for token in s] for s in sequences]
    lengths = np.array([len(c) for c in codes], dtype=np.int64)
    matrix = np.full((len(codes), max(lengths, default=0)), -1, dtype=np.int64)
    for row, c in zip(matrix, codes, strict=True):
        row[: len(c)] = c
    return matrix, lengths


def _levenshtein_pairs(
    a: np.ndarray, len_a: np.ndarray, b: np.ndarray, len_b: np.ndarray
) -> np.ndarray:
    """Edit distances of row-aligned padded code pairs, one DP row per step for all pairs:
    within a row, insertions are a running minimum of (substitute/delete cost - column)."""
    columns = np.arange(b.shape[1] + 1)
    row = np.broadcast_to(columns, (len(a), len(columns))).copy()
    result = len_b.copy()
    for i in range(1, a.shape[1] + 1):
        candidate = np.empty_like(row)
        candidate[:, 0] = i
        np.minimum(row[:, 1:] + 1, row[:, :-1] + (a[:, i - 1 : i] != b), out=candidate[:, 1:])
        row = np.minimum.accumulate(candidate - columns, axis=1) + columns
        ends = len_a == i
        result[ends] = row[ends, len_b[ends]]
    return result


def pairwise_levenshtein(sequences: Sequence[Sequence[Hashable]]) -> np.ndarray:
    """(n, n) matrix of Levenshtein distances between strings or sequences of hashable tokens."""
    codes, lengths = _encode(sequences)
    n = len(codes)
    first, second = np.triu_indices(n, k=1)
    distances = np.zeros((n, n), dtype=np.int64)
    block = max(1, _LEVENSHTEIN_BLOCK // (codes.shape[1] + 1))
    for start in range(0, len(first), block):
        i, j = first[start : start + block], second[start : start + block]
        distances[i, j] = _levenshtein_pairs(codes[i], lengths[i], codes[j], lengths[j])
    return distances + distances.T


def levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein (edit) distance between two strings or sequences of hashable tokens."""
    return int(pairwise_levenshtein([a, b])[0, 1])


Distance = str | Callable[[Any, Any], float]
_PAIRWISE: dict[str, Callable[[Sequence[Any]], np.ndarray]] = {
    "tanimoto": pairwise_tanimoto,
    "levenshtein": pairwise_levenshtein,
}


def mean_pairwise_distance(items: Sequence[Any], distance: Distance = "tanimoto") -> float:
    """Mean distance over all unordered pairs of `items`; `distance` is "tanimoto",
    "levenshtein" or a function of two items."""
    if len(items) < 2:
        raise ValueError(f"mean pairwise distance needs at least 2 items, got {len(items)}")
    if isinstance(distance, str):
        if distance not in _PAIRWISE:
            raise ValueError(f"unknown distance {distance!r}; choose from {sorted(_PAIRWISE)}")
        matrix = _PAIRWISE[distance](items)
        return float(matrix[np.triu_indices(len(items), k=1)].mean())
    first, second = np.triu_indices(len(items), k=1)
    pairs = zip(first.tolist(), second.tolist(), strict=True)
    return float(np.mean([distance(items[i], items[j]) for i, j in pairs]))


def top_k_diversity(
    items: Sequence[Any], k: int, distance: Distance = "tanimoto", rewards: Any = None
) -> float:
    """Mean pairwise distance among the k items with the largest `rewards` (ties: earliest
    first); without rewards, among the first k items (already ranked best first)."""
    _check_k(k, len(items), minimum=2)
    if rewards is None:
        chosen = list(items[:k])
    else:
        scores = _as_rewards(rewards)
        if scores.shape != (len(items),):
            raise ValueError(f"rewards must have shape ({len(items)},), got {scores.shape}")
        chosen = [items[i] for i in np.argsort(-scores, kind="stable")[:k]]
    return mean_pairwise_distance(chosen, distance)

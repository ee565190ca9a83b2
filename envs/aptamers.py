"""DNA aptamers (MOGFN, Jain et al. 2023): DNA sequences scored by their minimum free energy (MFE)
secondary structure, here predicted by ViennaRNA (PyPI ``viennarna``) with its DNA parameter set
(Mathews et al. 2004) at 37 C and 1.021 M sodium, ViennaRNA's standard salt.

MOGFN computed the same three objectives with NUPACK (DNA model, 37 C, 1 M sodium) on sequences
of exactly 30 nucleotides; NUPACK's licence keeps it off PyPI, so the values here follow the same
definitions under a different, openly installable energy model, and are not NUPACK's numbers.

Objectives (larger is better, each clipped to [0, 1]), with MOGFN's divisors as defaults:

- ``energy``: -MFE / 60 kcal/mol (the open chain has MFE 0, so more stable folds score higher);
- ``pairs``: number of base pairs / 16;
- ``hairpins``: number of hairpin loops / 8. A hairpin loop is a pair (i, j) with no pair inside
  it; MOGFN's code counted the top-level helices instead, which is the same number unless the
  structure has a multiloop.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Sequence

import torch
from gflow.envs.sequences import MultiObjectiveSequence

OBJECTIVES = ("energy", "pairs", "hairpins")
"""The objectives a DNA aptamer environment can use."""
SCALES = {"energy": 60.0, "pairs": 16.0, "hairpins": 8.0}
"""MOGFN's divisors: the raw value (-MFE in kcal/mol, counts) that maps to objective 1."""
_OPEN, _CLOSE = ord("("), ord(")")


def _rna():
    """The ViennaRNA module, with a clear error when it is missing."""
    try:
        import RNA
    except ImportError as err:
        raise ImportError(
            "DNA aptamers need ViennaRNA's Python bindings: pip install viennarna"
        ) from err
    return RNA


def dna_parameters(model_details):
    """ViennaRNA's DNA (Mathews 2004) energy parameters for `model_details`, loaded without
    changing the parameter set that ViennaRNA's global state holds for other callers."""
    rna = _rna()
    with tempfile.TemporaryDirectory() as folder:
        saved = os.path.join(folder, "previous.par")
        rna.params_save(saved)
        rna.params_load_DNA_Mathews2004()
        try:
            return rna.param(model_details)
        finally:
            rna.params_load(saved)


def structure_counts(structures: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(n,) base pairs and (n,) hairpin loops of pseudoknot-free dot-bracket structures: a
    hairpin loop is a '(' whose next bracket is a ')', with only unpaired bases between them."""
    width = max((len(s) for s in structures), default=0)
    if width == 0:
        zeros = torch.zeros(len(structures), dtype=torch.long)
        return zeros, zeros.clone()
    padded = b"".join(s.encode("ascii").ljust(width, b".") for s in structures)
    chars = torch.frombuffer(bytearray(padded), dtype=torch.uint8).long().view(-1, width)
    opens = chars == _OPEN
    brackets = opens | (chars == _CLOSE)
    position = torch.arange(width).expand_as(chars)
    order = (position + width * ~brackets).argsort(dim=1)
    ordered = chars.gather(1, order).masked_fill(~brackets.gather(1, order), 0)
    hairpins = ((ordered[:, :-1] == _OPEN) & (ordered[:, 1:] == _CLOSE)).sum(1)
    return opens.sum(1), hairpins


class DNAAptamers(MultiObjectiveSequence):
    """DNA sequences (alphabet ACGT) of `min_length` to `max_length` nucleotides (MOGFN: exactly
    30) scored by the chosen `objectives` of their ViennaRNA MFE structure (see the module).

    Folding is per-sequence C code; distinct sequences of a batch are folded once each, and the
    raw (MFE, pairs, hairpins) of up to `cache_size` recent sequences are kept for reuse.
    """

    def __init__(
        self,
        min_length: int = 30,
        max_length: int = 30,
        objectives: Sequence[str] = OBJECTIVES,
        scales: Sequence[float] | None = None,
        temperature: float = 37.0,
        cache_size: int = 100_000,
        floor: float = 1e-6,
        device: str = "cpu",
    ):
        names = list(objectives)
        if not names or set(names) - set(OBJECTIVES) or len(set(names)) != len(names):
            raise ValueError(
                f"dna-aptamers needs distinct objectives from {list(OBJECTIVES)}, got {names}"
            )
        super().__init__("ACGT", min_length, max_length, len(names), floor, device)
        scales = [SCALES[n] for n in names] if scales is None else [float(s) for s in scales]
        if len(scales) != len(names) or not all(0 < s < float("inf") for s in scales):
            raise ValueError(
                f"dna-aptamers needs {len(names)} positive finite scales, got {scales}"
            )
        if cache_size < 0:
            raise ValueError(f"dna-aptamers cache_size must be >= 0, got {cache_size}")
        if not -273.15 < temperature < float("inf"):
            raise ValueError(
                f"dna-aptamers temperature (C) must be above -273.15, got {temperature}"
            )
        rna = _rna()
        self.objective_names, self.cache_size = names, cache_size
        self._columns = torch.tensor([OBJECTIVES.index(n) for n in names], device=self.device)
        self.scale = torch.tensor(scales, dtype=torch.float64, device=self.device)
        """(k,) the raw value that maps to objective 1, per objective."""
        self._model = rna.md()
        self._model.temperature = temperature
        self._parameters = dna_parameters(self._model)
        self._cache: OrderedDict[str, tuple[float, int, int]] = OrderedDict()

    def fold(self, sequences: Sequence[str]) -> tuple[list[str], list[float]]:
        """MFE structures (dot-bracket) and free energies (kcal/mol) of DNA sequences."""
        rna = _rna()
        structures, energies = [], []
        for seq in sequences:
            compound = rna.fold_compound(seq, self._model, rna.OPTION_MFE)
            compound.params_subst(self._parameters)
            structure, energy = compound.mfe()
            structures.append(structure)
            energies.append(energy)
        return structures, energies

    def raw_scores(self, sequences: Sequence[str]) -> torch.Tensor:
        """(n, 3) float64 [-MFE, pairs, hairpins] of DNA sequences, folding each distinct
        uncached sequence once."""
        missing = list(dict.fromkeys(s for s in sequences if s not in self._cache))
        if missing:
            structures, energies = self.fold(missing)
            pairs, hairpins = structure_counts(structures)
            fresh = zip(missing, energies, pairs.tolist(), hairpins.tolist(), strict=True)
            for seq, energy, n_pairs, n_hairpins in fresh:
                self._cache[seq] = (0.0 - energy, n_pairs, n_hairpins)
        rows = []
        for seq in sequences:
            rows.append(self._cache[seq])
            self._cache.move_to_end(seq)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.tensor(rows, dtype=torch.float64).reshape(-1, 3)

    def reward_components(self, states: torch.Tensor) -> torch.Tensor:
        self.check_complete(states)
        raw = self.raw_scores(self.to_strings(states)).to(self.device)
        values = (raw[:, self._columns] / self.scale).clamp(0, 1)
        return values.to(torch.get_default_dtype())

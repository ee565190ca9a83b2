"""RDKit objectives, batched: QED, synthetic accessibility (SA) and a molecular-weight objective.

Raw scores give invalid molecules the worst value of their scale (QED 0, SA 10, weight +inf), so
every normalized reward in [0, 1] gives them its minimum, 0.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import torch
from gflow.envs.rewards.molecules import MolLike, to_mols
from rdkit import Chem, RDConfig
from rdkit.Chem import QED, Descriptors

WORST_SA = 10.0


@functools.lru_cache(maxsize=1)
def sascorer() -> ModuleType:
    """RDKit's Contrib `sascorer` module (Ertl & Schuffenhauer 2009), loaded from the rdkit
    installation without touching sys.path."""
    path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
    if not path.is_file():
        raise ImportError(f"RDKit Contrib SA scorer not found at {path}: install the rdkit wheel")
    spec = importlib.util.spec_from_file_location("gflow_rdkit_sascorer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _per_molecule(
    items: Iterable[MolLike], score: Callable[[Chem.Mol], float], invalid: float
) -> torch.Tensor:
    """`score` of each valid molecule, `invalid` for the others, as a float32 tensor."""
    values = [invalid if mol is None else score(mol) for mol in to_mols(items)]
    return torch.tensor(values, dtype=torch.float32)


def qed(items: Iterable[MolLike]) -> torch.Tensor:
    """Quantitative estimate of drug-likeness in [0, 1] (RDKit), 0 for invalid molecules."""
    return _per_molecule(items, QED.qed, 0.0)


def sa_score(items: Iterable[MolLike]) -> torch.Tensor:
    """Synthetic accessibility score in [1, 10] (lower is easier), 10 for invalid molecules."""
    return _per_molecule(items, sascorer().calculateScore, WORST_SA)


def molecular_weight(items: Iterable[MolLike]) -> torch.Tensor:
    """Average molecular weight in daltons (RDKit MolWt), +inf for invalid molecules."""
    return _per_molecule(items, Descriptors.MolWt, float("inf"))  # type: ignore[attr-defined]


def normalize_sa(sa: torch.Tensor) -> torch.Tensor:
    """SA objective in [0, 1]: (10 - SA) / 9."""
    return (WORST_SA - sa) / 9.0


def normalize_mw(mw: torch.Tensor) -> torch.Tensor:
    """Molecular-weight objective clip((300 - MW) / 700 + 1, 0, 1): 1 up to 300 Da, 0 from 1000."""
    return ((300.0 - mw) / 700.0 + 1.0).clamp(0.0, 1.0)


def sa_reward(items: Iterable[MolLike]) -> torch.Tensor:
    """Normalized SA objective of each molecule, 0 for invalid ones."""
    return normalize_sa(sa_score(items))


def mw_reward(items: Iterable[MolLike]) -> torch.Tensor:
    """Molecular-weight objective of each molecule, 0 for invalid ones."""
    return normalize_mw(molecular_weight(items))

"""Molecule rewards, batched and separate from the environments: the sEH binding proxy, QED,
synthetic accessibility and a molecular-weight objective. Invalid molecules get the minimum."""

from gflow.envs.rewards.chem import (
    molecular_weight,
    mw_reward,
    normalize_mw,
    normalize_sa,
    qed,
    sa_reward,
    sa_score,
)
from gflow.envs.rewards.molecules import MolLike, to_mols
from gflow.envs.rewards.seh import SEHProxy, seh_reward

__all__ = [
    "MolLike",
    "SEHProxy",
    "molecular_weight",
    "mw_reward",
    "normalize_mw",
    "normalize_sa",
    "qed",
    "sa_reward",
    "sa_score",
    "seh_reward",
    "to_mols",
]

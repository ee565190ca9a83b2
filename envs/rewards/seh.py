"""The sEH binding proxy of Bengio et al. (2021): weight loading, featurization and the network.

The network and the features follow ``gflow/data/seh/README.md``: an NNConv-style edge
network with mean aggregation and a GRU (12 rounds), a Set2Set readout (3 steps) and a linear
head. The reward of the fragment benchmark is ``clip(raw / 8, 1e-4, 100)``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from gflow.envs.rewards.molecules import MolLike, to_mols
from gflow.envs.rewards.restricted_pickle import load_arrays
from rdkit import Chem
from torch import nn
from torch.nn import functional as F
from torch_geometric.data import Batch

from gflow.config import find_data
from gflow.device import resolve_device
from gflow.segment import segment_logsumexp

PARAMS_FILE = "seh/seh_proxy_params.npz"
NODE_FEATURES = 71
EDGE_FEATURES = 4
HIDDEN = 64
ROUNDS = 12
SET2SET_STEPS = 3
SLOPE = 0.01
MIN_REWARD, MAX_REWARD, REWARD_SCALE = 1e-4, 100.0, 8.0
PARAM_SHAPES: tuple[tuple[int, ...], ...] = (
    (64, 71), (64,), (64, 64), (64,), (128, 4), (128,), (4096, 128), (4096,),
    (192, 64), (192, 64), (192,), (192,), (512, 64), (512,), (105, 512), (105,),
    (256, 128), (256, 64), (256,), (256,), (1, 128), (1,),
)  # fmt: skip
"""Shapes of the published arrays p00 ... p21 (p12-p15 belong to an unused head)."""

EDGE_KINDS = torch.cat([torch.eye(EDGE_FEATURES), torch.zeros(1, EDGE_FEATURES)])
"""The edge feature vectors the proxy knows: one-hot single, double, triple, aromatic; all-zero."""

_ELEMENT_COLUMN = np.full(256, 5, dtype=np.int64)
_ELEMENT_COLUMN[[1, 6, 7, 8, 9]] = [0, 1, 2, 3, 4]
_HYBRIDIZATIONS = np.array(
    [
        int(Chem.HybridizationType.SP),
        int(Chem.HybridizationType.SP2),
        int(Chem.HybridizationType.SP3),
    ]
)
_BOND_COLUMN = {
    Chem.BondType.SINGLE: 0, Chem.BondType.DOUBLE: 1, Chem.BondType.TRIPLE: 2,
    Chem.BondType.AROMATIC: 3,
}  # fmt: skip
_RNN_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_NO_BOND = EDGE_FEATURES  # row of the all-zero edge feature vector in EDGE_KINDS
_ORDER_KIND = np.full(13, _NO_BOND, dtype=np.int64)
_ORDER_KIND[[2, 4, 6, 3]] = [0, 1, 2, 3]  # twice the bond order: single, double, triple, aromatic


def load_params(path: str | os.PathLike) -> list[np.ndarray]:
    """The 22 proxy arrays from an ``.npz`` (p00 ... p21) or a (gzip-)pickled list, checked."""
    with open(path, "rb") as handle:
        is_zip = handle.read(4) == b"PK\x03\x04"
    if is_zip:
        names = [f"p{i:02d}" for i in range(len(PARAM_SHAPES))]
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = [data[name] for name in names if name in data]
                missing = [name for name in names if name not in data]
        except (zipfile.BadZipFile, EOFError, ValueError) as err:
            raise ValueError(f"{path} is not a readable .npz of arrays: {err}") from None
        if missing:
            raise ValueError(f"{path} lacks the arrays {', '.join(missing)}")
    else:
        arrays = load_arrays(path)
    if len(arrays) != len(PARAM_SHAPES):
        raise ValueError(
            f"{path} holds {len(arrays)} arrays, the sEH proxy has {len(PARAM_SHAPES)}"
        )
    for i, (array, shape) in enumerate(zip(arrays, PARAM_SHAPES, strict=True)):
        if array.shape != shape:
            raise ValueError(f"{path}: array p{i:02d} has shape {array.shape}, expected {shape}")
    return [np.asarray(a, dtype=np.float32) for a in arrays]


def _atom_properties(mol: Chem.Mol) -> list[tuple[int, bool, int, int]]:
    """(atomic number, aromatic, hybridization, total H count) of each atom."""
    atom = mol.GetAtomWithIdx
    return [
        (a.GetAtomicNum(), a.GetIsAromatic(), a.GetHybridization(), a.GetTotalNumHs(True))
        for a in map(atom, range(mol.GetNumAtoms()))
    ]


def _directed_bonds(mol: Chem.Mol) -> np.ndarray:
    """(source, target, kind) of every directed edge, shape (E, 3), kind indexing EDGE_KINDS.

    Reads the bond-order matrix when every bond appears in it in both directions (so its type
    is single, double, triple or aromatic, the only ones SMILES parsing gives besides dative and
    unspecified); walks the bonds otherwise."""
    order = Chem.GetAdjacencyMatrix(mol, useBO=True)
    source, target = np.nonzero(order)
    if len(source) == 2 * mol.GetNumBonds():
        kind = _ORDER_KIND[np.minimum(np.rint(2 * order[source, target]).astype(np.int64), 12)]
        edges = np.stack([source, target, kind], axis=1)
    else:
        bonds = np.array(
            [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), _BOND_COLUMN.get(b.GetBondType(), _NO_BOND))
             for b in mol.GetBonds()],
            dtype=np.int64,
        ).reshape(-1, 3)  # fmt: skip
        edges = np.concatenate([bonds, bonds[:, [1, 0, 2]]])
    if len(edges) == 0:
        edges = np.array([[0, 0, _NO_BOND]], dtype=np.int64)
    return edges


def featurize(mols: Sequence[Chem.Mol]) -> Batch:
    """One torch-geometric Batch of the proxy's graphs for sanitized molecules with atoms."""
    if not mols:
        raise ValueError("featurize needs at least one molecule")
    atoms: list[tuple[int, bool, int, int]] = []
    edges = []
    sizes = np.zeros(len(mols), dtype=np.int64)
    for g, mol in enumerate(mols):
        bonds = _directed_bonds(mol)
        bonds[:, :2] += len(atoms)
        edges.append(bonds)
        atoms.extend(_atom_properties(mol))
        sizes[g] = mol.GetNumAtoms()
    z, aromatic, hybridization, hydrogens = np.array(atoms, dtype=np.int64).reshape(-1, 4).T
    rows = np.arange(len(atoms))
    x = np.zeros((len(atoms), NODE_FEATURES), dtype=np.float32)
    x[rows, _ELEMENT_COLUMN[z]] = 1
    x[:, 9] = aromatic
    x[:, 10:13] = hybridization[:, None] == _HYBRIDIZATIONS
    x[:, 13] = hydrogens
    in_table = (z >= 1) & (z <= 56)
    x[rows[in_table], 13 + z[in_table]] = 1
    edge = np.concatenate(edges)
    return Batch(
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(np.ascontiguousarray(edge[:, :2].T)),
        edge_attr=EDGE_KINDS[torch.from_numpy(edge[:, 2])],
        batch=torch.from_numpy(np.repeat(np.arange(len(mols)), sizes)),
        ptr=torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)])),
    )


def _tensor(array: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.array(array, dtype=np.float32)), requires_grad=False)


def edge_kinds(edge_attr: torch.Tensor) -> torch.Tensor:
    """Row index in EDGE_KINDS of each edge feature vector; raises on any other vector."""
    kind = torch.where(edge_attr.any(dim=1), edge_attr.argmax(dim=1), len(EDGE_KINDS) - 1)
    if not torch.equal(EDGE_KINDS.to(edge_attr)[kind], edge_attr):
        raise ValueError("sEH edge features must be one-hot bond types or all zero")
    return kind


class SEHNet(nn.Module):
    """The proxy network; messages are computed per edge kind with one matrix per kind."""

    def __init__(self, params: Sequence[np.ndarray]) -> None:
        super().__init__()
        p = [_tensor(a) for a in params]
        self.embed_weight, self.embed_bias, self.root, self.conv_bias = p[0], p[1], p[2], p[3]
        hidden = F.leaky_relu(EDGE_KINDS @ p[4].T + p[5], SLOPE)
        self.kind_weights = _tensor((hidden @ p[6].T + p[7]).view(-1, HIDDEN, HIDDEN).numpy())
        self.gru = nn.GRUCell(HIDDEN, HIDDEN)
        self.lstm = nn.LSTMCell(2 * HIDDEN, HIDDEN)
        for module, arrays in ((self.gru, p[8:12]), (self.lstm, p[16:20])):
            for name, value in zip(_RNN_WEIGHTS, arrays, strict=True):
                setattr(module, name, value)
        self.head_weight, self.head_bias = p[20], p[21]

    def forward(self, batch: Batch) -> torch.Tensor:
        """Raw proxy scores, one per graph of `batch`."""
        x, n = batch.x, batch.x.shape[0]
        kind = edge_kinds(batch.edge_attr)
        order = torch.argsort(kind, stable=True)
        src, dst = batch.edge_index[:, order]
        sizes = torch.bincount(kind, minlength=len(EDGE_KINDS)).tolist()
        degree = torch.bincount(dst, minlength=n).to(x.dtype)
        inverse_degree = torch.where(degree > 0, 1.0 / degree, 0.0).unsqueeze(1)
        h = F.leaky_relu(x @ self.embed_weight.T + self.embed_bias, SLOPE)
        for _ in range(ROUNDS):
            sources = h.index_select(0, src).split(sizes)
            messages = torch.cat(
                [s @ w for s, w, k in zip(sources, self.kind_weights, sizes, strict=True) if k]
            )
            mean = h.new_zeros(n, HIDDEN).index_add_(0, dst, messages) * inverse_degree
            message = torch.addmm(self.conv_bias, h, self.root.T) + mean
            h = self.gru(F.leaky_relu(message, SLOPE), h)
        return (
            self.set2set(h, batch.batch, batch.num_graphs) @ self.head_weight[0] + self.head_bias[0]
        )

    def set2set(self, h: torch.Tensor, graph: torch.Tensor, n_graphs: int) -> torch.Tensor:
        """Set2Set readout: (n_graphs, 128) from node states `h` grouped by `graph`."""
        state = (h.new_zeros(n_graphs, HIDDEN), h.new_zeros(n_graphs, HIDDEN))
        q_star = h.new_zeros(n_graphs, 2 * HIDDEN)
        for _ in range(SET2SET_STEPS):
            state = self.lstm(q_star, state)
            query = state[0]
            energy = (h * query.index_select(0, graph)).sum(dim=1)
            attention = (energy - segment_logsumexp(energy, graph, n_graphs)[graph]).exp()
            read = h.new_zeros(n_graphs, HIDDEN).index_add_(0, graph, attention.unsqueeze(1) * h)
            q_star = torch.cat([query, read], dim=1)
        return q_star


class SEHProxy:
    """Batched sEH proxy: molecules or SMILES in, raw scores out (-inf for invalid molecules)."""

    def __init__(
        self, net: SEHNet, device: str | torch.device | None = None, batch_size: int = 512
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.batch_size = batch_size

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 512,
    ) -> SEHProxy:
        """The proxy with weights from `path`, or found by `find_data` (bundled by default)."""
        return cls(SEHNet(load_params(find_data(PARAMS_FILE, path))), device, batch_size)

    def __call__(self, items: Iterable[MolLike]) -> torch.Tensor:
        """Raw proxy outputs; molecules that cannot be parsed or sanitized score -inf."""
        return self.score_sanitized(to_mols(items))

    @torch.inference_mode()
    def score_sanitized(self, mols: Sequence[Chem.Mol | None]) -> torch.Tensor:
        """Raw proxy outputs of molecules that are already sanitized, as molecule environments
        build them, read as they are (no copy, no sanitization: a fifth of the proxy's time on
        seh-frag); None and molecules without atoms score -inf."""
        raw = torch.full((len(mols),), float("-inf"), device=self.device)
        valid = [(i, mol) for i, mol in enumerate(mols) if mol is not None and mol.GetNumAtoms()]
        for start in range(0, len(valid), self.batch_size):
            chunk = valid[start : start + self.batch_size]
            batch = featurize([mol for _, mol in chunk]).to(self.device)
            raw[torch.tensor([i for i, _ in chunk], device=self.device)] = self.net(batch)
        return raw

    def reward(self, items: Iterable[MolLike]) -> torch.Tensor:
        """The benchmark reward `seh_reward` of each molecule (the minimum for invalid ones)."""
        return seh_reward(self(items))


def seh_reward(raw: torch.Tensor) -> torch.Tensor:
    """Reward scale of the fragment benchmark: clip(raw / 8, 1e-4, 100)."""
    return (raw / REWARD_SCALE).clamp(MIN_REWARD, MAX_REWARD)

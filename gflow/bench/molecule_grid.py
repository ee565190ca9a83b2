"""Draw molecules as one PNG grid (RDKit's Cairo renderer), each with a legend (e.g. its reward)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rdkit import Chem
from rdkit.Chem.Draw import rdMolDraw2D

from gflow.checkpoint import atomic_write


def molecule_grid_png(
    smiles: Sequence[str],
    legends: Sequence[str] | None = None,
    per_row: int = 4,
    panel: int = 300,
) -> bytes:
    """PNG bytes of a grid of the molecules `smiles`, `per_row` panels of `panel` pixels a row."""
    if not smiles:
        raise ValueError("molecule_grid_png needs at least one molecule")
    if legends is not None and len(legends) != len(smiles):
        raise ValueError(f"{len(legends)} legends for {len(smiles)} molecules")
    if per_row < 1 or panel < 50:
        raise ValueError(f"need per_row >= 1 and panel >= 50 pixels, got {per_row=} {panel=}")
    mols = []
    for index, text in enumerate(smiles):
        mol = Chem.MolFromSmiles(text)
        if mol is None:
            raise ValueError(f"molecule {index} ({text!r}) is not a valid SMILES")
        mols.append(mol)
    columns = min(per_row, len(mols))
    rows = -(-len(mols) // columns)
    drawer = rdMolDraw2D.MolDraw2DCairo(columns * panel, rows * panel, panel, panel)
    drawer.drawOptions().legendFontSize = max(12, panel // 16)  # type: ignore[assignment]
    drawer.DrawMolecules(mols, legends=list(legends) if legends is not None else None)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


def save_molecule_grid(
    path: str | os.PathLike,
    smiles: Sequence[str],
    legends: Sequence[str] | None = None,
    per_row: int = 4,
    panel: int = 300,
) -> None:
    """Write the grid of `molecule_grid_png` to `path`, atomically."""
    png = molecule_grid_png(smiles, legends, per_row, panel)
    atomic_write(path, lambda f: f.write(png))

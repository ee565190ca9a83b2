"""`gflow export STORE --format csv|parquet [--out FILE]`: write a sample store's samples out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add `export`."""
    p = subparsers.add_parser(
        "export",
        help="write a sample store (--store) out as CSV or Parquet",
        description="Write the samples of a sample store (gflow train --store, the molecule "
        "benchmarks' OUT/samples.sqlite) as CSV or Parquet: one row per sample with its step, "
        "worker, object, log reward, temperature, reward components, preference and the "
        "oracle's cached value.",
    )
    p.add_argument("store", help="the sample store (SQLite file)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="default csv")
    p.add_argument("--out", default=None, help="output file (default: STORE, suffix .FORMAT)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export the store and say where."""
    from gflow.store import export_store

    out = Path(args.out) if args.out else Path(args.store).with_suffix(f".{args.format}")
    n = export_store(args.store, out, args.format)
    print(f"{n} samples -> {out}")
    return 0

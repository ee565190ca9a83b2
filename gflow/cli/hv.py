"""`gflow hv FILE --ref r1,r2,...`: exact hypervolume of a point set read from CSV, .npy or
Parquet (or a Monte-Carlo estimate with --approx), optionally with a plot of the Pareto front.

numpy and the metrics load inside the functions, so that `gflow --help` does not wait for them.
Exact computations run in a worker thread: Ctrl-C stops the command at once even while the
hypervolume engine is busy in C code."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gflow.cli import UsageError, describe_error

if TYPE_CHECKING:
    import numpy as np

PARQUET_SUFFIXES = (".parquet", ".pq")
SLOW_SECONDS = 5.0
"""Exact computations estimated to take longer than this are announced on stderr first."""
T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `hv` subcommand."""
    parser = subparsers.add_parser(
        "hv",
        help="hypervolume of a set of points (exact, or a Monte-Carlo estimate)",
        description="Exact hypervolume of the points in FILE (CSV with an optional header, .npy "
        "or Parquet; one row per point, one column per objective). Prints the hypervolume as "
        "the last line. An exact computation estimated to take more than a few seconds (many "
        "objectives: the cost grows like n^(d-2)) is announced on stderr first; Ctrl-C stops it "
        "at once; --approx estimates the hypervolume instead.",
    )
    parser.add_argument("file", metavar="FILE", type=Path, help="CSV, .npy or .parquet file")
    parser.add_argument(
        "--ref",
        required=True,
        help="reference point, one value per objective: --ref 0,0 (use --ref=-1,-1 for "
        "negative values)",
    )
    parser.add_argument(
        "--minimize", action="store_true", help="minimize every objective (default: maximize)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print {hypervolume, n_points, n_pareto} as JSON (with --approx also method, ci95, "
        "samples)",
    )
    parser.add_argument(
        "--plot", metavar="OUT", type=Path, help="draw the front (2 or 3 objectives) to OUT"
    )
    parser.add_argument(
        "--approx",
        action="store_true",
        help="Monte-Carlo estimate with a 95%% confidence interval instead of the exact value, "
        "for many objectives where the exact computation cannot finish (Karp-Luby estimator "
        "over the boxes the Pareto points dominate; its error shrinks like 1/sqrt(samples))",
    )
    parser.add_argument(
        "--samples", type=int, default=100_000, help="--approx: random points (default 100000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="--approx: random seed (default 0)")
    parser.set_defaults(run=run)


def parse_ref(text: str) -> np.ndarray:
    """The reference point from "r1,r2,..."; the error names the value that is not a number."""
    import numpy as np

    values = []
    for position, cell in enumerate(text.split(","), 1):
        try:
            value = float(cell)
        except ValueError:
            raise UsageError(f"--ref value {position} ({cell.strip()!r}) is not a number") from None
        if not math.isfinite(value):
            raise UsageError(f"--ref value {position} is {value} (must be finite)")
        values.append(value)
    return np.array(values)


def read_csv(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """Points and column names (None without a header) from a CSV file; a first row with no
    number in it is a header; errors name the line and column."""
    import numpy as np

    rows: list[list[float]] = []
    header = None
    width = None
    line = 0
    with path.open(newline="", encoding="utf-8-sig") as handle:
        try:
            for line, cells in enumerate(csv.reader(handle), 1):
                if not any(cell.strip() for cell in cells):
                    continue
                if width is None and header is None and not any(_is_number(c) for c in cells):
                    header, width = [c.strip() for c in cells], len(cells)
                    continue
                if width is not None and len(cells) != width:
                    raise UsageError(
                        f"{path} line {line} has {len(cells)} values, expected {width}"
                    )
                width = len(cells)
                rows.append([_csv_value(path, line, c, cell) for c, cell in enumerate(cells, 1)])
        except UnicodeDecodeError:
            raise UsageError(
                f"{path} line {line + 1} is not UTF-8 text; expected CSV, .npy or .parquet"
            ) from None
        except csv.Error as err:
            raise UsageError(f"{path} line {line + 1} is not CSV: {err}") from None
    return np.array(rows, dtype=np.float64).reshape(len(rows), width or 0), header


def _is_number(cell: str) -> bool:
    """Whether a CSV cell parses as a float."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _csv_value(path: Path, line: int, column: int, cell: str) -> float:
    """A finite float from one CSV cell; the error names line, column and value."""
    try:
        value = float(cell)
    except ValueError:
        raise UsageError(
            f"{path} line {line}, column {column}: {cell.strip()!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise UsageError(f"{path} line {line}, column {column} is {value} (must be finite)")
    return value


def read_npy(path: Path) -> tuple[np.ndarray, None]:
    """Points from a 2-D numeric .npy array."""
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as err:
        raise UsageError(f"{path} is not a readable .npy array: {err}") from None
    if array.dtype.kind not in "biuf":
        raise UsageError(f"{path} holds {array.dtype} values, expected numbers")
    return array, None


def read_parquet(path: Path) -> tuple[np.ndarray, list[str]]:
    """Points and column names from a Parquet file with one numeric column per objective."""
    import numpy as np

    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        import pyarrow.types as pt
    except ImportError:
        raise UsageError("reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.read_table(path)
    except pa.ArrowException as err:
        raise UsageError(f"{path} is not a readable Parquet file: {err}") from None
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not (pt.is_integer(column.type) or pt.is_floating(column.type)):
            raise UsageError(f"{path} column {name!r} holds {column.type}, expected numbers")
        if column.null_count:
            row = pc.index(pc.is_null(column), True).as_py()
            raise UsageError(f"{path} row {row}, column {name!r} is empty (null)")
        columns.append(column.to_numpy().astype(np.float64))
    return np.stack(columns, axis=1).reshape(table.num_rows, len(columns)), table.column_names


def load_points(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """Points (validated: 2-D, finite) and column names from FILE, by its suffix."""
    from gflow.metrics.pareto import as_points

    if path.is_dir():
        raise UsageError(f"{path} is a directory, expected a CSV, .npy or .parquet file")
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        points, names = read_npy(path)
    elif suffix in PARQUET_SUFFIXES:
        points, names = read_parquet(path)
    else:
        points, names = read_csv(path)
    if len(points) == 0:
        raise UsageError(f"{path} holds no points")
    try:
        return as_points(points, f"{path} points"), names
    except ValueError as err:
        raise UsageError(str(err)) from None


def plot_front(
    points: np.ndarray,
    front: np.ndarray,
    ref: np.ndarray,
    minimize: bool,
    names: list[str],
    out: Path,
) -> None:
    """Draw all points, the Pareto front and the reference point (2 or 3 objectives) to `out`,
    written atomically; errors name --plot and the reason."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from gflow.checkpoint import atomic_write

    if out.is_dir():
        raise UsageError(f"--plot {out} is a directory, expected an image file name")

    figure = Figure(figsize=(6, 5), layout="constrained")
    FigureCanvasAgg(figure)
    three_d = points.shape[1] == 3
    axes: Any = figure.add_subplot(projection="3d" if three_d else None)  # 2-D or 3-D axes
    axes.scatter(*points.T, s=8, color="0.7", label="points")
    axes.scatter(*points[front].T, s=18, color="tab:red", label="Pareto front")
    axes.scatter(*ref, marker="x", s=60, color="black", label="reference")
    if not three_d:
        axes.plot(*_attainment_boundary(points[front], ref, minimize).T, color="tab:red", lw=1)
    direction = "min" if minimize else "max"
    axes.set_xlabel(f"{names[0]} ({direction})")
    axes.set_ylabel(f"{names[1]} ({direction})")
    if three_d:
        axes.set_zlabel(f"{names[2]} ({direction})")
    axes.legend(loc="best")
    image_format = out.suffix.lstrip(".").lower()
    try:
        atomic_write(out, lambda handle: figure.savefig(handle, format=image_format, dpi=120))
    except OSError as err:
        raise UsageError(f"--plot {out}: cannot write it: {_reason(err, out)}") from None


def _reason(err: OSError, out: Path) -> str:
    """Why writing `out` failed, naming the folder when the temporary file next to it was the
    one refused."""
    if err.filename is not None and Path(err.filename).parent == out.parent != Path(err.filename):
        return f"folder {out.parent}: {describe_error(err).split(': ', 1)[-1]}"
    return describe_error(err)


def _attainment_boundary(front: np.ndarray, ref: np.ndarray, minimize: bool) -> np.ndarray:
    """The staircase bounding the region a 2-D front dominates, from one axis of `ref` to the
    other, as (x, y) vertices."""
    import numpy as np

    from gflow.metrics.pareto import dominates_reference

    signs = np.ones(2) if minimize else -np.ones(2)
    inside = front[dominates_reference(front, ref, maximize=not minimize)] * signs
    inside = inside[np.argsort(inside[:, 0])]
    ref_min = ref * signs
    vertices = [(inside[0, 0], ref_min[1])] if len(inside) else []
    for previous, point in zip(inside[:-1], inside[1:], strict=True):
        vertices += [tuple(previous), (point[0], previous[1])]
    if len(inside):
        vertices += [tuple(inside[-1]), (ref_min[0], inside[-1, 1])]
    return np.array(vertices, dtype=np.float64).reshape(-1, 2) * signs


def _check_plot_target(out: Path, n_objectives: int) -> None:
    """Raise a UsageError unless a plot of n_objectives can be written to `out`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if n_objectives not in (2, 3):
        raise UsageError(f"--plot draws 2 or 3 objectives, the points have {n_objectives}")
    formats = FigureCanvasAgg.get_supported_filetypes()
    if out.suffix.lstrip(".").lower() not in formats:
        raise UsageError(f"--plot {out}: unknown image format; use one of {', '.join(formats)}")


WAKE_SECONDS = 0.1
"""How often `interruptible`'s wait wakes to run a pending Ctrl-C."""


def interruptible(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` run in a daemon thread while this (main) thread waits, so Ctrl-C
    raises KeyboardInterrupt here at once even while the worker is inside C code; the abandoned
    worker ends with the process. The wait wakes every WAKE_SECONDS: the kernel may deliver
    SIGINT to the worker thread, which leaves an untimed wait asleep until the worker ends."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as err:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = err

    worker = threading.Thread(target=work, name="gflow-hv", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(WAKE_SECONDS)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def duration(seconds: float) -> str:
    """A rough human duration: '40 s', '3 min', '5 h', '12 days', '4 years'."""
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            count = seconds / size
            return f"{count:.0f} {unit}" if count < 1e6 else f"over a million {unit}"
    return f"{seconds:.0f} s"


def warn_if_slow(points: np.ndarray, ref: np.ndarray, maximize: bool, n_pareto: int) -> None:
    """Announce on stderr an exact computation estimated to take more than SLOW_SECONDS."""
    from gflow.metrics.pareto import hypervolume_seconds

    n_objectives = points.shape[1]
    if n_objectives < 4:
        return  # O(n log n) in 2 and 3 objectives
    seconds = interruptible(hypervolume_seconds, points, ref, maximize)
    if seconds > SLOW_SECONDS:
        sys.stderr.write(
            f"gflow hv: warning: the exact hypervolume of {n_pareto} Pareto points in "
            f"{n_objectives} objectives may take about {duration(seconds)} (its cost grows "
            f"like n^{n_objectives - 2}); Ctrl-C stops it, --approx estimates it in seconds\n"
        )
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """Compute and print the hypervolume of FILE (exact, or estimated with --approx)."""
    from gflow.metrics.pareto import (
        dominates_reference,
        hypervolume,
        hypervolume_mc,
        is_non_dominated,
    )

    if args.samples < 2:
        raise UsageError(f"--samples must be >= 2, got {args.samples}")
    points, names = load_points(args.file)
    ref = parse_ref(args.ref)
    n_objectives = points.shape[1]
    if len(ref) != n_objectives:
        raise UsageError(
            f"--ref has {len(ref)} values but {args.file} has {n_objectives} objectives"
        )
    if args.plot is not None:
        _check_plot_target(args.plot, n_objectives)
    maximize = not args.minimize
    if not dominates_reference(points, ref, maximize).any():
        better = "below" if args.minimize else "above"
        raise UsageError(
            f"no point is strictly {better} the reference point {args.ref} in every objective, "
            "so the hypervolume is 0; check --ref and --minimize"
        )
    front = is_non_dominated(points, maximize, keep_duplicates=False)
    n_points, n_pareto = len(points), int(front.sum())
    result: dict[str, Any] = {"n_points": n_points, "n_pareto": n_pareto}
    if args.approx:
        volume, low, high = interruptible(
            hypervolume_mc, points, ref, args.samples, args.seed, maximize
        )
        result |= {"method": "monte-carlo", "ci95": [low, high], "samples": args.samples}
    else:
        warn_if_slow(points, ref, maximize, n_pareto)
        volume = interruptible(hypervolume, points, ref, maximize)
    result = {"hypervolume": volume, **result}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"points: {n_points}, Pareto front: {n_pareto}")
        if args.approx:
            print(
                f"Monte-Carlo estimate from {args.samples} samples (seed {args.seed}), "
                f"95% confidence interval [{low!r}, {high!r}]"
            )
        print(repr(volume))
    sys.stdout.flush()
    if args.plot is not None:
        labels = names or [f"objective {i + 1}" for i in range(n_objectives)]
        plot_front(points, front, ref, args.minimize, labels, args.plot)
    return 0

"""Where gflow finds data files: an explicit path, $GFLOW_DATA_DIR, the user cache
($XDG_CACHE_HOME/gflow, by default ~/.cache/gflow), then the copy bundled with the package."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

DATA_ENV_VAR = "GFLOW_DATA_DIR"
BUNDLED_PACKAGE = "gflow.data"


def cache_dir() -> Path:
    """The user cache folder: $XDG_CACHE_HOME/gflow when that is an absolute path, else
    ~/.cache/gflow."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "gflow"


def bundled_dir() -> Path:
    """The data folder installed with gflow."""
    return Path(str(files(BUNDLED_PACKAGE)))


def data_dirs() -> list[Path]:
    """Folders searched for data, in order."""
    env = os.environ.get(DATA_ENV_VAR)
    return [*([Path(env).expanduser()] if env else []), cache_dir(), bundled_dir()]


def find_data(relative: str, explicit: str | os.PathLike | None = None) -> Path:
    """The path of a data file: `explicit` if given, else `relative` under the first data folder
    that has it; the one-line error names the file and the places searched."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            raise IsADirectoryError(f"data file {path} is a directory, not a file")
        if not path.is_file():
            raise FileNotFoundError(f"data file {path} does not exist")
        return path
    folders = data_dirs()
    for folder in folders:
        if (folder / relative).is_file():
            return folder / relative
    searched = ", ".join(str(folder) for folder in folders)
    raise FileNotFoundError(
        f"cannot find data file {relative!r} (searched: {searched}); pass its path, or put it "
        f"under ${DATA_ENV_VAR} or {cache_dir()}"
    )

"""Atomic persistence of a training run: checkpoints, JSON metrics, random-generator states and the
output folder's lifecycle (fresh start, resume, restart).

A checkpoint file is a header line, a line with the SHA-256 digest and size of the payload, then
the payload: a `torch.save` archive of plain data only (tensors, numbers, strings, bytes, None,
and lists, tuples, sets and dicts of them), which `torch.load(weights_only=True)` reads without
running code. A file that fails any of these checks is refused with a one-line `CheckpointError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import re
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from gflow.errors import GflowError

CHECKPOINT = "checkpoint.pt"
"""The checkpoint's file name inside a run's output folder."""
MAGIC = b"gflow-checkpoint 1\n"
"""First line of every checkpoint file."""
TEMP_SUFFIX = ".gflow.tmp"
"""Ending of the temporary files `atomic_write` creates (`.NAME.XXXXXXXX.gflow.tmp`)."""
RESTART_HINT = "rerun with --restart to move the run aside and start afresh"
"""What a corrupt checkpoint of a run's own output folder suggests."""
_DIGEST = re.compile(rb"sha256 ([0-9a-f]{64}) size ([0-9]{1,20})\n")
_PLAIN = (type(None), bool, int, float, str, bytes)
_TENSORS = (torch.Tensor, torch.nn.Parameter)


class CheckpointError(GflowError, ValueError):
    """A checkpoint that cannot be used (corrupt, truncated, not ours, or holding objects other
    than plain data); its message is one line naming the file and what to do."""


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> None:
    """Write a file so that readers see either the old or the new content, never a partial one:
    write a temporary file in the same folder (mode 0666 less the umask, as `open` would give),
    fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if os.name == "posix":
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def save_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Raise TypeError, naming the entry, unless `value` is plain data: tensors, None, bools,
    numbers, strings, bytes, and lists, tuples, sets and dicts of them."""
    if type(value) in _PLAIN or type(value) in _TENSORS:
        return
    if type(value) in (list, tuple, set):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            check_plain(key, f"{where} key {key!r}")
            check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, not plain data "
        "(tensors, numbers, strings, None and containers of them)"
    )


def frame_payload(payload: bytes) -> bytes:
    """A checkpoint file's bytes: the header, the payload's SHA-256 digest and size, the payload."""
    digest = hashlib.sha256(payload).hexdigest().encode()
    return MAGIC + b"sha256 " + digest + b" size " + str(len(payload)).encode() + b"\n" + payload


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save a checkpoint dictionary of plain data (see `check_plain`), atomically."""
    check_plain(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = frame_payload(buffer.getvalue())
    atomic_write(path, lambda f: f.write(data))


def read_payload(path: str | os.PathLike, hint: str = RESTART_HINT) -> bytes:
    """The verified payload of a checkpoint file; CheckpointError (one line naming the file, the
    problem and `hint`) if it is empty, not a checkpoint, truncated or corrupt."""
    path = Path(path)

    def refuse(problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} {problem}; {hint}")

    if path.is_dir():
        raise refuse("is a directory, not a file")
    data = path.read_bytes()
    if not data:
        raise refuse("is empty")
    if not data.startswith(MAGIC):
        raise refuse("is not a gflow checkpoint (unknown header)")
    found = _DIGEST.match(data, len(MAGIC))
    if found is None:
        raise refuse("has a damaged header")
    payload, size = data[found.end() :], int(found.group(2))
    if len(payload) < size:
        raise refuse(f"is truncated ({len(payload)} of {size} payload bytes)")
    if len(payload) > size:
        raise refuse(f"has {len(payload) - size} stray bytes after its payload")
    if hashlib.sha256(payload).hexdigest().encode() != found.group(1):
        raise refuse("fails its SHA-256 checksum (corrupted)")
    return payload


def load_checkpoint(
    path: str | os.PathLike, device: torch.device | str = "cpu", hint: str = RESTART_HINT
) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint` without running any code from it
    (`torch.load(weights_only=True)`); CheckpointError (one line, ending with `hint`) when the
    file is corrupt or holds anything but plain data."""
    payload = read_payload(path, hint)
    try:
        state = torch.load(io.BytesIO(payload), map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        name = re.search(r"GLOBAL (\S+)", str(err))
        what = f"a Python object ({name.group(1)})" if name else "something other than plain data"
        raise CheckpointError(
            f"checkpoint {path} holds {what}, refused unread (it could run code); {hint}"
        ) from None
    except Exception as err:  # noqa: BLE001 - any failure to read verified bytes is the file's
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read ({first}); {hint}") from None
    if not isinstance(state, dict):
        kind = type(state).__name__
        raise CheckpointError(f"checkpoint {path} holds a {kind}, not a dict; {hint}")
    return state


def prepare_output(out: str | os.PathLike | None, restart: bool = False) -> None:
    """Get a run's output folder ready: with `restart`, move an existing one aside to
    OUT.old-YYYYmmdd-HHMMSS (never deleting it); then remove temporary files a killed save
    left behind (our own naming pattern only)."""
    if out is None:
        return
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file")
    if restart and out.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = out.with_name(f"{out.name}.old-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = out.with_name(f"{out.name}.old-{stamp}-{n}")
        out.rename(aside)
        print(f"moved {out} aside to {aside}; starting afresh", file=sys.stderr)
    if out.is_dir():
        for stale in out.glob(f".*{TEMP_SUFFIX}"):
            stale.unlink(missing_ok=True)


def open_run(
    out: str | os.PathLike | None,
    device: torch.device | str = "cpu",
    resume: bool | None = None,
    restart: bool = False,
) -> dict[str, Any] | None:
    """Prepare a run's output folder (`prepare_output`) and return the checkpoint to continue
    from, or None for a fresh start: `resume=None` continues when OUT/checkpoint.pt exists,
    `True` requires it, `False` starts afresh."""
    if resume and restart:
        raise ValueError("--resume and --restart contradict each other: choose one")
    prepare_output(out, restart)
    path = None if out is None else Path(out) / CHECKPOINT
    if resume and (path is None or not path.exists()):
        raise FileNotFoundError(f"cannot resume: no checkpoint at {path or '(no output folder)'}")
    if path is None or not path.exists() or resume is False:
        return None
    return load_checkpoint(path, device)


def announce_resume(out: str | os.PathLike | None, step: int, steps: int) -> None:
    """Say on stderr where a resumed run continues (silent without an output folder: a rank
    other than 0 of a multi-process run); a run already past `steps` is an error."""
    if step > steps:
        raise ValueError(
            f"{out} has already trained {step} steps, more than --steps {steps}: give "
            f"--steps {step} or more to continue it, or --restart"
        )
    if out is None:
        return
    done = "; nothing left to train" if step == steps else ""
    print(f"resuming {out} from step {step} of {steps}{done}", file=sys.stderr)


def rng_state() -> dict[str, Any]:
    """The states of every random generator training uses, as tensors and numbers: torch (CPU
    and CUDA), numpy's global generator and Python's random module."""
    numpy = np.random.get_state(legacy=False)
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {
            "key": torch.from_numpy(numpy["state"]["key"].astype(np.int64)),
            "pos": int(numpy["state"]["pos"]),
            "has_gauss": int(numpy["has_gauss"]),
            "gauss": float(numpy["gauss"]),
        },
        "python": {"version": version, "state": torch.tensor(internal), "gauss": gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states saved by `rng_state` (CUDA ones only where CUDA is present)."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    numpy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": numpy["key"].cpu().numpy().astype(np.uint32), "pos": numpy["pos"]},
            "has_gauss": numpy["has_gauss"],
            "gauss": numpy["gauss"],
        }
    )
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy and Python's random module."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

"""Choosing the torch device: CUDA when there is one, CPU otherwise."""

from __future__ import annotations

import torch


def resolve_device(choice: str | torch.device | None = "auto") -> torch.device:
    """`auto`/None gives cuda when available, else cpu; asking for cuda without one is an error."""
    if choice is None or str(choice) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {choice!r} requested but no CUDA device is available")
    return device


def setup_runtime(device: str | torch.device | None = "auto", threads: int = 0) -> torch.device:
    """Set torch's CPU thread count (`threads` > 0; 0 leaves torch's default) and resolve the
    device (see `resolve_device`): the one place commands and benchmarks prepare where a run
    executes. A negative thread count is an error."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)
    return resolve_device(device)

"""Test-suite settings: one torch thread, so parallel CPU work never oversubscribes the cores;
shared fixtures."""

import json
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def seh_reference() -> list[dict]:
    """The sEH reference values: molecules with the reference proxy output, QED, SA and MW
    (provenance in tests/data/README.md)."""
    return json.loads((Path(__file__).parent / "data" / "seh_reference_values.json").read_text())

"""Wide action rows (the 6,931 fragment actions) are drawn by inverse CDF: the same masked,
tempered, epsilon-mixed distribution as the exponential race, never a masked action."""

import pytest
import torch

from gflow.guards import LogitsError
from gflow.sampling import INVERSE_CDF_WIDTH, sample_actions

WIDTH = INVERSE_CDF_WIDTH + 500


def wide_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows with a handful of legal actions spread over a wide layout (first, last, middle)."""
    logits = torch.randn(2, WIDTH)
    mask = torch.zeros(2, WIDTH, dtype=torch.bool)
    mask[0, [0, 7, 900, WIDTH - 1]] = True
    mask[1, [3, 1200, 1300]] = True
    logits[0, [0, 7, 900, WIDTH - 1]] = torch.tensor([0.0, 1.0, 2.0, -1.0])
    logits[1, [3, 1200, 1300]] = torch.tensor([3.0, 0.0, 0.5])
    return logits, mask


def test_wide_rows_draw_the_masked_epsilon_mixture():
    torch.manual_seed(1)
    logits, mask = wide_rows()
    n = 30_000
    for temperature, epsilon in [(1.0, 0.0), (2.0, 0.3)]:
        rows = sample_actions(logits.repeat(n, 1), mask.repeat(n, 1), temperature, epsilon)
        freq = torch.stack([torch.bincount(rows[i::2], minlength=WIDTH) / n for i in range(2)])
        probs = torch.where(mask, logits / temperature, -torch.inf).softmax(1)
        probs = (1 - epsilon) * probs + epsilon * mask / mask.sum(1, keepdim=True)
        assert (freq[~mask] == 0).all()
        assert torch.allclose(freq, probs, atol=0.012)


def test_wide_rows_with_nan_logits_raise():
    logits, mask = wide_rows()
    logits[1, 1200] = float("nan")
    with pytest.raises(LogitsError, match="NaN at legal action 1200 of row 1"):
        sample_actions(logits, mask, output="forward logits")


def test_a_draw_rounded_past_the_end_takes_the_last_legal_action(monkeypatch):
    logits, mask = wide_rows()
    monkeypatch.setattr(torch, "rand_like", torch.ones_like)  # U * total == total
    assert sample_actions(logits, mask).tolist() == [WIDTH - 1, 1300]

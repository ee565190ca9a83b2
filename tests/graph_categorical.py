"""A batched categorical over the legal actions of a dense graph action layout, per graph: used
by the tests to check layouts against a per-graph reference (the library samples with
`gflow.sampling.sample_actions` directly)."""

from __future__ import annotations

import torch

from gflow.sampling import masked_log_softmax, sample_actions


class GraphCategorical:
    """One categorical per graph over the legal actions of its dense layout row."""

    def __init__(self, logits: torch.Tensor, mask: torch.Tensor):
        if logits.shape != mask.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and mask {tuple(mask.shape)} differ")
        if not mask.any(dim=1).all():
            raise ValueError("every graph needs at least one legal action")
        self.logits = logits
        self.mask = mask
        self.log_probs = masked_log_softmax(logits, mask)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """(n,) log-probability of one action per graph."""
        return self.log_probs.gather(1, actions[:, None]).squeeze(1)

    def entropy(self) -> torch.Tensor:
        """(n,) entropy in nats of each graph's action distribution."""
        probs = self.log_probs.exp()
        return -(probs * self.log_probs).masked_fill(~self.mask, 0.0).sum(1)

    def sample(self, temperature: float = 1.0, epsilon: float = 0.0) -> torch.Tensor:
        """(n,) one legal action per graph, at a temperature and with epsilon-uniform mixing."""
        return sample_actions(self.logits, self.mask, temperature, epsilon)

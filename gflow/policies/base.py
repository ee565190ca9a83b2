"""What every policy returns: forward logits, backward logits, state log-flow, and log Z."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gflow.factored import ForwardLogits


@dataclass
class PolicyOutput:
    """Model outputs for a batch of states."""

    forward_logits: ForwardLogits
    """(n, n_actions) unnormalized log P_F (log edge flows for flow matching), or a factored
    head's output (`gflow.factored.FactoredLogits`)."""
    backward_logits: torch.Tensor | None
    """(n, n_backward) unnormalized log P_B; None means a uniform backward policy."""
    log_flow: torch.Tensor
    """(n,) log F(s) (or log F~(s) for forward-looking objectives)."""


class OutputRecorder:
    """Records a policy's forward passes during one rollout (no gradients) and gives them back as
    outputs with gradients, as if the policy had run once on every recorded row."""

    uniform_pb: bool = False
    """Whether the policy's P_B is uniform (no backward head), so that its outputs at a forced
    stop matter only through its flow and the sampler may leave such states out
    (`gflow.sampling.sample_forward`'s `record_forced_stops`)."""

    def forward_logits(
        self, features: torch.Tensor, cond: torch.Tensor | None = None
    ) -> ForwardLogits:
        """The policy's forward logits, recording what `outputs` needs."""
        raise NotImplementedError

    def outputs(self) -> PolicyOutput | None:
        """Outputs for every recorded row, in call order, differentiable in the policy's
        parameters; None when they cannot be given (scoring then runs the policy)."""
        raise NotImplementedError


class Policy(nn.Module):
    """Base class: `forward(features, cond)` gives a PolicyOutput, `log_z(cond, n)` gives log Z."""

    spec: Any = None
    """How `gflow.policies.registry.build_policy` made this policy (a PolicySpec), recorded in
    checkpoints so that `load_policy` can rebuild it; None for a policy built by hand."""

    def forward(self, features: torch.Tensor, cond: torch.Tensor | None = None) -> PolicyOutput:
        """Outputs for a batch of featurized states, with optional conditioning (n, c)."""
        raise NotImplementedError

    def forward_logits(
        self, features: torch.Tensor, cond: torch.Tensor | None = None
    ) -> ForwardLogits:
        """Only the forward logits, which is all that sampling needs; subclasses may override it
        to skip their other heads."""
        return self(features, cond).forward_logits

    def log_z(self, cond: torch.Tensor | None, n: int) -> torch.Tensor:
        """(n,) log Z, conditional on `cond` when given."""
        raise NotImplementedError

    def recorder(self) -> OutputRecorder | None:
        """A recorder of what this policy computes while sampling, so that scoring can reuse it
        instead of a second forward pass; None (the default) when the policy has none."""
        return None

    def log_z_parameters(self) -> list[nn.Parameter]:
        """Parameters of log Z, which usually train with a larger learning rate."""
        raise NotImplementedError

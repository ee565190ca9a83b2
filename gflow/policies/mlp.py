"""MLP policy for tensor states, with optional conditioning concatenated to the input."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gflow.policies.base import OutputRecorder, Policy, PolicyOutput

SLOPE = 0.01
"""Negative slope of the leaky ReLU (torch's default, as `nn.LeakyReLU` uses)."""


def mlp(sizes: list[int], activation: type[nn.Module] = nn.LeakyReLU) -> nn.Sequential:
    """Linear layers of the given sizes with an activation between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPPolicy(Policy):
    """A shared MLP trunk with forward, backward and flow heads; log Z is a parameter or an MLP of
    the conditioning."""

    def __init__(
        self,
        feature_dim: int,
        n_actions: int,
        n_backward: int,
        hidden: int = 256,
        layers: int = 2,
        cond_dim: int = 0,
        learn_pb: bool = False,
    ):
        super().__init__()
        self.cond_dim = cond_dim
        self.trunk = nn.Sequential(
            mlp([feature_dim + cond_dim] + [hidden] * layers), nn.LeakyReLU()
        )
        self._trunk_linears = tuple(m for m in self.trunk.modules() if isinstance(m, nn.Linear))
        self.forward_head = nn.Linear(hidden, n_actions)
        self.backward_head = nn.Linear(hidden, n_backward) if learn_pb else None
        self.flow_head = nn.Linear(hidden, 1)
        if cond_dim:
            self.log_z_net = mlp([cond_dim, hidden, 1])
        else:
            self.log_z_param = nn.Parameter(torch.zeros(1))

    def _input(self, features: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The trunk's input: the features, with the conditioning concatenated when conditional."""
        if not self.cond_dim:
            return features
        if cond is None:
            raise ValueError("this policy is conditional: pass a conditioning tensor")
        return torch.cat([features, cond.to(features.dtype)], dim=1)

    def _hidden(self, features: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The shared trunk's output, conditioning concatenated to the input.

        This is `self.trunk(features)` (each Linear followed by a leaky ReLU) applied layer by
        layer with functional calls: sampling runs it once per step on a handful of rows, where
        the per-module call overhead would be a fifth of the time.
        """
        h = self._input(features, cond)
        for linear in self._trunk_linears:
            h = F.leaky_relu(F.linear(h, linear.weight, linear.bias), SLOPE)
        return h

    def _heads(self, h: torch.Tensor) -> PolicyOutput:
        """The three heads on the trunk's output."""
        return PolicyOutput(
            forward_logits=self.forward_head(h),
            backward_logits=None if self.backward_head is None else self.backward_head(h),
            log_flow=self.flow_head(h).squeeze(1),
        )

    def forward(self, features: torch.Tensor, cond: torch.Tensor | None = None) -> PolicyOutput:
        return self._heads(self._hidden(features, cond))

    def forward_logits(
        self, features: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Forward logits alone: the trunk and the forward head, no other head."""
        head = self.forward_head
        return F.linear(self._hidden(features, cond), head.weight, head.bias)

    def recorder(self) -> OutputRecorder | None:
        """Records the trunk's activations while sampling; scoring reuses them (see
        `_TrunkRecorder`). None for a subclass that computes its outputs differently."""
        cls = type(self)
        if (cls.forward, cls.forward_logits) != (MLPPolicy.forward, MLPPolicy.forward_logits):
            return None
        return _TrunkRecorder(self)

    def log_z(self, cond: torch.Tensor | None, n: int) -> torch.Tensor:
        if self.cond_dim:
            return self.log_z_net(cond).squeeze(1)
        return self.log_z_param.expand(n)

    def log_z_parameters(self) -> list[nn.Parameter]:
        """Parameters of log Z, which usually train with a larger learning rate."""
        return list(self.log_z_net.parameters()) if self.cond_dim else [self.log_z_param]


class _TrunkRecorder(OutputRecorder):
    """Keeps every layer's activations of the sampling-time forward passes. `outputs` returns
    the heads on the recorded trunk output, whose gradient flows to the trunk's parameters
    through `_RecordedTrunk`: one batched backward pass over all recorded rows, with no second
    forward pass. The values are the sampling pass's, equal to a fresh pass's up to float
    rounding (matrix products over a few rows or over all of them round differently)."""

    def __init__(self, policy: MLPPolicy):
        self.policy = policy
        self.uniform_pb = policy.backward_head is None
        self.layers: list[list[torch.Tensor]] = [[] for _ in range(len(policy._trunk_linears) + 1)]
        # (bias, weight.T) of the trunk's layers and the forward head: `F.linear` is this addmm,
        # less the transpose it would make at every step
        linears = (*policy._trunk_linears, policy.forward_head)
        self.affine = [(linear.bias, linear.weight.t()) for linear in linears]

    def forward_logits(
        self, features: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.policy._input(features, cond)
        self.layers[0].append(h)
        for (bias, weight), kept in zip(self.affine[:-1], self.layers[1:], strict=True):
            h = F.leaky_relu(torch.addmm(bias, h, weight), SLOPE)
            kept.append(h)
        bias, weight = self.affine[-1]
        return torch.addmm(bias, h, weight)

    def outputs(self) -> PolicyOutput | None:
        if not self.layers[0]:
            return None
        activations = [torch.cat(kept) for kept in self.layers]
        params = [p for linear in self.policy._trunk_linears for p in (linear.weight, linear.bias)]
        return self.policy._heads(_RecordedTrunk.apply(activations, *params))


class _RecordedTrunk(torch.autograd.Function):
    """The trunk's recorded output as a function of its parameters: forward returns the recorded
    values, backward differentiates the leaky-ReLU MLP through the recorded activations."""

    @staticmethod
    def forward(ctx: Any, activations: list[torch.Tensor], *params: torch.Tensor) -> torch.Tensor:
        ctx.activations = activations
        ctx.save_for_backward(*params)
        return activations[-1].clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        acts, params = ctx.activations, ctx.saved_tensors
        grads: list[torch.Tensor | None] = [None] * len(params)
        for i in reversed(range(len(params) // 2)):
            grad = torch.ops.aten.leaky_relu_backward(grad, acts[i + 1], SLOPE, True)
            grads[2 * i] = grad.T @ acts[i]
            grads[2 * i + 1] = grad.sum(0)
            if i:
                grad = grad @ params[2 * i]
        return (None, *grads)

"""The padded batch of scored trajectories that every objective reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALWAYS_SCORED = ("log_pf", "log_pb", "log_flows", "log_z", "log_reward")
"""What `gflow.scoring.score` computes for every batch; an objective may name these in its
needs too, and nothing extra is computed for them."""
OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "edge_flows": ("log_inflow", "log_outflow", "log_stop_flow"),
    "energies": ("energy", "log_pf_stop", "can_stop"),
    "forward_looking_flows": ("energy", "log_pf_stop", "can_stop"),
    "reward_components": ("reward_components",),
    "backward_kl": ("backward_kl",),
}
"""Each optional need and the `Trajectories` fields that scoring fills for it (None otherwise).
``forward_looking_flows`` also reads the flow head as log F~(s) and makes the state flows
log F(s) = log F~(s) - E(s) (Pan et al. 2023); it brings the ``energies`` fields with it."""
NEEDS = frozenset(ALWAYS_SCORED) | frozenset(OPTIONAL_FIELDS)
"""Every name an objective may declare in its needs."""
FORCED_STOP_FREE = frozenset({"log_pf", "log_pb", "log_z", "log_reward", "reward_components"})
"""Needs that read nothing of the policy at a forced stop (a state whose only legal action is
stop: log P_F(stop) = 0 there) under a uniform P_B. Training on an objective whose needs all lie
here skips the policy at forced stops, whose `log_flow` is then NaN: an objective that reads
state flows names ``log_flows`` in its needs."""


@dataclass
class Trajectories:
    """B trajectories padded to T transitions, with model outputs along them.

    Transition t goes from s_t to s_{t+1}; a complete trajectory's last transition is the
    stop action, and its flow position `lengths` holds log R(x) (the flow into the sink).
    Padded entries are zero; `transition_mask` and `flow_mask` say which are real.
    """

    log_pf: torch.Tensor
    """(B, T) log P_F(s_{t+1} | s_t)."""
    log_pb: torch.Tensor
    """(B, T) log P_B(s_t | s_{t+1}); 0 on the stop transition."""
    log_flow: torch.Tensor
    """(B, T+1) log F(s_t): log Z at t=0, log R(x) at t=length for complete trajectories;
    NaN at forced stops for objectives that do not need ``log_flows`` (`FORCED_STOP_FREE`)."""
    log_z: torch.Tensor
    """(B,) log Z (conditional when conditioning is given)."""
    log_reward: torch.Tensor
    """(B,) log R(x) of complete trajectories (0 for incomplete ones)."""
    lengths: torch.Tensor
    """(B,) number of transitions, the stop included."""
    done: torch.Tensor
    """(B,) bool: the trajectory ended with stop."""
    cond: torch.Tensor | None = None
    """(B, c) conditioning, if any."""
    log_inflow: torch.Tensor | None = None
    """(B, T+1) log sum of edge flows into s_t (need ``edge_flows``)."""
    log_outflow: torch.Tensor | None = None
    """(B, T+1) log sum of edge flows out of s_t, the stop edge included (need ``edge_flows``)."""
    log_stop_flow: torch.Tensor | None = None
    """(B,) log edge flow x -> sink of complete trajectories (need ``edge_flows``)."""
    energy: torch.Tensor | None = None
    """(B, T+1) E(s_t) at real states, 0 elsewhere (need ``energies``)."""
    log_pf_stop: torch.Tensor | None = None
    """(B, T+1) log P_F(stop | s_t) where `can_stop`, 0 elsewhere (need ``energies``)."""
    can_stop: torch.Tensor | None = None
    """(B, T+1) bool: s_t is a real state where stop is legal (need ``energies``)."""
    reward_components: torch.Tensor | None = None
    """(B, k) reward components of each complete trajectory's object, larger is better (the
    single component log R(x) unless the environment has several); rows of incomplete
    trajectories are meaningless (need ``reward_components``)."""
    backward_kl: torch.Tensor | None = None
    """(B, T+1) KL(uniform || P_B(. | s_t)) at real states with parents, 0 elsewhere
    (need ``backward_kl``)."""

    def require(self, need: str, reader: str) -> tuple[torch.Tensor, ...]:
        """The fields scoring fills for `need`, in `OPTIONAL_FIELDS` order; a clear error naming
        `reader` unless this batch was scored with `need`."""
        values = tuple(getattr(self, name) for name in OPTIONAL_FIELDS[need])
        if any(value is None for value in values):
            raise ValueError(
                f"{reader} reads {need}: score the batch with needs={{{need!r}}} "
                "(an objective's `needs`)"
            )
        return values

    @property
    def transition_mask(self) -> torch.Tensor:
        """(B, T) bool: which transitions are real."""
        steps = torch.arange(self.log_pf.shape[1], device=self.lengths.device)
        return steps < self.lengths[:, None]

    @property
    def flow_mask(self) -> torch.Tensor:
        """(B, T+1) bool: which flow positions are real."""
        steps = torch.arange(self.log_flow.shape[1], device=self.lengths.device)
        return steps <= self.lengths[:, None]

    @property
    def state_mask(self) -> torch.Tensor:
        """(B, T+1) bool: which flow positions hold real states (the sink position excluded)."""
        steps = torch.arange(self.log_flow.shape[1], device=self.lengths.device)
        return self.flow_mask & ~(self.done[:, None] & (steps == self.lengths[:, None]))

    @property
    def log_r_theta(self) -> torch.Tensor:
        """(B,) the reward the model implies for each complete trajectory (TB form)."""
        return self.log_z + ((self.log_pf - self.log_pb) * self.transition_mask).sum(1)

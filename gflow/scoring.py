"""Turn a rollout into the log-probabilities and flows that objectives read, in one model pass."""

from __future__ import annotations

from collections.abc import Collection

import torch

from gflow.env import Env
from gflow.factored import dense_only
from gflow.policies.base import Policy
from gflow.sampling import (
    Rollout,
    masked_log_softmax,
    recorded_outputs,
    taken_log_probs,
)
from gflow.segment import segment_logsumexp
from gflow.trajectories import NEEDS, Trajectories


def _pad(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scatter values given in step-major order of `mask` (B, T+1) into a padded (B, T+1) grid."""
    grid = values.new_zeros(mask.shape[1], mask.shape[0])
    grid[mask.T] = values
    return grid.T


def _per_state(cond: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor | None:
    """Conditioning repeated for every real state, in step-major order."""
    if cond is None:
        return None
    rows = torch.arange(mask.shape[0], device=mask.device).expand(mask.shape[1], -1)
    return cond[rows[mask.T]]


def score(
    env: Env, policy: Policy, rollout: Rollout, needs: Collection[str] = frozenset()
) -> Trajectories:
    """Evaluate the policy on every state of the rollout and assemble a Trajectories batch with
    the always-scored fields and the optional `needs` (an objective's `needs`; names in
    `gflow.trajectories.OPTIONAL_FIELDS`).

    With ``forward_looking_flows``, the flow head is read as log F~(s) and the state flows
    become log F(s) = log F~(s) - E(s) (Pan et al. 2023); log Z at s0 and log R(x) at the sink
    stay as they are, so log Z keeps estimating the partition function.
    """
    if needs and not NEEDS.issuperset(needs):
        unknown = sorted(set(needs) - NEEDS)
        raise ValueError(f"unknown needs {unknown}; known: {', '.join(sorted(NEEDS))}")
    forward_looking = "forward_looking_flows" in needs
    if forward_looking and "edge_flows" in needs:
        raise ValueError("flow matching has no forward-looking form; choose one of the two")
    mask = rollout.state_mask
    n, width = mask.shape
    cond_rows = _per_state(rollout.cond, mask)
    # outputs recorded while sampling (sample_forward(keep_outputs=True)) replace a second pass
    out = recorded_outputs(policy, rollout) or policy(env.featurize(rollout.states), cond_rows)
    fwd_mask = env.forward_mask(rollout.states)
    steps = width - 1
    transition = torch.arange(steps, device=mask.device) < rollout.lengths[:, None]
    no_action = rollout.actions.new_full((n, 1), -1)
    actions = _per_row(rollout.actions, no_action, mask)
    energy = _energies(env, rollout) if forward_looking or "energies" in needs else None
    if energy is None:
        taken = taken_log_probs(out.forward_logits, fwd_mask, actions)
    else:  # log P_F(stop) too, from the same softmax
        stop = torch.full_like(actions, env.stop)
        taken, log_pf_stop = taken_log_probs(
            out.forward_logits, fwd_mask, torch.stack([actions, stop], 1)
        ).unbind(1)
    log_pf = torch.where(transition, _pad(taken, mask)[:, :steps], 0.0)

    moved = rollout.backward_actions >= 0
    bwd_mask = env.backward_mask(rollout.states)
    if out.backward_logits is None:
        counts = bwd_mask.sum(1).clamp(min=1).float()
        child_logp = _pad(-counts.log(), mask)[:, 1:]
    else:
        back = _per_row(rollout.backward_actions, no_action, mask, first=True)
        child_logp = _pad(taken_log_probs(out.backward_logits, bwd_mask, back), mask)[:, 1:]
    log_pb = torch.where(moved, child_logp, 0.0)

    log_z = policy.log_z(rollout.cond, n)
    log_flow = _pad(out.log_flow, mask)
    if forward_looking and energy is not None:
        log_flow = log_flow - energy
    log_flow = torch.cat([log_z[:, None], log_flow[:, 1:]], dim=1)
    ends = rollout.lengths.clamp(max=steps)
    terminal_flow = torch.where(rollout.done, rollout.log_reward, log_flow[torch.arange(n), ends])
    log_flow = log_flow.scatter(1, ends[:, None], terminal_flow[:, None])

    traj = Trajectories(
        log_pf=log_pf,
        log_pb=log_pb,
        log_flow=log_flow,
        log_z=log_z,
        log_reward=rollout.log_reward,
        lengths=rollout.lengths,
        done=rollout.done,
        cond=rollout.cond,
    )
    if not needs:
        return traj
    if "edge_flows" in needs:
        logits = dense_only(out.forward_logits, "flow matching")
        _add_edge_flows(env, policy, rollout, logits, cond_rows, traj)
    if energy is not None:
        stoppable = fwd_mask[:, env.stop]
        traj.energy = energy
        traj.can_stop = _pad(stoppable, mask)
        traj.log_pf_stop = _pad(torch.where(stoppable, log_pf_stop, 0.0), mask)
    if "reward_components" in needs:
        traj.reward_components = _reward_components(env, rollout)
    if "backward_kl" in needs:
        traj.backward_kl = _pad(_uniform_kl(out.backward_logits, bwd_mask), mask)
    return traj


def _energies(env: Env, rollout: Rollout) -> torch.Tensor:
    """(B, T+1) E(s_t) at real states, checked finite and equal to -log R(x) on objects."""
    if not env.has_energy():
        raise ValueError(
            f"{type(env).__name__} defines no intermediate energy; "
            "forward-looking objectives need env.energy"
        )
    values = env.energy(rollout.states).float()
    if not torch.isfinite(values).all():
        raise ValueError("forward-looking objectives need a finite energy on every visited state")
    energy = _pad(values, rollout.state_mask)
    done = rollout.done
    last = energy[done, rollout.lengths[done] - 1]
    target = -rollout.log_reward[done]
    if not torch.allclose(last, target, rtol=1e-4, atol=1e-4):
        raise ValueError(
            "env.energy(x) differs from -log R(x) on terminal states (max gap "
            f"{float((last - target).abs().max()):.3g}); forward-looking objectives need them equal"
        )
    return energy


def _reward_components(env: Env, rollout: Rollout) -> torch.Tensor:
    """(B, k) reward components of complete trajectories' objects (zero rows for incomplete
    ones); the default single component reuses the rollout's log R instead of evaluating it."""
    if type(env).reward_components is Env.reward_components:
        return rollout.log_reward[:, None].clone()
    done = rollout.done
    values = env.reward_components(env.select(rollout.terminal, done)).float()
    if values.dim() != 2:
        raise ValueError(
            f"env.reward_components must return (n, k), got shape {tuple(values.shape)}"
        )
    table = values.new_zeros(len(done), values.shape[1])
    table[done] = values
    return table


def _uniform_kl(logits: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """KL(uniform || softmax(logits)) over the legal entries of each row; 0 without logits or
    legal entries."""
    if logits is None:
        return torch.zeros(len(mask), device=mask.device)
    log_p = masked_log_softmax(logits, mask)
    count = mask.sum(1)
    mean_log_p = torch.where(mask, log_p, 0.0).sum(1) / count.clamp(min=1)
    kl = -count.clamp(min=1).float().log() - mean_log_p
    return torch.where(count > 0, kl, 0.0)


def _per_row(
    actions: torch.Tensor, none: torch.Tensor, mask: torch.Tensor, first: bool = False
) -> torch.Tensor:
    """(N,) the action of each real state in step-major order, from a (B, T) grid: the action
    taken at s_t, or with `first` the one that reached s_t (backward actions); -1 where none."""
    grid = torch.cat([none, actions] if first else [actions, none], dim=1)
    return grid.T[mask.T]


def _add_edge_flows(
    env: Env,
    policy: Policy,
    rollout: Rollout,
    logits: torch.Tensor,
    cond_rows: torch.Tensor | None,
    traj: Trajectories,
) -> None:
    """Fill in-flows, out-flows and stop-edge flows, reading forward logits as log edge flows."""
    mask = rollout.state_mask
    fwd_mask = env.forward_mask(rollout.states)
    edge = logits.masked_fill(~fwd_mask, float("-inf"))
    traj.log_outflow = _pad(edge.logsumexp(1), mask)

    bwd_mask = env.backward_mask(rollout.states)
    child, back = bwd_mask.nonzero(as_tuple=True)
    parents = env.backward_step(env.select(rollout.states, child), back)
    parent_action = env.forward_action(env.select(rollout.states, child), back)
    parent_cond = None if cond_rows is None else cond_rows[child]
    parent_logits = dense_only(
        policy(env.featurize(parents), parent_cond).forward_logits, "flow matching"
    )
    flows = parent_logits.gather(1, parent_action[:, None]).squeeze(1)
    traj.log_inflow = _pad(segment_logsumexp(flows, child, len(logits)), mask)

    stop_flow = _pad(logits[:, env.stop], mask)
    n = mask.shape[0]
    last = (rollout.lengths - 1).clamp(min=0)
    traj.log_stop_flow = stop_flow[torch.arange(n), last] * rollout.done

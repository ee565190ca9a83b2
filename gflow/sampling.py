"""Roll out batches of trajectories: forward from s0 under a policy, or backward from objects."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gflow.env import Env, States
from gflow.factored import (
    FactoredLogits,
    ForwardLogits,
    dense_only,
    select_logits,
    spread_logits,
)
from gflow.guards import LogitsError, check_log_reward, logits_error
from gflow.policies.base import OutputRecorder, Policy, PolicyOutput
from gflow.tabular import StateTable, TableWalk


@dataclass
class Rollout:
    """Raw trajectories: every real state once, in step-major order, and the actions between."""

    states: States
    """All real states s_t, ordered by step t then trajectory index (as `state_mask` is true)."""
    state_mask: torch.Tensor
    """(B, T+1) bool: s_t exists (t < length, or t == length for an incomplete trajectory)."""
    actions: torch.Tensor
    """(B, T) forward actions, -1 where padded."""
    backward_actions: torch.Tensor
    """(B, T) backward actions undoing them, -1 on the stop transition and where padded."""
    lengths: torch.Tensor
    """(B,) number of transitions, the stop included."""
    done: torch.Tensor
    """(B,) bool: ended with stop."""
    terminal: States
    """The last real state of each trajectory (the object x when done)."""
    log_reward: torch.Tensor
    """(B,) log R(x); 0 for incomplete trajectories."""
    cond: torch.Tensor | None = None
    """(B, c) conditioning used to sample, if any."""
    recorded: RecordedOutputs | None = None
    """The policy's outputs on `states` as computed while sampling (`sample_forward` with
    `keep_outputs`), which scoring reuses instead of a second forward pass."""


@dataclass
class RecordedOutputs:
    """What a policy computed on a rollout's states while sampling, and what it was computed
    from: valid while the policy, its parameters, the states and the conditioning are the same."""

    policy: Policy
    recorder: OutputRecorder
    versions: list[int]
    states: States
    cond: torch.Tensor | None
    index: torch.Tensor | None = None
    """(N,) the recorded row of each state, when the sampler evaluated distinct states once."""


def _versions(policy: Policy) -> list[int]:
    """In-place modification counters of the policy's parameters (an optimizer step bumps them)."""
    return [p._version for p in policy.parameters()]


def recorded_outputs(policy: Policy, rollout: Rollout) -> PolicyOutput | None:
    """The outputs `policy` gave on the rollout's states while sampling it, differentiable in its
    parameters, when they are still what a forward pass would give: same policy, parameters not
    modified in place since (as their version counters tell; a fused optimizer step does not
    bump them, hence the next point), same states and conditioning (not one needing gradients);
    None otherwise. The record is used once: this drops it from the rollout, so a batch scored
    again, after an optimizer step say, is scored by a fresh forward pass."""
    rec, rollout.recorded = rollout.recorded, None
    if rec is None or rec.policy is not policy or rec.states is not rollout.states:
        return None
    cond = rollout.cond
    if rec.cond is not cond or (cond is not None and cond.requires_grad):
        return None
    if rec.versions != _versions(policy):
        return None
    out = rec.recorder.outputs()
    if out is None or rec.index is None:
        return out
    i = rec.index
    if bool((i < 0).any()):  # forced stops the policy skipped: stand-ins (`sample_forward`)
        return _with_stand_ins(out, i)
    back = None if out.backward_logits is None else out.backward_logits[i]
    return PolicyOutput(select_logits(out.forward_logits, i), back, out.log_flow[i])


def _with_stand_ins(out: PolicyOutput, index: torch.Tensor) -> PolicyOutput:
    """The outputs of every state from those of the evaluated ones (`index` >= 0 gives the
    row) and stand-ins at the rest: zero forward logits, NaN log-flow (a uniform P_B only)."""
    if out.backward_logits is not None:
        raise RuntimeError("a recorder for a learned P_B must record every state")
    rows = (index >= 0).nonzero().squeeze(1)
    kept = index[rows]
    flow = out.log_flow.new_full((len(index),), float("nan")).index_copy(
        0, rows, out.log_flow[kept]
    )
    return PolicyOutput(spread_logits(select_logits(out.forward_logits, kept), rows, len(index)),
                        None, flow)


def legal_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-softmax over each row's legal entries (-inf elsewhere); a row with none gets the
    log-softmax of its raw logits (finite, so its gradients are too; it has no action to score)."""
    legal = logits.masked_fill(~mask, float("-inf"))
    empty = ~mask.any(dim=-1, keepdim=True)
    if bool(empty.any()):
        legal = torch.where(empty, logits, legal)
    return legal.log_softmax(dim=-1)


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-softmax over legal entries; illegal entries get -inf, rows with none get 0."""
    out = legal_log_softmax(logits, mask)
    return torch.where(mask.any(dim=-1, keepdim=True), out, torch.zeros_like(out))


INVERSE_CDF_WIDTH = 1024
"""Rows with more actions than this are drawn by inverse CDF (one uniform per row) rather than
the exponential race (one exponential per action, which dominates on wide layouts such as the
6,931 fragment actions)."""


_NEG_INF = torch.tensor(float("-inf"))
"""-inf as a zero-dimensional tensor (any device, the other operand's dtype): `torch.where`
takes it without making a tensor of a Python float at every call."""


def _policy_probs(
    logits: torch.Tensor, mask: torch.Tensor, temperature: float, epsilon: float
) -> torch.Tensor:
    """The masked, tempered, epsilon-mixed policy p."""
    if temperature != 1.0:
        logits = logits / temperature
    probs = torch.where(mask, logits, _NEG_INF).softmax(dim=-1)
    if epsilon > 0:
        uniform = mask / mask.sum(dim=-1, keepdim=True)
        probs = (1 - epsilon) * probs + epsilon * uniform
    return probs


def _race(
    logits: torch.Tensor, mask: torch.Tensor, temperature: float, epsilon: float
) -> torch.Tensor:
    """p_i / E_i with p the masked, tempered, epsilon-mixed policy and E_i ~ Exp(1): its argmax
    is a draw from p."""
    probs = _policy_probs(logits, mask, temperature, epsilon)
    return probs.div_(torch.empty_like(probs).exponential_())


def _inverse_cdf(
    logits: torch.Tensor, mask: torch.Tensor, temperature: float, epsilon: float, output: str
) -> torch.Tensor:
    """A draw from p by inverse CDF: the first action whose cumulative probability exceeds
    U * total, U ~ U[0, 1); only actions with p > 0 can be drawn (a rounding overshoot past the
    end takes the last legal action)."""
    cdf = _policy_probs(logits, mask, temperature, epsilon).cumsum(dim=-1)
    total = cdf[:, -1:]
    if math.isnan(float(total.sum())):
        error = logits_error(logits, mask, output)
        raise error if error is not None else LogitsError(f"the {output} give NaN probabilities")
    drawn = torch.searchsorted(cdf, torch.rand_like(total) * total, right=True).squeeze(1)
    over = (drawn == mask.shape[-1]).nonzero().squeeze(1)
    if len(over):  # U * total rounded up to total: rare, so the dense search runs on these rows
        drawn[over] = mask.shape[-1] - 1 - mask[over].flip(-1).int().argmax(dim=-1)
    return drawn


def sample_actions(
    logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
    epsilon: float = 0.0,
    output: str = "logits",
) -> torch.Tensor:
    """Draw one legal action per row from softmax(logits / temperature), epsilon-mixed with uniform.

    Every row needs a legal action (`gflow.check_env` verifies this). The draw is an exponential
    race, argmax_i p_i / E_i with E_i ~ Exp(1), which picks i with probability p_i: the draw
    `torch.multinomial(probs, 1)` makes, without its per-call validation passes. A masked action
    is never drawn: NaN or +inf logits at a legal action raise `gflow.guards.LogitsError` naming
    `output` (one NaN test per call: the race's sum, NaN exactly when an entry is). Rows wider
    than `INVERSE_CDF_WIDTH` are drawn by inverse CDF instead (the same distribution).
    """
    if mask.shape[-1] > INVERSE_CDF_WIDTH:
        return _inverse_cdf(logits, mask, temperature, epsilon, output)
    race = _race(logits, mask, temperature, epsilon)
    if math.isnan(float(race.sum())):
        error = logits_error(logits, mask, output)
        if error is not None:
            raise error
        race = race.nan_to_num(nan=0.0)  # an Exp(1) draw of exactly 0 at a masked action
    return race.argmax(dim=-1)


def draw_forward(
    logits: ForwardLogits, mask: torch.Tensor, temperature: float = 1.0, epsilon: float = 0.0
) -> torch.Tensor:
    """Flat forward actions drawn from dense logits (`sample_actions`) or from a factored head:
    the coarse action among the legal ones, then, for coarse node actions, the fine choice among
    its legal ones from the fine logits of those rows alone. `temperature` and `epsilon` apply
    to each level."""
    if not isinstance(logits, FactoredLogits):
        return sample_actions(logits, mask, temperature, epsilon, "forward logits")
    layout = logits.layout
    coarse = sample_actions(
        logits.coarse, layout.coarse_mask(mask), temperature, epsilon, "forward logits"
    )
    fine = torch.zeros_like(coarse)
    rows = layout.is_node(coarse).nonzero().squeeze(1)
    if len(rows):
        picked = coarse[rows]
        fine_mask = layout.fine_mask(mask, rows, picked)
        fine[rows] = sample_actions(
            logits.fine(rows, picked), fine_mask, temperature, epsilon, "fine forward logits"
        )
    return layout.join(coarse, fine)


def taken_log_probs(
    logits: ForwardLogits, mask: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """(n,) log P_F of each row's flat action under the legal-entry softmax (of each level, for a
    factored head), 0 for rows whose action is -1 (none); (n, k) for (n, k) actions, k actions
    of each row read from one softmax."""
    columns = actions if actions.dim() == 2 else actions[:, None]
    if isinstance(logits, FactoredLogits):
        coarse = legal_log_softmax(logits.coarse, logits.layout.coarse_mask(mask))
        log_p = torch.stack([_factored_log_probs(logits, mask, coarse, a) for a in columns.T], 1)
    else:
        log_p = legal_log_softmax(logits, mask).gather(1, columns.clamp(min=0))
    log_p = torch.where(columns >= 0, log_p, 0.0)
    return log_p if actions.dim() == 2 else log_p.squeeze(1)


def _factored_log_probs(
    logits: FactoredLogits, mask: torch.Tensor, coarse_log_p: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """(n,) log P(coarse) + log P(fine | coarse) of flat actions (-1 rows read entry 0), from the
    coarse level's legal log-softmax `coarse_log_p`."""
    layout = logits.layout
    coarse, fine = layout.split(actions.clamp(min=0))
    log_p = _pick(coarse_log_p, coarse)
    rows = ((fine >= 0) & (actions >= 0)).nonzero().squeeze(1)
    if len(rows):
        picked = coarse[rows]
        fine_log_p = legal_log_softmax(
            logits.fine(rows, picked), layout.fine_mask(mask, rows, picked)
        )
        log_p = log_p.index_add(0, rows, _pick(fine_log_p, fine[rows]))
    return log_p


def _pick(log_probs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """(n,) each row's entry at its action (rows with action -1 read entry 0)."""
    return log_probs.gather(1, actions.clamp(min=0)[:, None]).squeeze(1)


def dense_log_probs(logits: ForwardLogits, mask: torch.Tensor) -> torch.Tensor:
    """(n, n_actions) log P_F of every flat action as `masked_log_softmax` gives it (-inf where
    illegal, rows with no legal action 0); a factored head's fine logits are evaluated at every
    legal coarse node action, so this is for small batches (exact evaluation)."""
    if not isinstance(logits, FactoredLogits):
        return masked_log_softmax(logits, mask)
    layout = logits.layout
    coarse = masked_log_softmax(logits.coarse, layout.coarse_mask(mask))
    out = torch.full(mask.shape, float("-inf"), dtype=coarse.dtype, device=mask.device)
    flat = layout.flat
    start, end = flat.node_start, flat.pair_start
    out[:, :start] = coarse[:, :start]
    out[:, end:] = coarse[:, layout.coarse.pair_start :]
    rows, picked = layout.coarse_mask(mask).nonzero(as_tuple=True)
    node = layout.is_node(picked)
    rows, picked = rows[node], picked[node]
    if len(rows):
        fine = legal_log_softmax(
            logits.fine(rows, picked).to(coarse.dtype), layout.fine_mask(mask, rows, picked)
        )
        first = layout.join(picked, torch.zeros_like(picked))
        columns = first[:, None] + torch.arange(layout.fine, device=mask.device)
        out[rows[:, None], columns] = coarse[rows, picked][:, None] + fine
    empty = ~mask.any(dim=-1, keepdim=True)
    return torch.where(empty, torch.zeros_like(out), out)


def _rows(cond: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    return None if cond is None else cond[index]


def terminal_log_reward(env: Env, states: States, cond: torch.Tensor | None) -> torch.Tensor:
    """log R(x) of terminal states; an environment whose `conditional` attribute is true gets
    their conditioning rows too, as `env.log_reward(states, cond)` (a reward R(x | c)). A
    non-finite log R is a `gflow.guards.RewardError` naming the reward and the object."""
    if not env.conditional:
        log_reward = env.log_reward(states)
    elif cond is None:
        raise ValueError(f"{type(env).__name__} has a conditional reward: sample with cond rows")
    else:
        log_reward = env.log_reward(states, cond)  # type: ignore[call-arg]  # conditional env
    check_log_reward(env, states, log_reward)
    return log_reward


@torch.no_grad()
def sample_forward(
    env: Env,
    policy: Policy,
    n: int,
    cond: torch.Tensor | None = None,
    temperature: float = 1.0,
    epsilon: float = 0.0,
    max_steps: int | None = None,
    keep_outputs: bool = False,
    fixed_horizon: bool = False,
    dedupe: bool = False,
    table: StateTable | None = None,
    record_forced_stops: bool = True,
) -> Rollout:
    """Sample `n` trajectories from s0; with `max_steps`, unfinished ones are left incomplete.

    A forced stop, a state whose only legal action is stop, stops without a draw, and the
    policy does not read it unless the record below must cover it: any logits give it
    log P_F = 0 (the fragment benchmark's trajectories end at the size limit, a fifth of the
    rows the policy would read).

    With the environment's `table` (`gflow.tabular.state_table`), the loop walks integer state
    ids, featurizing, masking and stepping by table lookups, and the rollout holds the states
    of those ids: the same draws as without it, in fewer operations per step.

    With `dedupe`, an environment with integer state ids (`Env.has_state_ids`) and no
    conditioning has the policy evaluated once per distinct state at each step (large batches
    revisit the same states: 4,096 hypergrid trajectories pass through under 4,096 states); the
    draws are those of the same logits, computed in a smaller matrix product (equal up to float
    rounding).

    With `fixed_horizon`, an environment that declares a horizon (and no `max_steps`) is sampled
    by `sample_forward_fixed` instead: no host synchronisation inside the loop, for GPUs.

    With `keep_outputs`, a policy that has a recorder (`Policy.recorder`) records its outputs on
    every state as it samples, and the first `gflow.scoring.score` of the rollout reuses them
    instead of running the policy again (`Rollout.recorded`, `recorded_outputs`): on-policy
    training skips the second forward pass. Score such a rollout before changing the policy's
    parameters. The draws are the same either way. The record covers forced stops too unless
    `record_forced_stops` is false; then the policy skips them there as well and the record
    holds stand-ins (zero forward logits, NaN log-flow), exact for objectives whose needs lie in
    `gflow.trajectories.FORCED_STOP_FREE`, with a recorder for a uniform P_B
    (`OutputRecorder.uniform_pb`; otherwise they are recorded all the same).
    """
    if fixed_horizon and env.horizon is not None and max_steps is None:
        return sample_forward_fixed(env, policy, n, cond, temperature, epsilon)
    device = env.device
    recorder = policy.recorder() if keep_outputs else None
    versions = _versions(policy) if recorder is not None else []
    forward_logits = policy.forward_logits if recorder is None else recorder.forward_logits
    walk = env if table is None else TableWalk(env, table)
    dedupe = dedupe and cond is None and walk.has_state_ids()
    skip = recorder is None or (not record_forced_stops and recorder.uniform_pb)
    recorded: list[torch.Tensor] = []
    """Per policy call, the recorded row of each of its states (-1: not evaluated)."""
    evaluated = 0

    def policy_logits(
        state: States, rows: torch.Tensor | None, mask: torch.Tensor
    ) -> tuple[ForwardLogits | None, torch.Tensor | None]:
        """(forward logits of the rows of `state` that are not forced stops, or None when all
        are; those rows, or None when that is every row). The policy reads the forced stops
        too unless `skip`."""
        nonlocal evaluated
        chosen = _with_choice(mask, stop)
        if dedupe:
            first, inverse = _distinct(walk.state_ids(state))
            logits = forward_logits(walk.featurize(walk.select(state, first)), None)
            recorded.append(inverse + evaluated)
            evaluated += len(first)
            return _chosen_logits(select_logits(logits, inverse), chosen), chosen
        if chosen is None or not skip:
            logits = forward_logits(walk.featurize(state), rows)
            recorded.append(torch.arange(evaluated, evaluated + len(mask), device=device))
            evaluated += len(mask)
            return _chosen_logits(logits, chosen), chosen
        row = torch.full((len(mask),), -1, dtype=torch.long, device=device)
        row[chosen] = torch.arange(evaluated, evaluated + len(chosen), device=device)
        recorded.append(row)
        evaluated += len(chosen)
        if not len(chosen):
            return None, chosen
        picked = walk.featurize(walk.select(state, chosen))
        return forward_logits(picked, _rows(rows, chosen)), chosen

    def draw(state: States, rows: torch.Tensor | None) -> torch.Tensor:
        """The actions at `state`: stop at forced stops (no draw), a draw elsewhere."""
        mask = walk.forward_mask(state)
        logits, chosen = policy_logits(state, rows, mask)
        action = torch.full((len(mask),), stop, dtype=torch.long, device=device)
        if logits is None:  # forced stops only
            return action
        if chosen is None:
            return draw_forward(logits, mask, temperature, epsilon)
        action[chosen] = draw_forward(logits, mask[chosen], temperature, epsilon)
        return action

    stop = env.stop
    state = walk.initial(n)
    index = torch.arange(n, device=device)
    rows = cond
    states: list[States] = []
    owners: list[torch.Tensor] = []
    actions: list[torch.Tensor] = []
    sizes: list[int] = []
    alive = n
    while alive and (max_steps is None or len(actions) < max_steps):
        action = draw(state, rows)
        states.append(state)
        owners.append(index)
        actions.append(action)
        sizes.append(alive)
        keep = (action != stop).nonzero().squeeze(1)
        if len(keep) < alive:
            state, action = walk.select(state, keep), action.index_select(0, keep)
            index = index.index_select(0, keep)
            rows, alive = _rows(cond, index), len(keep)
        if alive:
            state = walk.step(state, action)
    if alive or not states:
        if recorder is not None and alive:
            policy_logits(state, rows, walk.forward_mask(state))
        states.append(state)
        owners.append(index)
        sizes.append(alive)
    visited = walk.cat(states)
    if isinstance(walk, TableWalk):
        visited = walk.states_of(visited)
    rollout = _assemble(env, visited, torch.cat(owners), actions, sizes, n, cond)
    if recorder is not None:
        row = torch.cat(recorded) if recorded else None
        plain = row is None or (len(row) == evaluated and not dedupe)  # every state, in order
        rollout.recorded = RecordedOutputs(
            policy, recorder, versions, rollout.states, cond, None if plain else row
        )
    return rollout


def _chosen_logits(logits: ForwardLogits, chosen: torch.Tensor | None) -> ForwardLogits | None:
    """The logits of the `chosen` rows (all when None; None when there are none)."""
    if chosen is None:
        return logits
    return select_logits(logits, chosen) if len(chosen) else None


def _with_choice(mask: torch.Tensor, stop: int) -> torch.Tensor | None:
    """The rows of forward `mask` that are not forced stops (stop the only legal action), or
    None when that is every row."""
    # a sum of bytes: faster than summing the bools
    forced = mask[:, stop] & (mask.view(torch.uint8).sum(dim=1, dtype=torch.int32) == 1)
    return (~forced).nonzero().squeeze(1) if bool(forced.any()) else None


DEDUPE_BATCH = 64
"""Batch size from which `sample_forward(dedupe=True)` pays on a CPU (sample, score and backward
on hypergrid 4-D H=8, measured: x0.93 at 16, x1.14 at 64, x1.9 at 256, x7 at 4,096)."""


def _distinct(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first row of each distinct id, and each row's position among the distinct ids."""
    unique, inverse = torch.unique(ids, return_inverse=True)
    rows = torch.arange(len(ids), device=ids.device)
    first = torch.full_like(unique, len(ids)).scatter_reduce_(0, inverse, rows, "amin")
    return first, inverse


@torch.no_grad()
def sample_forward_fixed(
    env: Env,
    policy: Policy,
    n: int,
    cond: torch.Tensor | None = None,
    temperature: float = 1.0,
    epsilon: float = 0.0,
) -> Rollout:
    """Sample `n` complete trajectories with the whole batch stepping `env.horizon` times.

    Finished trajectories keep taking the stop action, which leaves their state as it is (the
    horizon contract, `Env.horizon`), and bad logits are flagged rather than raised: the loop
    has no data-dependent control flow, so on a GPU it runs without a host synchronisation, and
    one check follows it. The draws come from the same policy as `sample_forward`'s (the same
    distribution, not the same random numbers: every row draws at every step).
    """
    horizon = env.horizon
    if horizon is None:
        raise ValueError(f"{type(env).__name__} declares no horizon: sample it with sample_forward")
    device, stop = env.device, env.stop
    state = env.initial(n)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    bad = torch.zeros(n, dtype=torch.bool, device=device)
    states, actions = [], []
    for _ in range(horizon):
        logits = dense_only(
            policy.forward_logits(env.featurize(state), cond), "sample_forward_fixed"
        )
        race = _race(logits, env.forward_mask(state), temperature, epsilon)
        bad |= race.isnan().all(dim=-1) & ~done  # NaN or +inf logits, or no legal action
        action = torch.where(done | bad, stop, race.nan_to_num(nan=0.0).argmax(dim=-1))
        states.append(state)
        actions.append(torch.where(done, -1, action))
        done = done | (action == stop)
        state = env.step(state, action)
    if bool(bad.any()):
        raise LogitsError(
            f"forward logits are NaN or +inf at a legal action, or no action is legal, in "
            f"{int(bad.sum())} of {n} rows"
        )
    if not bool(done.all()):
        raise ValueError(
            f"{type(env).__name__}.horizon = {horizon} is too small: trajectories were still "
            "running after that many steps"
        )
    return _assemble_fixed(env, states, torch.stack(actions), n, cond)


def _assemble_fixed(
    env: Env, states: list[States], actions: torch.Tensor, n: int, cond: torch.Tensor | None
) -> Rollout:
    """A Rollout from a fixed-horizon rollout's per-step states (all n rows each) and its
    (horizon, n) actions, -1 once a trajectory has stopped: the real states step-major."""
    real = actions >= 0
    width = int(real.sum(0).max())
    real = real[:width]
    sizes = real.sum(1).tolist()
    owner = torch.arange(n, device=actions.device).expand(width, n)[real]
    taken = actions[:width][real]
    visited = env.select(env.cat(states[:width]), real.reshape(-1).nonzero().squeeze(1))
    return _assemble(env, visited, owner, list(taken.split(sizes)), sizes, n, cond)


def _assemble(
    env: Env,
    states: States,
    owner: torch.Tensor,
    actions: list[torch.Tensor],
    sizes: list[int],
    n: int,
    cond: torch.Tensor | None,
) -> Rollout:
    """Build a Rollout from step-major states, their trajectory ids, and the actions taken at
    step t by the states of step t (states past the last action are incomplete trajectories)."""
    device = owner.device
    width = len(actions)
    step = torch.repeat_interleave(
        torch.arange(len(sizes), device=device), torch.tensor(sizes, device=device)
    )
    taken = torch.cat(actions) if actions else owner.new_empty(0)
    acted = len(taken)
    stop = taken == env.stop
    moved = (~stop).nonzero().squeeze(1)
    ends = stop.nonzero().squeeze(1)
    lengths = torch.bincount(owner[:acted], minlength=n)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    done[owner[ends]] = True
    grid = torch.full((n, width), -1, dtype=torch.long, device=device)
    grid[owner[:acted], step[:acted]] = taken
    backward = torch.full_like(grid, -1)
    backward[owner[moved], step[moved]] = env.backward_action(
        env.select(states, moved), taken[moved]
    )
    last = torch.cat([ends, torch.arange(acted, len(owner), device=device)])
    terminal = env.select(states, last[torch.argsort(owner[last])])
    state_mask = torch.zeros(n, width + 1, dtype=torch.bool, device=device)
    state_mask[owner, step] = True
    log_reward = torch.zeros(n, device=device)
    if len(ends):
        finished = env.select(terminal, done)
        log_reward[done] = terminal_log_reward(env, finished, _rows(cond, done)).float()
    return Rollout(
        states=states,
        state_mask=state_mask,
        actions=grid,
        backward_actions=backward,
        lengths=lengths,
        done=done,
        terminal=terminal,
        log_reward=log_reward,
        cond=cond,
    )


@torch.no_grad()
def sample_backward(
    env: Env,
    policy: Policy | None,
    terminal: States,
    cond: torch.Tensor | None = None,
    log_reward: torch.Tensor | None = None,
) -> Rollout:
    """Trace complete trajectories back from objects x to s0 under P_B (uniform when no policy)."""
    device = env.device
    n = env.size(terminal)
    state, index = terminal, torch.arange(n, device=device)
    visited, owner, depth = [], [], []
    actions, backward = [], []
    k = 0
    while len(index):
        visited.append(state)
        owner.append(index)
        depth.append(torch.full_like(index, k))
        mask = env.backward_mask(state)
        alive = mask.any(dim=1)
        if not alive.any():
            break
        state, index, mask = env.select(state, alive), index[alive], mask[alive]
        logits = None
        if policy is not None:
            logits = policy(env.featurize(state), _rows(cond, index)).backward_logits
        if logits is None:
            logits = torch.zeros(mask.shape, device=device)
        back = sample_actions(logits, mask, output="backward logits")
        parent = env.backward_step(state, back)
        actions.append((index, env.forward_action(state, back)))
        backward.append((index, back))
        state = parent
        k += 1
    owner_all, depth_all = torch.cat(owner), torch.cat(depth)
    total = torch.zeros(n, dtype=torch.long, device=device)
    total.scatter_reduce_(0, owner_all, depth_all, reduce="amax")
    forward_step = total[owner_all] - depth_all
    order = torch.argsort(forward_step * n + owner_all)
    states = env.select(env.cat(visited), order)
    lengths = total + 1
    steps = torch.arange(int(lengths.max()) if n else 0, device=device)
    fwd = torch.full((n, len(steps)), -1, dtype=torch.long, device=device)
    bwd = torch.full_like(fwd, -1)
    for k, ((idx, a), (_, b)) in enumerate(zip(actions, backward, strict=True)):
        t = total[idx] - k - 1
        fwd[idx, t] = a
        bwd[idx, t] = b
    fwd[torch.arange(n, device=device), total] = env.stop
    state_mask = torch.arange(len(steps) + 1, device=device) < lengths[:, None]
    if log_reward is None:
        log_reward = terminal_log_reward(env, terminal, cond).float()
    else:
        check_log_reward(env, terminal, log_reward)
    return Rollout(
        states=states,
        state_mask=state_mask,
        actions=fwd,
        backward_actions=bwd,
        lengths=lengths,
        done=torch.ones(n, dtype=torch.bool, device=device),
        terminal=terminal,
        log_reward=log_reward,
        cond=cond,
    )

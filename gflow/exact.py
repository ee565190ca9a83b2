"""Exact evaluation on enumerable environments: the learned sampler's terminal distribution by
dynamic programming over the state DAG, the target R/Z, and the distances between them."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from gflow.env import Env, States
from gflow.factored import FactoredLogits, dense_only
from gflow.objectives.base import LOG_Z_SOURCES
from gflow.policies.base import Policy
from gflow.sampling import dense_log_probs


@dataclass
class StateGraph:
    """The enumerated DAG: states, legal-action masks and the child index of every edge."""

    states: States
    forward_mask: torch.Tensor
    edge_parent: torch.Tensor
    edge_action: torch.Tensor
    edge_child: torch.Tensor
    initial: int

    @property
    def n(self) -> int:
        """Number of states."""
        return len(self.forward_mask)


def state_graph(env: Env) -> StateGraph:
    """Enumerate the environment and index every forward edge (stop excluded)."""
    states = env.enumerate_states()
    keys = env.keys(states)
    position = {key: i for i, key in enumerate(keys)}
    if len(position) != len(keys):
        raise ValueError(f"{type(env).__name__}.enumerate_states lists a state twice")
    mask = env.forward_mask(states)
    moves = mask.clone()
    moves[:, env.stop] = False
    parent, action = moves.nonzero(as_tuple=True)
    children = env.step(env.select(states, parent), action)
    try:
        child = [position[key] for key in env.keys(children)]
    except KeyError as err:
        raise ValueError(
            f"{type(env).__name__}: a step leads to a state missing from enumerate_states: {err}"
        ) from None
    initial = env.keys(env.initial(1))[0]
    return StateGraph(
        states=states,
        forward_mask=mask,
        edge_parent=parent,
        edge_action=action,
        edge_child=torch.tensor(child, dtype=torch.long, device=mask.device),
        initial=position[initial],
    )


@torch.no_grad()
def terminal_distribution(
    graph: StateGraph, env: Env, policy: Policy, cond: torch.Tensor | None = None
) -> torch.Tensor:
    """P_T(x) for every state x: the probability that the forward policy stops at x."""
    features = env.featurize(graph.states)
    cond_rows = None if cond is None else cond.expand(graph.n, -1)
    logits = policy(features, cond_rows).forward_logits
    if isinstance(logits, FactoredLogits):  # fine logits follow the coarse ones' dtype
        logits = replace(logits, coarse=logits.coarse.double())
    else:
        logits = logits.double()
    probs = dense_log_probs(logits, graph.forward_mask).exp()
    edge_prob = probs[graph.edge_parent, graph.edge_action]
    reach = torch.zeros(graph.n, dtype=torch.float64, device=probs.device)
    reach[graph.initial] = 1.0
    total = reach.clone()
    for _ in range(graph.n):
        flow = edge_prob * reach[graph.edge_parent]
        reach = torch.zeros_like(reach).index_add(0, graph.edge_child, flow)
        if not reach.any():
            break
        total += reach
    else:
        raise ValueError(f"{type(env).__name__}: the state graph has a cycle")
    return total * probs[:, env.stop]


def target_distribution(graph: StateGraph, env: Env) -> tuple[torch.Tensor, float]:
    """R(x)/Z over the states where stop is legal (0 elsewhere), and log Z."""
    device = graph.forward_mask.device
    log_r = torch.full((graph.n,), float("-inf"), dtype=torch.float64, device=device)
    stoppable = graph.forward_mask[:, env.stop]
    log_r[stoppable] = env.log_reward(env.select(graph.states, stoppable)).double()
    log_z = torch.logsumexp(log_r, 0)
    return (log_r - log_z).exp(), float(log_z)


def distribution_errors(p: torch.Tensor, q: torch.Tensor) -> dict[str, float]:
    """Total variation, L1 and Jensen-Shannon divergence (nats) between two distributions."""
    m = 0.5 * (p + q)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        nz = a > 0
        return (a[nz] * (a[nz].log() - b[nz].log())).sum()

    l1 = float((p - q).abs().sum())
    return {"tv": 0.5 * l1, "l1": l1, "jsd": float(0.5 * kl(p, m) + 0.5 * kl(q, m))}


@torch.no_grad()
def flow_matching_log_z(env: Env, policy: Policy, cond: torch.Tensor | None = None) -> float:
    """The log Z a flow-matching model implies: the log out-flow of s0 (its forward logits)."""
    s0 = env.initial(1)
    output = policy(env.featurize(s0), None if cond is None else cond.expand(1, -1))
    logits = dense_only(output.forward_logits, "the flow-matching log Z")
    return float(logits.masked_fill(~env.forward_mask(s0), float("-inf")).logsumexp(1)[0])


def exact_report(
    env: Env,
    policy: Policy,
    graph: StateGraph | None = None,
    cond: torch.Tensor | None = None,
    log_z: str = "learned",
) -> dict[str, float]:
    """exact_tv, exact_l1, exact_jsd and log_z_error of a policy on an enumerable environment;
    the model's log Z is read where the objective's `log_z` says: ``learned`` (the policy's
    log Z) or ``out_flow`` (the log out-flow of s0, for flow matching)."""
    graph = graph or state_graph(env)
    learned = terminal_distribution(graph, env, policy, cond)
    target, true_log_z = target_distribution(graph, env)
    errors = distribution_errors(learned, target)
    if log_z not in LOG_Z_SOURCES:
        raise ValueError(f"log_z must be one of {LOG_Z_SOURCES}, got {log_z!r}")
    if log_z == "out_flow":
        model_log_z = flow_matching_log_z(env, policy, cond)
    else:
        with torch.no_grad():
            model_log_z = float(policy.log_z(cond, 1)[0])
    return {
        "exact_tv": errors["tv"],
        "exact_l1": errors["l1"],
        "exact_jsd": errors["jsd"],
        "log_z": model_log_z,
        "true_log_z": true_log_z,
        "log_z_error": abs(model_log_z - true_log_z),
    }

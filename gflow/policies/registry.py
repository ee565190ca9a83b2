"""Policies by name: each builder makes a policy fitting an environment from plain options, so a
checkpoint that records the name and the options (a `PolicySpec`) rebuilds its policy in one
place, whatever its class (`load_policy`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from gflow.env import Env
from gflow.policies.base import Policy
from gflow.policies.mlp import MLPPolicy
from gflow.run_config import ModelConfig

Builder = Callable[..., Policy]
"""builder(env, **options) -> a policy for `env`."""


@dataclass(frozen=True)
class PolicySpec:
    """How a policy was built: a builder's registered name and its options (plain values)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The spec as plain data, for a checkpoint."""
        return asdict(self)


def _mlp(env: Env, **options: Any) -> Policy:
    """An MLP over the environment's feature vectors."""
    return MLPPolicy(env.feature_dim, env.n_actions, env.n_backward, **options)


def _graph_transformer(env: Env, **options: Any) -> Policy:
    """A graph transformer over the graph environment `env` is or wraps."""
    from gflow.policies.graph_transformer import GraphTransformerPolicy

    if env.policy_kind != "graph-transformer":
        raise ValueError(
            f"{type(env).__name__} is not a graph environment (policy_kind {env.policy_kind!r})"
        )
    return GraphTransformerPolicy.for_env(env, **options)


POLICIES: dict[str, Builder] = {"mlp": _mlp, "graph-transformer": _graph_transformer}
"""Registered policy builders by name."""


def register_policy(name: str, builder: Builder) -> None:
    """Make `builder(env, **options)` available as `name` to `build_policy` and checkpoints."""
    if name in POLICIES and POLICIES[name] is not builder:
        raise ValueError(f"a policy builder named {name!r} is already registered")
    POLICIES[name] = builder


def policy_spec(env: Env, model: ModelConfig | None = None) -> PolicySpec:
    """The policy a model config describes for `env`: the kind the environment declares
    (`env.policy_kind`: a graph transformer for graph environments, else an MLP), conditional
    (cond_dim > 0) when the env is."""
    model = model or ModelConfig()
    if model.stop_gate and env.policy_kind != "graph-transformer":
        raise ValueError("stop_gate applies to the graph transformer of graph environments only")
    fine_actions = env.fine_actions if env.policy_kind == "graph-transformer" else 0
    if model.factored_head and not fine_actions:
        raise ValueError(
            f"factored_head needs an environment whose node actions split into a fine choice "
            f"(fine_actions > 0); {type(env).__name__} has none"
        )
    options = {
        "hidden": model.hidden,
        "layers": model.layers,
        "cond_dim": env.cond_dim,
        "learn_pb": model.learn_pb,
    }
    if env.policy_kind == "graph-transformer":
        options["heads"] = model.heads
        if model.stop_gate:  # recorded only when on: earlier checkpoints' specs stay equal
            options["stop_gate"] = True
        if model.factored_head:
            options["fine_actions"] = fine_actions
    return PolicySpec(env.policy_kind, options)


def build_policy(
    env: Env,
    model: ModelConfig | PolicySpec | None = None,
    device: torch.device | str = "cpu",
) -> Policy:
    """A fresh policy for `env` on `device`, from a model config (see `policy_spec`) or an
    explicit spec; the policy keeps its spec (`policy.spec`) so that checkpoints record it."""
    spec = model if isinstance(model, PolicySpec) else policy_spec(env, model)
    if spec.name not in POLICIES:
        raise ValueError(
            f"unknown policy {spec.name!r}; registered: {', '.join(sorted(POLICIES))}"
        )
    policy = POLICIES[spec.name](env, **spec.options)
    policy.spec = spec
    return policy.to(device)


def restore_policy(
    state: dict[str, Any], env: Env, device: torch.device | str = "cpu", where: str = "checkpoint"
) -> Policy:
    """The trained policy of a loaded checkpoint, rebuilt for `env` from the spec it records
    (`gflow.training.load_policy` reads the file)."""
    record = state.get("policy_spec")
    if record is None:
        raise ValueError(f"{where} does not record how its policy was built (no policy_spec)")
    policy = build_policy(env, PolicySpec(record["name"], dict(record["options"])), device)
    try:
        policy.load_state_dict(state["policy"])
    except RuntimeError as err:
        last = str(err).strip().splitlines()[-1].strip()
        raise ValueError(f"the policy of {where} does not fit this environment: {last}") from None
    return policy

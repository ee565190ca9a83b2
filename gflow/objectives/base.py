"""What an objective is: a loss over one Trajectories batch that declares what it needs from
scoring, whether it learns from incomplete trajectories, where its log Z comes from and its own
options; and the one registry of objectives by name."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, cast

import torch

from gflow.trajectories import NEEDS, Trajectories

Loss = Callable[[Trajectories], torch.Tensor]
LOG_Z_SOURCES = ("learned", "out_flow")
"""Where an objective's log Z comes from: ``learned`` (the policy's log Z, which is F(s0) for
the flow-based objectives) or ``out_flow`` (the log out-flow of s0, read from the forward
logits as edge flows, as in flow matching)."""


@dataclass(frozen=True)
class ObjectiveOptions:
    """Base of every objective's options (none here). A field whose metadata holds ``record``
    is recorded under that name in checkpoints and metrics."""

    def record(self) -> dict[str, Any]:
        """The options as JSON-ready values, as checkpoints and metrics record them."""
        return {f.metadata.get("record", f.name): getattr(self, f.name) for f in fields(self)}

    def name_suffix(self) -> str:
        """Appended to the objective's name when these options make it a variant of its own."""
        return ""


@dataclass(frozen=True)
class Objective:
    """A training loss and its declaration; call it on a Trajectories batch for the loss."""

    name: str
    loss: Loss
    needs: frozenset[str] = frozenset()
    """Names from `gflow.trajectories.NEEDS`: what `gflow.scoring.score` must provide."""
    incomplete_ok: bool = False
    """Whether it learns from incomplete trajectories (rollouts cut by `max_steps`)."""
    log_z: str = "learned"
    """Where its log Z comes from, one of LOG_Z_SOURCES (exact evaluation reads it there)."""
    options: dict[str, Any] = field(default_factory=dict)
    """The options it was built with, as recorded in checkpoints and metrics."""

    def __post_init__(self) -> None:
        needs = frozenset([self.needs] if isinstance(self.needs, str) else self.needs)
        object.__setattr__(self, "needs", needs)
        unknown = sorted(needs - NEEDS)
        if unknown:
            raise ValueError(
                f"objective {self.name!r} needs {unknown}, which scoring does not provide; "
                f"known needs: {', '.join(sorted(NEEDS))}"
            )
        if self.log_z not in LOG_Z_SOURCES:
            raise ValueError(
                f"objective {self.name!r}: log_z must be one of {LOG_Z_SOURCES}, got {self.log_z!r}"
            )
        if not callable(self.loss):
            raise TypeError(f"objective {self.name!r}: the loss must be callable")

    def __call__(self, traj: Trajectories) -> torch.Tensor:
        """The loss of one scored batch."""
        return self.loss(traj)


def objective(
    name: str | Loss | None = None,
    *,
    needs: Collection[str] = (),
    incomplete_ok: bool = False,
    log_z: str = "learned",
) -> Any:
    """Decorator: a loss function of Trajectories becomes an Objective (named after the
    function unless `name` is given) with the declared needs, e.g.
    ``@objective(needs={"energies"}, incomplete_ok=True)``; bare ``@objective`` declares
    nothing beyond the always-scored fields."""

    def wrap(loss: Loss) -> Objective:
        label = name if isinstance(name, str) else getattr(loss, "__name__", "loss")
        return Objective(label, loss, frozenset(needs), incomplete_ok, log_z)

    return wrap(name) if callable(name) else wrap


def as_objective(loss: Objective | Loss, name: str | None = None) -> Objective:
    """An Objective as is, or a plain loss function of Trajectories as an Objective that needs
    only the always-scored fields (named after the function unless `name` is given)."""
    if isinstance(loss, Objective):
        return loss
    if not callable(loss):
        raise TypeError(f"expected an Objective or a loss function, got {type(loss).__name__}")
    return objective(name)(loss)


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registered objective: its declaration, its options type and how to build its loss."""

    name: str
    build: Callable[[Any], Loss]
    """The loss for an instance of `options`."""
    options: type[ObjectiveOptions] = ObjectiveOptions
    needs: frozenset[str] = frozenset()
    incomplete_ok: bool = False
    log_z: str = "learned"
    help: str = ""

    def make(self, **options: Any) -> Objective:
        """The objective with these options (the options type's defaults for the rest)."""
        known = {f.name for f in fields(self.options)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"objective {self.name!r} has no option {', '.join(unknown)}; "
                f"its options: {', '.join(sorted(known)) or 'none'}"
            )
        opts = self.options(**options)
        loss = self.build(opts)
        name = self.name + opts.name_suffix()
        return Objective(name, loss, self.needs, self.incomplete_ok, self.log_z, opts.record())

    def option_names(self) -> tuple[str, ...]:
        """Names of this objective's options."""
        return tuple(f.name for f in fields(self.options))


OBJECTIVES: dict[str, ObjectiveSpec] = {}
"""Every registered objective by name (built-in ones register when `gflow.objectives` is
imported)."""


def register_objective(spec: ObjectiveSpec) -> ObjectiveSpec:
    """Add an objective to the registry; a name taken by another objective is an error."""
    taken = OBJECTIVES.get(spec.name)
    if taken is not None and taken != spec:
        raise ValueError(f"an objective named {spec.name!r} is already registered")
    # validates the declaration (only; the loss is built later, from options)
    Objective(spec.name, cast(Loss, spec.build), spec.needs, spec.incomplete_ok, spec.log_z)
    OBJECTIVES[spec.name] = spec
    return spec


def get_objective(name: str, **options: Any) -> Objective:
    """The registered objective called `name`, built with `options` (fields of its options
    dataclass)."""
    spec = OBJECTIVES.get(name)
    if spec is None:
        raise ValueError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}")
    return spec.make(**options)


def options_for(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `values` that are options of objective `name` (for front ends that hold
    every objective's options, such as the command line)."""
    spec = OBJECTIVES.get(name)
    if spec is None:
        raise ValueError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}")
    return {key: values[key] for key in spec.option_names() if key in values}

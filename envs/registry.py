"""Built-in environments by name: each a builder called with keyword options, and the options it
takes (name, default, help), from which front ends such as the command line make their flags.
`build_env("hypergrid", ndim=3)` builds one from Python."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gflow.env import Env


@dataclass(frozen=True)
class Option:
    """One keyword option of an environment builder."""

    name: str
    """The builder's keyword (the command line's flag is --name with dashes)."""
    default: Any
    help: str
    type: Callable[[str], Any] | None = None
    """How a command-line string becomes the value (default: the default's type; a bool
    default False is a switch)."""
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class EnvSpec:
    """A named environment: `build(**options, device=...)` and the options it takes."""

    name: str
    help: str
    build: Callable[..., Env]
    options: tuple[Option, ...] = ()

    def pick(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of `values` that are this environment's options (from a front end that
        holds other settings too, such as parsed command-line options)."""
        return {o.name: values[o.name] for o in self.options if o.name in values}

    def __call__(self, device: str = "cpu", **options: Any) -> Env:
        """The environment with these options (defaults for the rest) on `device`."""
        known = {o.name: o for o in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"environment {self.name!r} has no option {', '.join(unknown)}; "
                f"its options: {', '.join(known) or 'none'}"
            )
        values = {name: options.get(name, o.default) for name, o in known.items()}
        for name, o in known.items():
            if o.choices is not None and values[name] not in o.choices:
                raise ValueError(
                    f"{self.name}: {name} must be one of {', '.join(map(str, o.choices))}, "
                    f"got {values[name]!r}"
                )
        return self.build(**values, device=device)


def names(value: str | Sequence[str]) -> list[str]:
    """A comma-separated string (or a sequence) as a list of stripped, non-empty names."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


def _hypergrid(ndim: int, height: int, r0: float, device: str) -> Env:
    from gflow.envs.hypergrid import HyperGrid

    return HyperGrid(ndim, height, r0, device=device)


def _mo_hypergrid(height: int, objectives: str, device: str) -> Env:
    from gflow.envs.mo_hypergrid import MOHyperGrid

    return MOHyperGrid(height, names(objectives), device=device)


def _bitseq(
    length: int,
    word_bits: int,
    modes: int,
    exponent: float,
    mode_threshold: int | None,
    env_seed: int,
    device: str,
) -> Env:
    from gflow.envs.bitseq import BitSequence

    return BitSequence(
        length, word_bits, modes, exponent, mode_threshold, env_seed, device=device
    )


def _sets(size: str, universe: int | None, set_size: int | None, env_seed: int, device: str) -> Env:
    from gflow.envs.sets import SIZES, SetGeneration

    default_universe, default_set_size = SIZES[size]
    universe = default_universe if universe is None else universe
    set_size = default_set_size if set_size is None else set_size
    return SetGeneration(universe, set_size, env_seed, device=device)


def _ngrams(
    ngrams: str,
    alphabet: str | None,
    min_length: int,
    max_length: int,
    max_count: int | None,
    device: str,
) -> Env:
    from gflow.envs.ngrams import AMINO_ACIDS, NGrams

    alphabet = AMINO_ACIDS if alphabet is None else alphabet
    return NGrams(names(ngrams), alphabet, min_length, max_length, max_count, device=device)


def _aptamers(
    min_length: int, max_length: int, objectives: str, fold_temperature: float, device: str
) -> Env:
    from gflow.envs.aptamers import DNAAptamers

    return DNAAptamers(
        min_length, max_length, names(objectives), temperature=fold_temperature, device=device
    )


SYMMETRY = Option(
    "no_symmetry",
    False,
    "train on R(x) without the |Aut(x)| correction (samples x in proportion to "
    "R(x) / |Aut(x)| over isomorphism classes)",
)


def _symmetric(env: Env, no_symmetry: bool) -> Env:
    from gflow.envs.graph_symmetry import SymmetryCorrected

    return env if no_symmetry else SymmetryCorrected(env)


def _graphs(
    node_types: int,
    edge_types: int,
    max_nodes: int,
    node_attrs: int,
    edge_attrs: int,
    connected: bool,
    edge_weight: float,
    no_symmetry: bool,
    device: str,
) -> Env:
    from gflow.envs.graphs import GraphEnv

    def log_reward(states):
        return edge_weight * (states.edges >= 0).sum((1, 2)) / 2

    env = GraphEnv(
        node_types,
        edge_types,
        max_nodes,
        node_attrs,
        edge_attrs,
        connected,
        log_reward_fn=log_reward,
        device=device,
    )
    return _symmetric(env, no_symmetry)


MOLECULE_REWARDS = ("uniform", "qed", "sa", "mw", "seh")
"""Built-in rewards for the molecule environments (QED, normalized SA and MW, sEH proxy
clip(raw / 8, 1e-4, 100)); any of them, or a user's batched function of RDKit molecules named
`module:fn` or `path/to/file.py:fn`, is floored at 1e-4 so that log R stays finite."""
REWARD = Option(
    "reward",
    "uniform",
    f"molecule reward: {', '.join(MOLECULE_REWARDS)}, or module:fn / path/to/file.py:fn, a "
    "batched function of RDKit molecules returning non-negative rewards (default uniform)",
)


def molecule_reward(name: str, device: str = "cpu") -> Callable[[list], Any] | None:
    """The reward callable a --reward value names (None for uniform), floored at 1e-4."""
    from gflow.plugins import is_target, load_reward

    if name == "uniform":
        return None
    score: Callable[[list], Any]
    if name == "seh":
        from gflow.envs.rewards.seh import SEHProxy

        score = SEHProxy.from_file(device=device).reward
    elif name in MOLECULE_REWARDS:
        from gflow.envs.rewards import chem

        score = {"qed": chem.qed, "sa": chem.sa_reward, "mw": chem.mw_reward}[name]
    elif is_target(name):
        score = load_reward(name)
    else:
        raise ValueError(
            f"unknown molecule reward {name!r}; choose from {', '.join(MOLECULE_REWARDS)} "
            "or name a function as module:fn or path/to/file.py:fn"
        )

    def floored(mols: list) -> Any:
        return score(mols).clamp(min=1e-4)

    floored.__name__ = name  # error messages name the reward
    return floored


def _atoms(elements: str, max_atoms: int, reward: str, no_symmetry: bool, device: str) -> Env:
    from gflow.envs.molecules.atoms import AtomEnv

    env = AtomEnv(names(elements), max_atoms, molecule_reward(reward, device), device=device)
    return _symmetric(env, no_symmetry)


def _frags(
    fragments: str | None, max_fragments: int, reward: str, no_symmetry: bool, device: str
) -> Env:
    from gflow.envs.molecules.fragments import FragmentEnv

    reward_fn = molecule_reward(reward, device)
    env = FragmentEnv(fragments, max_fragments, reward_fn, device=device)
    return _symmetric(env, no_symmetry)


ENVIRONMENTS: dict[str, EnvSpec] = {
    spec.name: spec
    for spec in (
        EnvSpec(
            "hypergrid",
            "D-dimensional grid walk",
            _hypergrid,
            (
                Option("ndim", 2, "number of dimensions D (default 2)"),
                Option("height", 8, "side length H (default 8)"),
                Option("r0", 1e-3, "base reward R0 (default 1e-3)"),
            ),
        ),
        EnvSpec(
            "mo-hypergrid",
            "2-D grid walk scored by 2-4 of Branin, Currin, Shubert, Beale",
            _mo_hypergrid,
            (
                Option("height", 32, "side length H (default 32)"),
                Option(
                    "objectives",
                    "branin,currin",
                    "reward components: 2 to 4 of branin,currin,shubert,beale, comma-separated "
                    "(default branin,currin)",
                ),
            ),
        ),
        EnvSpec(
            "bitseq",
            "bit sequences near a mode set",
            _bitseq,
            (
                Option("length", 120, "bits n, a multiple of 8 (default 120)"),
                Option("word_bits", 8, "bits k per word (default 8)"),
                Option("modes", 60, "size of the mode set (default 60)"),
                Option("exponent", 1.0, "reward exponent (default 1)"),
                Option("mode_threshold", None, "Hamming radius of a found mode (n/4)", int),
                Option("env_seed", 0, "seed of the mode set (default 0)"),
            ),
        ),
        EnvSpec(
            "sets",
            "fixed-size sets with additive energies",
            _sets,
            (
                Option(
                    "size",
                    "small",
                    "|U|,|S| = 30,20 / 80,60 / 100,80 (default small)",
                    choices=("small", "medium", "large"),
                ),
                Option("universe", None, "|U|, overriding --size", int),
                Option("set_size", None, "|S|, overriding --size", int),
                Option("env_seed", 0, "seed of the energies (default 0)"),
            ),
        ),
        EnvSpec(
            "ngrams",
            "sequences scored by counts of given n-grams",
            _ngrams,
            (
                Option("ngrams", "AV,VC", "n-grams to count, one reward component each (AV,VC)"),
                Option("alphabet", None, "token characters (default: 20 amino acids)", str),
                Option("min_length", 32, "shortest sequence (default 32)"),
                Option("max_length", 36, "longest sequence (default 36)"),
                Option(
                    "max_count",
                    None,
                    "count that maps to component value 1, clipped above (default: each "
                    "n-gram's maximum)",
                    int,
                ),
            ),
        ),
        EnvSpec(
            "dna-aptamers",
            "DNA sequences scored by ViennaRNA free energy, base pairs and hairpins",
            _aptamers,
            (
                Option("min_length", 30, "shortest sequence (default 30)"),
                Option("max_length", 30, "longest sequence (default 30)"),
                Option(
                    "objectives",
                    "energy,pairs,hairpins",
                    "reward components: any of energy,pairs,hairpins, comma-separated "
                    "(default all three)",
                ),
                Option("fold_temperature", 37.0, "folding temperature, C (default 37)"),
            ),
        ),
        EnvSpec(
            "graphs",
            "typed graphs built node by node and edge by edge",
            _graphs,
            (
                Option("node_types", 2, "node types (default 2)"),
                Option("edge_types", 1, "edge types (default 1)"),
                Option("max_nodes", 4, "maximum nodes (default 4)"),
                Option("node_attrs", 0, "node attribute values (default 0)"),
                Option("edge_attrs", 0, "edge attribute values (default 0)"),
                Option("connected", False, "keep every graph connected"),
                Option("edge_weight", 0.5, "log R = weight * edges (default 0.5)"),
                SYMMETRY,
            ),
        ),
        EnvSpec(
            "atoms",
            "molecules built atom by atom (RDKit)",
            _atoms,
            (
                Option("elements", "C,N,O,F", "elements, comma-separated (C,N,O,F)"),
                Option("max_atoms", 9, "maximum heavy atoms (default 9)"),
                REWARD,
                SYMMETRY,
            ),
        ),
        EnvSpec(
            "frags",
            "molecules built from a fragment vocabulary (RDKit)",
            _frags,
            (
                Option("fragments", None, "fragment JSON (default: seh/fragments_72.json)", str),
                Option("max_fragments", 9, "maximum fragments (default 9)"),
                REWARD,
                SYMMETRY,
            ),
        ),
    )
}


def build_env(name: str, device: str = "cpu", **options: Any) -> Env:
    """The built-in environment `name` with keyword `options` (see `ENVIRONMENTS[name].options`)."""
    spec = ENVIRONMENTS.get(name)
    if spec is None:
        raise ValueError(f"unknown environment {name!r}; choose from {', '.join(ENVIRONMENTS)}")
    return spec(device=device, **options)

"""Built-in environments by name, with the command-line options that configure each."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from gflow.env import Env


@dataclass(frozen=True)
class EnvSpec:
    """How to expose one environment on the command line."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    build: Callable[[argparse.Namespace], Env]


def _hypergrid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ndim", type=int, default=2, help="number of dimensions D (default 2)")
    p.add_argument("--height", type=int, default=8, help="side length H (default 8)")
    p.add_argument("--r0", type=float, default=1e-3, help="base reward R0 (default 1e-3)")


def _hypergrid(a: argparse.Namespace) -> Env:
    from gflow.envs.hypergrid import HyperGrid

    return HyperGrid(a.ndim, a.height, a.r0, device=a.device)


def _mo_hypergrid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--height", type=int, default=32, help="side length H (default 32)")
    p.add_argument(
        "--objectives",
        default="branin,currin",
        help="2 to 4 of branin,currin,shubert,beale, comma-separated (default branin,currin)",
    )


def _mo_hypergrid(a: argparse.Namespace) -> Env:
    from gflow.envs.mo_hypergrid import MOHyperGrid

    names = [n.strip() for n in a.objectives.split(",") if n.strip()]
    return MOHyperGrid(a.height, names, device=a.device)


def _bitseq_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--length", type=int, default=120, help="bits n, a multiple of 8 (default 120)")
    p.add_argument("--word-bits", type=int, default=8, help="bits k per word (default 8)")
    p.add_argument("--modes", type=int, default=60, help="size of the mode set (default 60)")
    p.add_argument("--exponent", type=float, default=1.0, help="reward exponent (default 1)")
    p.add_argument(
        "--mode-threshold", type=int, default=None, help="Hamming radius of a found mode (n/4)"
    )
    p.add_argument("--env-seed", type=int, default=0, help="seed of the mode set (default 0)")


def _bitseq(a: argparse.Namespace) -> Env:
    from gflow.envs.bitseq import BitSequence

    return BitSequence(
        a.length, a.word_bits, a.modes, a.exponent, a.mode_threshold, a.env_seed, device=a.device
    )


def _sets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--size",
        choices=("small", "medium", "large"),
        default="small",
        help="|U|,|S| = 30,20 / 80,60 / 100,80 (default small)",
    )
    p.add_argument("--universe", type=int, default=None, help="|U|, overriding --size")
    p.add_argument("--set-size", type=int, default=None, help="|S|, overriding --size")
    p.add_argument("--env-seed", type=int, default=0, help="seed of the energies (default 0)")


def _sets(a: argparse.Namespace) -> Env:
    from gflow.envs.sets import SIZES, SetGeneration

    universe, set_size = SIZES[a.size]
    universe = universe if a.universe is None else a.universe
    set_size = set_size if a.set_size is None else a.set_size
    return SetGeneration(universe, set_size, a.env_seed, device=a.device)


def _ngrams_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ngrams", default="AV,VC", help="n-grams to count, one objective each (default AV,VC)"
    )
    p.add_argument("--alphabet", default=None, help="token characters (default: 20 amino acids)")
    p.add_argument("--min-length", type=int, default=32, help="shortest sequence (default 32)")
    p.add_argument("--max-length", type=int, default=36, help="longest sequence (default 36)")
    p.add_argument(
        "--max-count",
        type=int,
        default=None,
        help="count that maps to objective 1, clipped above (default: each n-gram's maximum)",
    )


def _ngrams(a: argparse.Namespace) -> Env:
    from gflow.envs.ngrams import AMINO_ACIDS, NGrams

    grams = [g.strip() for g in a.ngrams.split(",") if g.strip()]
    alphabet = AMINO_ACIDS if a.alphabet is None else a.alphabet
    return NGrams(grams, alphabet, a.min_length, a.max_length, a.max_count, device=a.device)


def _aptamers_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-length", type=int, default=30, help="shortest sequence (default 30)")
    p.add_argument("--max-length", type=int, default=30, help="longest sequence (default 30)")
    p.add_argument(
        "--objectives",
        default="energy,pairs,hairpins",
        help="any of energy,pairs,hairpins, comma-separated (default all three)",
    )
    p.add_argument(
        "--fold-temperature", type=float, default=37.0, help="folding temperature, C (default 37)"
    )


def _aptamers(a: argparse.Namespace) -> Env:
    from gflow.envs.aptamers import DNAAptamers

    names = [n.strip() for n in a.objectives.split(",") if n.strip()]
    return DNAAptamers(
        a.min_length, a.max_length, names, temperature=a.fold_temperature, device=a.device
    )


def _symmetry_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-symmetry",
        action="store_true",
        help="train on R(x) without the |Aut(x)| correction (samples x in proportion to "
        "R(x) / |Aut(x)| over isomorphism classes)",
    )


def _symmetric(env: Env, a: argparse.Namespace) -> Env:
    from gflow.envs.graph_symmetry import SymmetryCorrected

    return env if a.no_symmetry else SymmetryCorrected(env)


def _graphs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node-types", type=int, default=2, help="node types (default 2)")
    p.add_argument("--edge-types", type=int, default=1, help="edge types (default 1)")
    p.add_argument("--max-nodes", type=int, default=4, help="maximum nodes (default 4)")
    p.add_argument("--node-attrs", type=int, default=0, help="node attribute values (default 0)")
    p.add_argument("--edge-attrs", type=int, default=0, help="edge attribute values (default 0)")
    p.add_argument("--connected", action="store_true", help="keep every graph connected")
    p.add_argument(
        "--edge-weight", type=float, default=0.5, help="log R = weight * edges (default 0.5)"
    )
    _symmetry_arg(p)


def _graphs(a: argparse.Namespace) -> Env:
    from gflow.envs.graphs import GraphEnv

    def log_reward(states):
        return a.edge_weight * (states.edges >= 0).sum((1, 2)) / 2

    env = GraphEnv(
        a.node_types,
        a.edge_types,
        a.max_nodes,
        a.node_attrs,
        a.edge_attrs,
        a.connected,
        log_reward_fn=log_reward,
        device=a.device,
    )
    return _symmetric(env, a)


MOLECULE_REWARDS = ("uniform", "qed", "sa", "mw", "seh")
"""Rewards for the molecule environments (QED, normalized SA and MW objectives, sEH proxy
clip(raw / 8, 1e-4, 100)); all floored at 1e-4 so that log R stays finite."""


def _molecule_reward_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reward", choices=MOLECULE_REWARDS, default="uniform", help="molecule reward (uniform)"
    )
    _symmetry_arg(p)


def _molecule_reward(name: str, device: str):
    """The reward callable for --reward (None for uniform)."""
    if name == "uniform":
        return None
    if name == "seh":
        from gflow.envs.rewards.seh import SEHProxy

        score = SEHProxy.from_file(device=device).reward
    else:
        from gflow.envs.rewards import chem

        score = {"qed": chem.qed, "sa": chem.sa_reward, "mw": chem.mw_reward}[name]
    return lambda mols: score(mols).clamp(min=1e-4)


def _atoms_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--elements", default="C,N,O,F", help="elements, comma-separated (C,N,O,F)")
    p.add_argument("--max-atoms", type=int, default=9, help="maximum heavy atoms (default 9)")
    _molecule_reward_arg(p)


def _atoms(a: argparse.Namespace) -> Env:
    from gflow.envs.molecules.atoms import AtomEnv

    elements = [e.strip() for e in a.elements.split(",") if e.strip()]
    reward = _molecule_reward(a.reward, a.device)
    return _symmetric(AtomEnv(elements, a.max_atoms, reward, device=a.device), a)


def _frags_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fragments", default=None, help="fragment JSON (default: seh/fragments_72.json)"
    )
    p.add_argument("--max-fragments", type=int, default=9, help="maximum fragments (default 9)")
    _molecule_reward_arg(p)


def _frags(a: argparse.Namespace) -> Env:
    from gflow.envs.molecules.fragments import FragmentEnv

    reward = _molecule_reward(a.reward, a.device)
    return _symmetric(FragmentEnv(a.fragments, a.max_fragments, reward, device=a.device), a)


ENVIRONMENTS: dict[str, EnvSpec] = {
    "hypergrid": EnvSpec("hypergrid", "D-dimensional grid walk", _hypergrid_args, _hypergrid),
    "mo-hypergrid": EnvSpec(
        "mo-hypergrid",
        "2-D grid walk scored by 2-4 of Branin, Currin, Shubert, Beale",
        _mo_hypergrid_args,
        _mo_hypergrid,
    ),
    "bitseq": EnvSpec("bitseq", "bit sequences near a mode set", _bitseq_args, _bitseq),
    "sets": EnvSpec("sets", "fixed-size sets with additive energies", _sets_args, _sets),
    "ngrams": EnvSpec(
        "ngrams", "sequences scored by counts of given n-grams", _ngrams_args, _ngrams
    ),
    "dna-aptamers": EnvSpec(
        "dna-aptamers",
        "DNA sequences scored by ViennaRNA free energy, base pairs and hairpins",
        _aptamers_args,
        _aptamers,
    ),
    "graphs": EnvSpec(
        "graphs", "typed graphs built node by node and edge by edge", _graphs_args, _graphs
    ),
    "atoms": EnvSpec("atoms", "molecules built atom by atom (RDKit)", _atoms_args, _atoms),
    "frags": EnvSpec(
        "frags", "molecules built from a fragment vocabulary (RDKit)", _frags_args, _frags
    ),
}

"""Check the peer's exact TV against gflow.exact: one set of MLP weights, loaded into a torchgfn
policy and into a gflow MLPPolicy, must give the same exact TV on the same hypergrids.

Run inside the peer's environment with the repository on the path:

    PYTHONPATH=. .peer/torchgfn/bin/python benchmarks/peers/check_torchgfn_tv.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from gfn.estimators import DiscretePolicyEstimator
from gfn.gym import HyperGrid as PeerGrid
from gfn.preprocessors import KHotPreprocessor
from gfn.utils.modules import MLP

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gflow.envs.hypergrid import HyperGrid  # noqa: E402
from torchgfn_hypergrid import all_states, exact_tv  # noqa: E402

from gflow.exact import exact_report  # noqa: E402
from gflow.policies.mlp import MLPPolicy  # noqa: E402

GRIDS = ((2, 8), (3, 8), (4, 8), (2, 64))
R0 = 1e-3


def linears(module: torch.nn.Module) -> list[torch.nn.Linear]:
    """The Linear layers of a module, in order."""
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


def check(ndim: int, height: int, hidden: int = 32) -> float:
    """|TV(torchgfn DP) - TV(gflow.exact)| for one random, sharpened set of weights."""
    ours = MLPPolicy(ndim * height, ndim + 1, ndim, hidden=hidden)
    with torch.no_grad():
        for p in ours.parameters():
            p.mul_(3.0)
    env = PeerGrid(ndim=ndim, height=height, reward_fn_kwargs={"R0": R0, "R1": 0.5, "R2": 2.0})
    module = MLP(
        input_dim=ndim * height,
        output_dim=ndim + 1,
        hidden_dim=hidden,
        n_hidden_layers=2,
        activation_fn="leaky_relu",
    )
    source = linears(ours.trunk) + [ours.forward_head]
    target = linears(module.trunk) + [module.last_layer]
    with torch.no_grad():
        for a, b in zip(source, target, strict=True):
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
    pf = DiscretePolicyEstimator(module, env.n_actions, KHotPreprocessor(height, ndim))
    peer = exact_tv(env, pf, all_states(ndim, height))
    mine = exact_report(HyperGrid(ndim, height, r0=R0), ours)["exact_tv"]
    print(f"{ndim}-D H={height}: torchgfn-side TV {peer:.8f}, gflow.exact TV {mine:.8f}")
    return abs(peer - mine)


def main() -> None:
    """Check every grid; exit non-zero on a disagreement."""
    torch.manual_seed(0)
    worst = max(check(ndim, height) for ndim, height in GRIDS)
    if worst > 1e-6:
        sys.exit(f"exact TV disagrees by {worst:.3g}")
    print(f"agree (largest gap {worst:.2g})")


if __name__ == "__main__":
    main()

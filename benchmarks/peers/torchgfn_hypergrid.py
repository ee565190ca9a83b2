"""torchgfn side of the hypergrid TB benchmark; runs inside the peer's own virtual environment.

Trains TB on torchgfn's HyperGrid through its public API (KHotPreprocessor, MLP,
DiscretePolicyEstimator, TBGFlowNet, Sampler) and prints one JSON object: the training curve
(iteration, training seconds, exact TV) at every evaluation. The exact terminal distribution of
the learned sampler is computed here by dynamic programming over the grid, with the clock
stopped, exactly as gflow.exact does for our side. Never imported by gflow.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from gfn.estimators import DiscretePolicyEstimator
from gfn.gym import HyperGrid
from gfn.preprocessors import KHotPreprocessor
from torchgfn_tb import tb_training


def parse_args() -> argparse.Namespace:
    """Benchmark settings, shared with benchmarks/hypergrid_tb.py."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ndim", type=int, required=True)
    p.add_argument("--height", type=int, required=True)
    p.add_argument("--r0", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-logz", type=float, default=1e-1)
    p.add_argument("--epsilon", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, required=True)
    p.add_argument("--max-seconds", type=float, required=True)
    p.add_argument("--eval-every", type=int, required=True)
    p.add_argument("--tv-target", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def all_states(ndim: int, height: int) -> torch.Tensor:
    """Every grid point, row i holding the base-`height` digits of i (first coordinate lowest)."""
    index = torch.arange(height**ndim)
    radix = height ** torch.arange(ndim)
    return (index[:, None] // radix) % height


@torch.no_grad()
def exact_tv(env: HyperGrid, pf: DiscretePolicyEstimator, grid: torch.Tensor) -> float:
    """Total variation between the sampler's exact terminal distribution and R/Z."""
    states = env.States(grid.clone())
    logits = pf(states).double().masked_fill(~states.forward_masks, float("-inf"))
    probs = logits.softmax(dim=-1)
    ndim, height = env.ndim, env.height
    radix = height ** torch.arange(ndim)
    parent, action = (grid < height - 1).nonzero(as_tuple=True)
    child = parent + radix[action]
    edge_prob = probs[parent, action]
    reach = torch.zeros(len(grid), dtype=torch.float64)
    reach[0] = 1.0
    total = reach.clone()
    for _ in range(ndim * (height - 1)):
        reach = torch.zeros_like(reach).index_add(0, child, edge_prob * reach[parent])
        total += reach
    learned = total * probs[:, -1]
    reward = env.reward(states).double()
    target = reward / reward.sum()
    return float(0.5 * (learned - target).abs().sum())


def main() -> None:
    """Train until the iteration or wall-time budget runs out, evaluating every `eval_every`
    iterations with the clock stopped; print the curve as JSON."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    env = HyperGrid(
        ndim=args.ndim,
        height=args.height,
        reward_fn_kwargs={"R0": args.r0, "R1": 0.5, "R2": 2.0},
    )
    preprocessor = KHotPreprocessor(height=args.height, ndim=args.ndim)
    gflownet, sampler, optimizer = tb_training(
        env, preprocessor, args.hidden, args.layers, args.lr, args.lr_logz
    )
    on_policy = args.epsilon == 0.0
    grid = all_states(args.ndim, args.height)

    curve = []
    seconds, iteration = 0.0, 0
    while iteration < args.iterations and seconds < args.max_seconds:
        start = time.perf_counter()
        for _ in range(args.eval_every):
            trajectories = sampler.sample_trajectories(
                env, n=args.batch, save_logprobs=on_policy, epsilon=args.epsilon
            )
            loss = gflownet.loss(env, trajectories, recalculate_all_logprobs=not on_policy)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - start
        iteration += args.eval_every
        curve.append(
            {"iteration": iteration, "seconds": seconds, "tv": exact_tv(env, gflownet.pf, grid)}
        )
    print(json.dumps({"curve": curve}))


if __name__ == "__main__":
    main()

"""torchgfn side of the throughput benchmark; runs inside the peer's own virtual environment.

TB training iterations on torchgfn's HyperGrid (4-D H=8, KHotPreprocessor) or BitSequence
(n = 120, k = 8; each of the 15 word slots one-hot over the 256 words and "empty") through its
public API: MLP (2 x 256, leaky ReLU), DiscretePolicyEstimator with a uniform P_B, TBGFlowNet,
Sampler keeping the log-probabilities it computed while sampling (its fastest on-policy path),
and the same fused Adam and parameter groups as gflow. Prints one JSON object: iterations, wall
and CPU seconds of the timed iterations. Never imported by gflow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from gfn.gym import BitSequence, HyperGrid
from gfn.preprocessors import KHotPreprocessor, Preprocessor
from torchgfn_tb import tb_training

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from timing import time_iterations  # noqa: E402


class WordSlots(Preprocessor):
    """Each word slot one-hot over the words and "empty" (-1), concatenated: gflow's
    featurization of bit sequences."""

    def __init__(self, words: int, vocab: int):
        super().__init__(output_dim=words * (vocab + 1))
        self.vocab = vocab

    def preprocess(self, states) -> torch.Tensor:  # noqa: ANN001 - torchgfn States
        slots = (states.tensor.long() + 1).clamp(max=self.vocab)
        return torch.nn.functional.one_hot(slots, self.vocab + 1).flatten(-2).float()


def parse_args() -> argparse.Namespace:
    """Benchmark settings, shared with benchmarks/throughput.py."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--env", choices=("hypergrid", "bitseq"), required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--min-iterations", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def main() -> None:
    """Build the environment and the TB model, time training iterations, print JSON."""
    args = parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    if args.env == "hypergrid":
        env = HyperGrid(
            ndim=4,
            height=8,
            reward_fn_kwargs={"R0": 1e-3, "R1": 0.5, "R2": 2.0},
            device=args.device,
        )
        preprocessor = KHotPreprocessor(height=8, ndim=4)
    else:
        env = BitSequence(
            word_size=8, seq_size=120, n_modes=60, seed=args.seed, device_str=args.device
        )
        preprocessor = WordSlots(env.words_per_seq, 2**8)
    gflownet, sampler, optimizer = tb_training(
        env, preprocessor, args.hidden, args.layers, 1e-3, 1e-1, args.device
    )

    def step() -> None:
        trajectories = sampler.sample_trajectories(env, n=args.batch, save_logprobs=True)
        loss = gflownet.loss(env, trajectories, recalculate_all_logprobs=False)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    print(json.dumps(time_iterations(step, args)))


if __name__ == "__main__":
    main()

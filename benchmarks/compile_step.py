"""Does `torch.compile` pay for a sampling step on the CPU? Compile time and time per step.

One forward sampling step of the hypergrid TB benchmark (4-D H=8, a 2 x 256 MLP with leaky ReLU,
batch 16, one torch thread) as one function: the features and forward mask looked up in the
environment's state table, the MLP, the masked softmax, the exponential race and its argmax, and
the step (the children table): what `sample_forward` runs at every step, fused into one graph.
The script times it eager and compiled by `torch.compile` (inductor; static shapes, and dynamic
shapes as the shrinking batch of a rollout needs), with the compile time of each, and writes
benchmarks/results/compile_step.json.

    .venv/bin/python benchmarks/compile_step.py      # a few minutes (each compile: 15-60 s)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "compile_step.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--calls", type=int, default=3000, help="timed calls per variant")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.batch < 1 or args.calls < 1:
        p.error("--batch and --calls must be >= 1")
    return args


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Eager and compiled steps: compile seconds and CPU milliseconds per call."""
    import torch
    import torch.nn.functional as F
    from gflow.envs.hypergrid import HyperGrid

    from gflow.policies.mlp import SLOPE, MLPPolicy
    from gflow.tabular import state_table

    torch.set_num_threads(1)
    torch.manual_seed(0)
    env = HyperGrid(4, 8, r0=1e-3)
    table = state_table(env)
    assert table is not None
    policy = MLPPolicy(env.feature_dim, env.n_actions, env.n_backward).requires_grad_(False)
    (l1, l2), head = policy._trunk_linears, policy.forward_head
    tensors = (table.features, table.forward_mask, table.children)
    weights = (l1.weight, l1.bias, l2.weight, l2.bias, head.weight, head.bias)

    def step(ids: Any, features: Any, mask: Any, children: Any, *w: Any) -> tuple[Any, ...]:
        """One sampling step on a batch of state ids: activations, action, next ids."""
        x = features[ids]
        h1 = F.leaky_relu(F.linear(x, w[0], w[1]), SLOPE)
        h2 = F.leaky_relu(F.linear(h1, w[2], w[3]), SLOPE)
        logits = F.linear(h2, w[4], w[5])
        probs = torch.where(mask[ids], logits, float("-inf")).softmax(-1)
        action = (probs / torch.empty_like(probs).exponential_()).argmax(-1)
        return x, h1, h2, action, children[ids, action]

    ids = torch.randint(0, len(table.features), (args.batch,))

    def per_call(fn: Any) -> float:
        for _ in range(50):
            fn(ids, *tensors, *weights)
        start = time.process_time()
        for _ in range(args.calls):
            fn(ids, *tensors, *weights)
        return 1e3 * (time.process_time() - start) / args.calls

    results: dict[str, Any] = {"eager": {"ms_per_step": per_call(step)}}
    for name, dynamic in (("compiled (static shapes)", False), ("compiled (dynamic)", True)):
        torch._dynamo.reset()
        compiled = torch.compile(step, dynamic=dynamic)
        start = time.perf_counter()
        compiled(ids, *tensors, *weights)
        seconds = time.perf_counter() - start
        results[name] = {"compile_seconds": seconds, "ms_per_step": per_call(compiled)}
    return results


def main(argv: list[str] | None = None) -> None:
    """Measure, print and write the report."""
    args = parse_args(argv)
    load_before = list(os.getloadavg())
    results = measure(args)
    import torch

    from gflow.checkpoint import atomic_write

    report = {
        "benchmark": "compile_step",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": list(os.getloadavg()),
        "batch": args.batch,
        "calls": args.calls,
        "results": results,
    }
    for name, r in results.items():
        extra = f", compile {r['compile_seconds']:.1f} s" if "compile_seconds" in r else ""
        print(f"{name:26s} {r['ms_per_step']:.3f} ms per step{extra}")
    data = json.dumps(report, indent=1).encode()
    atomic_write(args.out, lambda f: f.write(data))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""What the torchgfn peer scripts share: TB built through torchgfn's public API as gflow's side
is. Runs inside the peer's own virtual environment; never imported by gflow."""

from __future__ import annotations

from typing import Any

import torch
from gfn.estimators import DiscretePolicyEstimator
from gfn.gflownet import TBGFlowNet
from gfn.samplers import Sampler
from gfn.utils.modules import MLP


def tb_training(
    env: Any,
    preprocessor: Any,
    hidden: int,
    layers: int,
    lr: float,
    lr_logz: float,
    device: str = "cpu",
) -> tuple[TBGFlowNet, Sampler, torch.optim.Optimizer]:
    """TB on `env`: an MLP forward policy (`layers` x `hidden`, leaky ReLU) over `preprocessor`,
    a uniform P_B and log Z 0 on `device`; its sampler, and fused Adam as gflow's training loop
    uses (log Z at `lr_logz`), so that the optimizer step costs the same on both sides."""
    module = MLP(
        input_dim=preprocessor.output_dim,
        output_dim=env.n_actions,
        hidden_dim=hidden,
        n_hidden_layers=layers,
        activation_fn="leaky_relu",
    )
    pf = DiscretePolicyEstimator(module, env.n_actions, preprocessor=preprocessor)
    pb = DiscretePolicyEstimator.uniform(env.n_actions, preprocessor=preprocessor)
    gflownet = TBGFlowNet(pf=pf, pb=pb, init_logZ=0.0).to(device)
    optimizer = torch.optim.Adam(gflownet.pf_pb_parameters(), lr=lr, fused=True)
    optimizer.add_param_group({"params": gflownet.logz_parameters(), "lr": lr_logz})
    return gflownet, Sampler(estimator=pf), optimizer

"""MOGFN-PC benchmarks: the shared evaluation on hand-made samples, grid sampling order, plots,
presets, and each `gflow bench` command end to end at a tiny size."""

import json

import numpy as np
import pytest
import torch
from gflow.envs.mo_hypergrid import MOHyperGrid
from torch import nn

from gflow.bench import mo_hypergrid, ngrams
from gflow.bench.mogfn_eval import EvalConfig, mogfn_metrics, sample_grid
from gflow.bench.mogfn_pc import resolve
from gflow.bench.plots import curves, pareto_pairs
from gflow.cli import build_parser, main
from gflow.conditioning import ConditionalEnv, Conditioning, TemperatureDistribution
from gflow.policies.base import Policy, PolicyOutput

PNG = b"\x89PNG\r\n\x1a\n"

# Two preferences, three samples each; S(r, w) = w . r.
PREFS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
OBJECTIVES = torch.tensor(
    [
        [[0.9, 0.1], [0.5, 0.5], [0.2, 0.2]],  # rewards under w=(1,0): 0.9, 0.5, 0.2
        [[0.1, 0.9], [0.4, 0.4], [0.1, 0.3]],  # rewards under w=(0,1): 0.9, 0.4, 0.3
    ]
)
ITEMS = [["AAAA", "AAAB", "BBBB"], ["CCCC", "CCDD", "DDDD"]]


def test_metrics_on_known_samples():
    out = mogfn_metrics(PREFS, OBJECTIVES, ITEMS, 2, "levenshtein", Conditioning(2), [[1, 1]])
    # Top-2 rewards: (0.9 + 0.5) / 2 and (0.9 + 0.4) / 2.
    assert out["top_k_reward"] == pytest.approx((0.7 + 0.65) / 2)
    assert [row["top_k_reward"] for row in out["per_preference"]] == pytest.approx([0.7, 0.65])
    # Top-2 items: AAAA/AAAB (edit distance 1) and CCCC/CCDD (2).
    assert out["top_k_diversity"] == pytest.approx(1.5)
    # Front {(.9,.1), (.5,.5), (.1,.9)}: 0.9*0.1 + 0.5*0.4 + 0.1*0.4 above reference 0.
    assert out["hypervolume"] == pytest.approx(0.33)
    assert out["n_pareto"] == 3
    # R2 with weights (1,0), (0,1) and utopia (1,1): 1 - 0.9 for each weight.
    assert out["r2"] == pytest.approx(0.1)
    assert out["true_hypervolume"] == pytest.approx(1.0)
    assert out["hypervolume_ratio"] == pytest.approx(0.33)
    assert out["igd_plus"] == pytest.approx(np.sqrt(0.5))  # (0.5, 0.5) is nearest to (1, 1)
    first = out["per_preference"][0]
    assert first["best_item"] == "AAAA" and first["best_objectives"] == pytest.approx([0.9, 0.1])
    assert first["mean_reward"] == pytest.approx((0.9 + 0.5 + 0.2) / 3)
    json.dumps(out)  # everything is JSON-ready


def test_metrics_follow_the_scalarization():
    log_convex = Conditioning(2, scalarization="log_convex")
    out = mogfn_metrics(PREFS, OBJECTIVES, ITEMS, 2, "levenshtein", log_convex)
    # With one-hot preferences, log-convex S is the preferred objective itself: same top-K.
    assert out["top_k_reward"] == pytest.approx((0.7 + 0.65) / 2)
    half = mogfn_metrics(
        torch.full((1, 2), 0.5), OBJECTIVES[:1], ITEMS[:1], 2, "levenshtein", log_convex
    )
    assert half["top_k_reward"] == pytest.approx((0.3 + 0.5) / 2)  # sqrt(.9*.1), sqrt(.5*.5)


@pytest.mark.parametrize(
    "objectives, items, match",
    [
        (OBJECTIVES[:1], ITEMS, "objectives must be"),
        (OBJECTIVES[..., :1], ITEMS, "objectives must be"),
        (OBJECTIVES, [ITEMS[0]], "items must be"),
        (OBJECTIVES, [ITEMS[0], ITEMS[1][:2]], "items must be"),
        (OBJECTIVES + 1, ITEMS, r"\[0, 1\]"),
    ],
)
def test_metrics_refuse_bad_input(objectives, items, match):
    with pytest.raises(ValueError, match=match):
        mogfn_metrics(PREFS, objectives, items, 2, "levenshtein", Conditioning(2))


@pytest.mark.parametrize(
    "kwargs", [{"k": 1}, {"k": 5, "samples": 4}, {"n_per_side": 1}, {"beta": -1.0}]
)
def test_eval_config_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError):
        EvalConfig(**kwargs)


class PreferenceFollower(Policy):
    """Stops at once when w_1 = 0, never stops early when w_1 = 1 (reads the cond header)."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, features, cond=None):
        logits = torch.zeros(len(features), 3)
        logits[:, 2] = 50 * (0.5 - cond[:, 1])
        return PolicyOutput(logits, None, torch.zeros(len(features)))


def test_sample_grid_keeps_samples_with_their_preference():
    conditioning = Conditioning(2, TemperatureDistribution("uniform", (1.0, 4.0)))
    env = ConditionalEnv(MOHyperGrid(4, ["branin", "currin"]), conditioning)
    config = EvalConfig(n_per_side=2, samples=6, k=2, batch_size=5)  # chunks split preferences
    grid = sample_grid(env, PreferenceFollower(), config, lambda s: [tuple(c) for c in s.tolist()])
    assert grid.objectives.shape == (2, 6, 2) and grid.beta == 4.0
    for w, items, objectives in zip(grid.preferences, grid.items, grid.objectives, strict=True):
        corner = (3, 3) if w[0] == 1 else (0, 0)
        assert items == [corner] * 6
        assert torch.allclose(objectives, env.reward_components(torch.tensor([corner] * 6)))


def test_pareto_pairs_and_curves_write_png(tmp_path):
    points = np.random.default_rng(0).random((40, 3))
    names = ["a", "b", "c"]
    pareto_pairs(points, names, tmp_path / "p.png", color=points[:, 0], true_front=[[1, 1, 1]])
    series = {"loss": [(1, 3.0), (2, 1.0)], "hv": [], "r2": [(1, 0.5)]}
    curves(series, tmp_path / "c.png", log_scale=("loss",))
    for name in ("p.png", "c.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG)
    assert {p.name for p in tmp_path.iterdir()} == {"p.png", "c.png"}  # no temporary files
    with pytest.raises(ValueError, match="objectives must be"):
        pareto_pairs(points, ["a", "b"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="non-empty"):
        curves({"hv": []}, tmp_path / "bad.png")


def test_paper_preset_and_explicit_flags():
    args = build_parser().parse_args(["bench", "ngrams", "--paper", "--lr", "0.5"])
    opts = resolve(args, ngrams.SHORT, ngrams.PAPER)
    assert opts.lr == 0.5 and opts.batch_size == ngrams.PAPER.batch_size
    args = build_parser().parse_args(["bench", "mo-hypergrid", "--steps", "7"])
    opts = resolve(args, mo_hypergrid.SHORT, mo_hypergrid.PAPER)
    assert opts.steps == 7 and opts.hidden == mo_hypergrid.SHORT.hidden


TINY = ["--steps", "4", "--eval-every", "2", "--samples", "4", "--k", "2", "--curve-samples", "2"]
TINY += ["--grid", "3", "--hidden", "16", "--batch-size", "8", "--threads", "1", "--device", "cpu"]


@pytest.mark.parametrize(
    "name, options",
    [
        ("mo-hypergrid", ["--height", "6", "--objectives", "branin,currin,beale"]),
        ("ngrams", ["--min-length", "6", "--max-length", "8"]),
        ("dna-aptamers", ["--min-length", "12", "--max-length", "12"]),
    ],
)
def test_benchmark_cli_end_to_end(name, options, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["bench", name, *TINY, *options, "--out", str(out)]) == 0
    assert "results: " in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == name and results["preset"] == "short"
    assert results["training"]["steps"] == 4 and results["training"]["steps_per_second"] > 0
    assert results["training"]["trajectories_per_second"] > 0
    assert [point["step"] for point in results["curve"]] == [0, 2, 4]
    ev = results["evaluation"]
    m = len(results["settings"]["objectives"])
    n_prefs = {2: 3, 3: 6}[m]  # 3 points per simplex edge
    assert ev["n_preferences"] == n_prefs == len(ev["per_preference"])
    assert ev["samples_per_preference"] == 4 and ev["beta"] == results["settings"]["beta_max"]
    assert 0 <= ev["hypervolume"] <= 1 and ev["r2"] >= 0 and 0 <= ev["top_k_reward"] <= 1
    assert "policy" in results["notes"]
    for plot in results["plots"]:
        assert (out / plot).read_bytes().startswith(PNG)
    if name == "mo-hypergrid":
        assert ev["hypervolume"] <= ev["true_hypervolume"] + 1e-12
        assert 0 <= ev["exact_tv_mean"] <= ev["exact_tv_max"] <= 1
        assert len(ev["exact_per_preference"]) == n_prefs


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--eval-every", "-1"], "--eval-every"),
        (["--k", "9", "--samples", "4"], "k <= samples"),
        (["--beta-min", "5", "--beta-max", "2"], "uniform"),
    ],
)
def test_bad_benchmark_options_are_one_line_errors(argv, message, tmp_path, capsys):
    code = main(["bench", "ngrams", *TINY[:2], "--threads", "1", *argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results.json").exists()

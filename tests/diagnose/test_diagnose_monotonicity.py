"""ε-DPO monotonicity classes (seed 003 §3.2, Fig. 4a) on a hand-made case and on a trained tiny run."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from evalharness.diagnose import run
from evalharness.diagnose.common import DiagnoseConfig
from evalharness.diagnose.monotonicity import classify, rows_of
from tests.diagnose.handmade import Bigram, pair

# Raw logits per context token, V = 6. Row 0 and row 5 peak on token 2, row 4 on token 3, row 1 is uniform.
POLICY = Bigram([[0, 0, 2, 0, 0, 0], [0] * 6, [0] * 6, [0] * 6, [0, 0, 0, 2, 0, 0], [0, 0, 1, 0, 0, 0]])
REFERENCE = Bigram([[0] * 6] * 6)  # uniform: f_ref = 0, so the perturbed logits are (1±ε)·f_π
PAIRS = [
    pair((0,), (2,), (1,), (3,), "A"),  # y+ peaked, y- uniform
    pair((5,), (2,), (1,), (3,), "A'"),  # a weaker peak
    pair((1,), (2,), (4,), (3,), "B"),  # y+ uniform, y- peaked
    pair((0,), (2,), (0,), (2,), "C"),  # identical sides
]


def test_hand_made_classes_and_margins():
    # log softmax(λ·(0,0,2,0,0,0))[2] = 2λ - log(5 + e^{2λ});  uniform: log(1/6) = -1.791759.
    #   λ = 1: -0.516814 -> z_A = -0.516814 + 1.791759 = 1.274946
    #   λ = 1.1 (β/(1+ε), ε = 0.1): -0.440842 -> z⁻ = 1.350917;   λ = 0.9 (β/(1-ε)): -0.602399 -> z⁺ = 1.189361
    # z⁻ > z > z⁺: z falls as β grows -> "decreasing" (ε-DPO relaxes, s = +1). Pair B is the mirror image:
    # z = -1.274946, z⁻ < z < z⁺ -> "increasing" (s = -1). Pair C: z = 0 at every β -> "neither".
    # Peak 1 instead of 2 (A'): z = 0.748168, z⁻ = 0.811797, z⁺ = 0.682257 -> decreasing.
    pc = classify(POLICY, REFERENCE, PAIRS, pad=0, epsilon=0.1)
    assert pc.sign == [1.0, 1.0, -1.0, 0.0]
    assert pc.z == pytest.approx([1.274946, 0.748168, -1.274946, 0.0], abs=1e-5)
    assert pc.z_minus == pytest.approx([1.350917, 0.811797, -1.350917, 0.0], abs=1e-5)
    assert pc.z_plus == pytest.approx([1.189361, 0.682257, -1.189361, 0.0], abs=1e-5)
    # The reference is uniform, so h = z and the implicit reward margin is β·z.
    rows = {r.name: r for r in rows_of(pc, [p.id for p in PAIRS], beta=0.1)}
    assert rows["share/decreasing"].value == 0.5 and rows["share/increasing"].value == 0.25
    assert rows["share/neither"].value == 0.25
    # decreasing: margins 0.127495 and 0.074817 -> mean 0.101156; a bootstrap CI inside [min, max]
    dec = rows["margin/decreasing"].data
    assert dec["mean"] == pytest.approx(0.101156, abs=1e-5) and dec["n"] == 2
    assert 0.0748 <= dec["ci_low"] < dec["ci_high"] <= 0.1275
    assert rows["margin/increasing"].value == pytest.approx(-0.127495, abs=1e-5)
    assert rows["margin/increasing"].data["n"] == 1 and math.isnan(rows["margin/increasing"].data["ci_low"])


def test_classes_agree_with_the_e_dpo_loss_decision():
    # ε-DPO trains pair i with β̃ = β/(1 + ε·s_i): the diagnostic's classes are the loss's own per-pair choices.
    import torch

    from trainers.loop import build_inputs
    from trainers.losses.edpo import E_DPO
    from trainers.setup import Prepared

    prepared = Prepared(accelerator=SimpleNamespace(device=torch.device("cpu")), model=POLICY,
                        reference=REFERENCE, tokenizer=None, optimizer=None, scheduler=None, examples=[], lengths=[],
                        pad_id=0, cache=None, cache_report=None, truncated=0, skipped=0)
    params = E_DPO.make_params({"beta": 0.1, "epsilon": 0.1})
    inputs, _ = build_inputs(E_DPO.needs, PAIRS, prepared, E_DPO.initial_state(params), 1.0)
    out = E_DPO.fn(inputs, params)
    assert out.step_stats["s"].tolist() == classify(POLICY, REFERENCE, PAIRS, 0, epsilon=0.1).sign
    # β̃ = 0.1/1.1, 0.1/1.1, 0.1/0.9, 0.1
    assert out.step_stats["beta_tilde"].tolist() == pytest.approx([0.090909, 0.090909, 0.111111, 0.1], abs=1e-6)


def test_trained_run_margin_uses_the_runs_beta(sweep_store, tmp_path):
    cfg = DiagnoseConfig(checkpoints=["dpo-0.5"], limit=6, out=str(tmp_path))
    report = run("monotonicity", cfg, sweep_store)
    lines = report.table.splitlines()
    assert report.computed == 1 and len(lines) == 5
    assert all(" 0.5 " in line and " 0.01 " in line for line in lines[2:])  # β from runs.params, ε default
    shares = [float(line.split()[5]) for line in lines[2:]]
    assert sum(shares) == pytest.approx(1.0) and report.png.exists()
    again = run("monotonicity", cfg, sweep_store)
    assert (again.computed, again.cached, again.table) == (0, 1, report.table)

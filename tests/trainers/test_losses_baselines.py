"""Hand-computed checks of the baseline losses (LOSSES "Baselines"). Working is shown beside each number.

Notation: h = (lpπ(y+) - lpref(y+)) - (lpπ(y-) - lpref(y-)); σ(x) = 1/(1+e^-x); -log σ(x) = log(1 + e^-x).
Values used repeatedly: σ(0.2) = 0.5498340, σ(-0.2) = 0.4501660, -log σ(0.2) = 0.5981389, -log σ(-0.2) = 0.7981389.
"""

from __future__ import annotations

import math

import pytest
import torch

from trainers.losses.adaptive import BETA_DPO, TR_DPO
from trainers.losses.dpo_variants import CDPO, HINGE, R_DPO, ROBUST_DPO
from trainers.losses.kto import BCO_PAIR, KTO
from trainers.losses.reference_free import CPO, ORPO, RRHF, SIMPO, SLIC_HF, log_odds
from trainers.losses.reward_model import BRADLEY_TERRY
from trainers.spec import LossInputs, ParamError

TOL = dict(rel=0, abs=1e-6)


def vec(values, grad=False, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype, requires_grad=grad)


def pair(pc, pr, rc=None, rr=None, tc=None, tr=None, state=None) -> LossInputs:
    """Policy log-probs require grad; reference log-probs (0 unless given) and lengths (1 unless given) do not."""
    n = len(pc)
    return LossInputs(
        policy_chosen_logps=vec(pc, grad=True),
        policy_rejected_logps=vec(pr, grad=True),
        reference_chosen_logps=vec(rc if rc is not None else [0.0] * n),
        reference_rejected_logps=vec(rr if rr is not None else [0.0] * n),
        chosen_lengths=vec(tc if tc is not None else [1.0] * n),
        rejected_lengths=vec(tr if tr is not None else [1.0] * n),
        state=state,
    )


def run(spec, inputs, **overrides):
    return spec.fn(inputs, spec.make_params(overrides))


def grads(inputs: LossInputs, out) -> tuple[list[float], list[float]]:
    out.losses.sum().backward()
    return inputs.policy_chosen_logps.grad.tolist(), inputs.policy_rejected_logps.grad.tolist()


# ---------------------------------------------------------------------------------------------------- cdpo


def test_cdpo_value():
    # β=0.1, h = (-1 - 0) - (-3 - 0) = 2, z = βh = 0.2.
    # (1-ε)·(-log σ(0.2)) + ε·(-log σ(-0.2)) = 0.9·0.5981389 + 0.1·0.7981389 = 0.6181389
    out = run(CDPO, pair([-1.0], [-3.0]), beta=0.1, epsilon=0.1)
    assert out.losses.item() == pytest.approx(0.6181389, **TOL)
    assert out.chosen_rewards.item() == pytest.approx(-0.1) and out.rejected_rewards.item() == pytest.approx(-0.3)


def test_cdpo_eps0_is_dpo_by_hand():
    # ε=0: -log σ(βh). h=2: -log σ(0.2) = 0.5981389. h = (-4) - (-1) = -3: -log σ(-0.3) = log(1 + e^0.3) = 0.8543552
    out = run(CDPO, pair([-1.0, -4.0], [-3.0, -1.0]), beta=0.1, epsilon=0.0)
    assert out.losses.tolist() == pytest.approx([0.5981389, 0.8543552], **TOL)


def test_cdpo_gradient_vanishes_at_the_conservative_margin():
    # dL/dh = β[-(1-ε)σ(-z) + εσ(z)]. At z=0.2, ε=0.1: 0.1·(-0.9·0.4501660 + 0.1·0.5498340) = -0.0350166.
    # It is zero where σ(z)/σ(-z) = e^z = (1-ε)/ε = 9: z = log 9, h = 10·log 9 = 21.9722458 (DPO's never is).
    inputs = pair([-1.0, 10 * math.log(9.0)], [-3.0, 0.0])
    g_chosen, g_rejected = grads(inputs, run(CDPO, inputs, beta=0.1, epsilon=0.1))
    assert g_chosen == pytest.approx([-0.0350166, 0.0], **TOL)
    assert g_rejected == pytest.approx([0.0350166, 0.0], **TOL)


# ---------------------------------------------------------------------------------------------------- robust-dpo


def test_robust_dpo_value():
    # [(1-ε)·0.5981389 - ε·0.7981389]/(1-2ε) = (0.5383250 - 0.0798139)/0.8 = 0.5731389
    # (equivalently -log σ(z) - εz/(1-2ε) = 0.5981389 - 0.02/0.8, since -log σ(-z) = -log σ(z) + z)
    out = run(ROBUST_DPO, pair([-1.0], [-3.0]), beta=0.1, epsilon=0.1)
    assert out.losses.item() == pytest.approx(0.5731389, **TOL)


def test_robust_dpo_eps0_is_dpo_by_hand():
    out = run(ROBUST_DPO, pair([-1.0, -4.0], [-3.0, -1.0]), beta=0.1, epsilon=0.0)
    assert out.losses.tolist() == pytest.approx([0.5981389, 0.8543552], **TOL)


def test_robust_dpo_gradient_is_dpo_gradient_minus_a_constant():
    # dL/dh = β[-σ(-z) - ε/(1-2ε)]: DPO's -βσ(-z) shifted by -βε/(1-2ε) = -0.0125, so it never vanishes.
    # h=2  (z=0.2): -0.1·0.4501660 - 0.0125 = -0.0575166
    # h=10 (z=1):   -0.1·σ(-1) - 0.0125 = -0.1·0.2689414 - 0.0125 = -0.0393941
    inputs = pair([-1.0, 0.0], [-3.0, -10.0])
    g_chosen, _ = grads(inputs, run(ROBUST_DPO, inputs, beta=0.1, epsilon=0.1))
    assert g_chosen == pytest.approx([-0.0575166, -0.0393941], **TOL)


# ---------------------------------------------------------------------------------------------------- hinge


def test_hinge_value_and_gradient_inside_the_margin():
    # β=0.1, h=2: relu(1 - 0.2) = 0.8; d/dlpπ(y+) = -β = -0.1, d/dlpπ(y-) = +0.1
    inputs = pair([-1.0], [-3.0])
    out = run(HINGE, inputs, beta=0.1)
    assert out.losses.item() == pytest.approx(0.8, **TOL)
    assert grads(inputs, out) == (pytest.approx([-0.1]), pytest.approx([0.1]))


def test_hinge_zero_with_zero_gradient_beyond_the_margin():
    # h = 20 (βh = 2) and h = 10 (βh = 1, on the hinge): relu(≤ 0) = 0, and no gradient beyond the margin.
    inputs = pair([0.0, 0.0], [-20.0, -10.0])
    out = run(HINGE, inputs, beta=0.1)
    assert out.losses.tolist() == [0.0, 0.0]
    g_chosen, g_rejected = grads(inputs, out)
    assert g_chosen[0] == 0.0 and g_rejected[0] == 0.0


# ---------------------------------------------------------------------------------------------------- r-dpo


def test_r_dpo_value_and_length_sign():
    # β=0.1, h=2, α=0.01. |y+|=30, |y-|=10: z = 0.2 - 0.01·20 = 0 -> log 2 = 0.6931472
    # |y+|=10, |y-|=30: z = 0.2 + 0.2 = 0.4 -> -log σ(0.4) = 0.5130153 (a longer chosen answer costs more)
    inputs = pair([-1.0, -1.0], [-3.0, -3.0], tc=[30.0, 10.0], tr=[10.0, 30.0])
    out = run(R_DPO, inputs, beta=0.1, alpha=0.01)
    assert out.losses.tolist() == pytest.approx([math.log(2.0), 0.5130153], **TOL)
    # d/dlpπ(y+) = -β σ(-z): -0.1·0.5 = -0.05 at z=0
    assert grads(inputs, out)[0][0] == pytest.approx(-0.05, **TOL)


def test_r_dpo_alpha0_is_dpo_by_hand():
    out = run(R_DPO, pair([-1.0], [-3.0], tc=[30.0], tr=[10.0]), beta=0.1, alpha=0.0)
    assert out.losses.item() == pytest.approx(0.5981389, **TOL)


# ---------------------------------------------------------------------------------------------------- simpo


def test_simpo_value_and_gradient():
    # β=2, γ=0.5. mlp(y+) = -4/4 = -1, mlp(y-) = -12/6 = -2: z = 2·(-1) - 2·(-2) - 0.5 = 1.5
    # -log σ(1.5) = log(1 + e^-1.5) = log(1.2231302) = 0.2014133
    # d/dlpπ(y+) = -σ(-1.5)·β/|y+| = -0.1824255·2/4 = -0.0912128
    inputs = pair([-4.0], [-12.0], tc=[4.0], tr=[6.0])
    out = run(SIMPO, inputs)
    assert out.losses.item() == pytest.approx(0.2014133, **TOL)
    assert out.chosen_rewards.item() == pytest.approx(-2.0) and out.rejected_rewards.item() == pytest.approx(-4.0)
    assert grads(inputs, out)[0][0] == pytest.approx(-0.0912128, **TOL)
    assert SIMPO.needs == frozenset()


def test_simpo_uses_mean_log_prob():
    # Doubling both lengths at the same per-token log-prob doubles the summed log-probs but not the loss.
    short = run(SIMPO, pair([-4.0], [-12.0], tc=[4.0], tr=[6.0])).losses.item()
    long = run(SIMPO, pair([-8.0], [-24.0], tc=[8.0], tr=[12.0])).losses.item()
    assert long == pytest.approx(short, rel=0, abs=1e-12) and short == pytest.approx(0.2014133, **TOL)


# ---------------------------------------------------------------------------------------------------- cpo


def test_cpo_value_and_gradient():
    # β=0.1, λ=1. lp+ = -10 over 5 tokens, lp- = -12: -log σ(0.1·(-10 + 12)) = -log σ(0.2) = 0.5981389; NLL = 10/5 = 2
    # loss = 2.5981389; d/dlpπ(y+) = -βσ(-0.2) - λ/|y+| = -0.0450166 - 0.2 = -0.2450166
    inputs = pair([-10.0], [-12.0], tc=[5.0], tr=[7.0])
    out = run(CPO, inputs)
    assert out.losses.item() == pytest.approx(2.5981389, **TOL)
    assert out.metrics["nll"].item() == pytest.approx(2.0)
    assert grads(inputs, out) == (pytest.approx([-0.2450166], abs=1e-6), pytest.approx([0.0450166], abs=1e-6))


def test_cpo_without_nll_is_reference_free_dpo():
    assert run(CPO, pair([-10.0], [-12.0], tc=[5.0]), lambda_nll=0.0).losses.item() == pytest.approx(0.5981389, **TOL)


# ---------------------------------------------------------------------------------------------------- orpo


def test_orpo_value_and_gradient():
    # mlp(y+) = -1/2 = -0.5, mlp(y-) = -3/3 = -1, λ = 0.1.
    # log odds(y+) = -0.5 - log(1 - e^-0.5) = -0.5 - log(0.3934693) = 0.4327521
    # log odds(y-) = -1 - log(1 - e^-1) = -1 - log(0.6321206) = -0.5413249
    # -log σ(0.4327521 + 0.5413249) = -log σ(0.9740770) = 0.3202998; NLL = 0.5; loss = 0.5 + 0.1·0.3202998 = 0.5320300
    # d/dlp+ = -1/2 + λ·(-σ(-0.9740770))·(d log odds/d mlp = 1/(1 - e^-0.5))·(1/2)
    #        = -0.5 - 0.1·0.2740686·2.5414941·0.5 = -0.5348272
    inputs = pair([-1.0], [-3.0], tc=[2.0], tr=[3.0])
    out = run(ORPO, inputs)
    assert out.losses.item() == pytest.approx(0.5320300, **TOL)
    assert out.metrics["log_odds_ratio"].item() == pytest.approx(0.9740770, **TOL)
    assert grads(inputs, out)[0][0] == pytest.approx(-0.5348272, **TOL)


def test_orpo_finite_when_p_is_one():
    # float32, mlp = 0 exactly (p = 1, odds = ∞) and mlp = -1e-30: the loss and its gradients stay finite.
    inputs = LossInputs(
        policy_chosen_logps=vec([0.0, -1e-30], grad=True, dtype=torch.float32),
        policy_rejected_logps=vec([-2.0, 0.0], grad=True, dtype=torch.float32),
        chosen_lengths=vec([3.0, 3.0], dtype=torch.float32),
        rejected_lengths=vec([3.0, 3.0], dtype=torch.float32),
    )
    out = run(ORPO, inputs)
    assert torch.isfinite(out.losses).all()
    g_chosen, g_rejected = grads(inputs, out)
    assert all(math.isfinite(g) for g in g_chosen + g_rejected)


def test_log_odds_accurate_near_zero_in_float32():
    # log odds(-1e-3) = -1e-3 - log(-expm1(-1e-3)) = 6.9072552 (float64); 1 - exp(x) in float32 would lose ~3 digits.
    assert log_odds(vec([-1e-3], dtype=torch.float32)).item() == pytest.approx(6.9072552, rel=1e-6)


# ---------------------------------------------------------------------------------------------------- rrhf


def test_rrhf_misranked_pair():
    # p+ = -6/3 = -2, p- = -4/4 = -1: rank = max(0, -1 - (-2)) = 1; NLL = 2; loss = 3
    # d/dlp+ = -1/3 (rank) - 1/3 (NLL) = -0.6666667; d/dlp- = +1/4
    inputs = pair([-6.0], [-4.0], tc=[3.0], tr=[4.0])
    out = run(RRHF, inputs)
    assert out.losses.item() == pytest.approx(3.0, **TOL)
    assert grads(inputs, out) == (pytest.approx([-2 / 3]), pytest.approx([0.25]))


def test_rrhf_correctly_ranked_pair_has_only_the_nll():
    # p+ = -3/3 = -1 > p- = -8/4 = -2: rank 0, loss = NLL = 1, no gradient to y-
    inputs = pair([-3.0], [-8.0], tc=[3.0], tr=[4.0])
    out = run(RRHF, inputs)
    assert out.losses.item() == pytest.approx(1.0, **TOL)
    assert grads(inputs, out)[1] == [0.0]


# ---------------------------------------------------------------------------------------------------- slic-hf


def test_slic_hf_value_and_gradient():
    # δ=1, λ=0.5. lp+ = -5 (5 tokens), lp- = -5.5: max(0, 1 + 5 - 5.5) = 0.5; NLL = 1; loss = 0.5 + 0.5 = 1.0
    # d/dlp+ = -1 - λ/5 = -1.1; d/dlp- = +1
    inputs = pair([-5.0], [-5.5], tc=[5.0], tr=[5.0])
    out = run(SLIC_HF, inputs)
    assert out.losses.item() == pytest.approx(1.0, **TOL)
    assert grads(inputs, out) == (pytest.approx([-1.1]), pytest.approx([1.0]))


def test_slic_hf_beyond_the_margin():
    # lp- = -7: max(0, 1 + 5 - 7) = 0; loss = λ·NLL = 0.5; no gradient to y-
    inputs = pair([-5.0], [-7.0], tc=[5.0], tr=[5.0])
    out = run(SLIC_HF, inputs)
    assert out.losses.item() == pytest.approx(0.5, **TOL)
    assert grads(inputs, out)[1] == [0.0]


# ---------------------------------------------------------------------------------------------------- kto


def test_kto_value():
    # β=0.1. r+ = [2, 4], r- = [-1, 3] (reference 0): z = max(0, (2 + 4 - 1 + 3)/4) = 2
    # pair 0: (1 - σ(0.1·(2-2))) + (1 - σ(0.1·(2+1))) = 0.5 + (1 - σ(0.3)) = 0.5 + 0.4255575 = 0.9255575
    # pair 1: (1 - σ(0.1·(4-2))) + (1 - σ(0.1·(2-3))) = 0.4501660 + 0.5249792 = 0.9751452
    out = run(KTO, pair([2.0, 4.0], [-1.0, 3.0]))
    assert out.losses.tolist() == pytest.approx([0.9255575, 0.9751452], **TOL)
    assert out.metrics["kl_estimate"].item() == pytest.approx(2.0)


def test_kto_reference_point_is_detached():
    # With z constant: d/dr+_i = -λ_D β σ(β(r+_i - z)) σ(-β(r+_i - z)).
    # pair 0: -0.1·0.25 = -0.025; pair 1: -0.1·σ(0.2)σ(-0.2) = -0.1·0.2475166 = -0.0247517.
    # A z with gradient would add (1/4)·Σ of the z-derivatives of all four terms to each entry.
    inputs = pair([2.0, 4.0], [-1.0, 3.0])
    out = run(KTO, inputs)
    assert not out.metrics["kl_estimate"].requires_grad
    assert grads(inputs, out)[0] == pytest.approx([-0.025, -0.0247517], **TOL)


def test_kto_reference_point_clamped_at_zero():
    # r+ = [-1, -2], r- = [-3, -4]: mean -2.5 < 0 -> z = 0
    # pair 0: (1 - σ(-0.1)) + (1 - σ(0.3)) = 0.5249792 + 0.4255575 = 0.9505367
    out = run(KTO, pair([-1.0, -2.0], [-3.0, -4.0]))
    assert out.metrics["kl_estimate"].item() == 0.0
    assert out.losses[0].item() == pytest.approx(0.9505367, **TOL)


def test_kto_weights():
    # λ_D=2, λ_U=0.5 on pair 0 of test_kto_value: 2·0.5 + 0.5·0.4255575 = 1.2127787
    out = run(KTO, pair([2.0, 4.0], [-1.0, 3.0]), lambda_d=2.0, lambda_u=0.5)
    assert out.losses[0].item() == pytest.approx(1.2127787, **TOL)


# ---------------------------------------------------------------------------------------------------- bco-pair


def test_bco_pair_value_and_gradient():
    # β=0.1, r+ = 2, r- = -1, δ = 0: -log σ(0.2) - log σ(-(-0.1)) = 0.5981389 + 0.6443967 = 1.2425355
    # d/dlp+ = -β σ(-0.2) = -0.0450166; step stat = (0.2 + (-0.1))/2 = 0.05
    inputs = pair([2.0], [-1.0], state=BCO_PAIR.initial_state(BCO_PAIR.make_params()))
    out = run(BCO_PAIR, inputs)
    assert out.losses.item() == pytest.approx(1.2425355, **TOL)
    assert out.step_stats["pair_reward_mean"].tolist() == pytest.approx([0.05])
    assert grads(inputs, out)[0] == pytest.approx([-0.0450166], **TOL)


def test_bco_pair_uses_the_shift_from_state():
    # δ = 0.05: -log σ(0.2 - 0.05) - log σ(-(-0.1 - 0.05)) = 2·(-log σ(0.15)) = 2·0.6209570 = 1.2419141
    out = run(BCO_PAIR, pair([2.0], [-1.0], state={"delta": 0.05, "count": 10.0}))
    assert out.losses.item() == pytest.approx(1.2419141, **TOL)


def test_bco_pair_running_mean_update():
    # {δ=0, n=0} + pairs [0.05, 0.15] -> δ = 0.1, n = 2; + [0.4] -> δ = (2·0.1 + 0.4)/3 = 0.2, n = 3
    params = BCO_PAIR.make_params()
    state = BCO_PAIR.initial_state(params)
    assert state == {"delta": 0.0, "count": 0.0}
    state = BCO_PAIR.update_state(state, {"pair_reward_mean": vec([0.05, 0.15])}, params)
    assert state == {"delta": pytest.approx(0.1), "count": 2.0}
    state = BCO_PAIR.update_state(state, {"pair_reward_mean": vec([0.4])}, params)
    assert state == {"delta": pytest.approx(0.2), "count": 3.0}


# ---------------------------------------------------------------------------------------------------- beta-dpo


def test_beta_dpo_beta_moves_with_the_batch_margin():
    # β₀=0.1, α=0.6, h = [1, 3]: batch margin 2.
    # M₀=0: β = 0.1·(1 + 0.6·(2 - 0)) = 0.22 -> losses [-log σ(0.22), -log σ(0.66)] = [0.5891850, 0.4166367]
    # M₀=2: β = β₀ = 0.1 (DPO); M₀=3: β = 0.1·(1 - 0.6) = 0.04 (margin below the estimate: β moves down)
    # M₀=5: 0.1·(1 - 1.8) < 0 -> clamped to min_beta = 0.001
    inputs = pair([1.0, 3.0], [0.0, 0.0], state={"margin_ema": 0.0})
    out = run(BETA_DPO, inputs)
    assert out.metrics["beta"].item() == pytest.approx(0.22)
    assert out.losses.tolist() == pytest.approx([0.5891850, 0.4166367], **TOL)
    for ema, beta in [(2.0, 0.1), (3.0, 0.04), (5.0, 0.001)]:
        got = run(BETA_DPO, pair([1.0, 3.0], [0.0, 0.0], state={"margin_ema": ema})).metrics["beta"].item()
        assert got == pytest.approx(beta)


def test_beta_dpo_beta_is_not_differentiated():
    # With β a constant 0.22: d/dlp+_0 = -β σ(-βh_0) = -0.22·σ(-0.22) = -0.22·0.4452208 = -0.0979486
    inputs = pair([1.0, 3.0], [0.0, 0.0], state={"margin_ema": 0.0})
    assert grads(inputs, run(BETA_DPO, inputs))[0][0] == pytest.approx(-0.0979486, **TOL)


def test_beta_dpo_state_carries_the_margin_ema():
    # M₀ ← 0.9·M₀ + 0.1·mean(h): 0 -> 0.1·2 = 0.2 with h = [1, 3]; then 0.9·0.2 + 0.1·0 = 0.18 with h = [-1, 1]
    params = BETA_DPO.make_params()
    state = BETA_DPO.initial_state(params)
    out = run(BETA_DPO, pair([1.0, 3.0], [0.0, 0.0], state=state))
    assert out.step_stats["margin"].tolist() == [1.0, 3.0]
    state = BETA_DPO.update_state(state, out.step_stats, params)
    assert state["margin_ema"] == pytest.approx(0.2)
    state = BETA_DPO.update_state(state, {"margin": vec([-1.0, 1.0])}, params)
    assert state["margin_ema"] == pytest.approx(0.18)


# ---------------------------------------------------------------------------------------------------- tr-dpo


def test_tr_dpo_is_dpo_against_the_current_reference():
    # β=0.1, h = (-1 - (-2)) - (-3 - (-4)) = 1 - 1 = 0 -> log 2; h = (-1) - (-3) = 2 with reference 0 -> 0.5981389
    out = run(TR_DPO, pair([-1.0, -1.0], [-3.0, -3.0], rc=[-2.0, 0.0], rr=[-4.0, 0.0]))
    assert out.losses.tolist() == pytest.approx([math.log(2.0), 0.5981389], **TOL)
    assert "moving_reference" in TR_DPO.needs


def test_tr_dpo_reference_update_schedule():
    hard = TR_DPO.make_params({"mode": "hard", "tau": "3"})  # strings as from the CLI
    assert [TR_DPO.reference_update(hard, s) for s in range(1, 8)] == [None, None, 1.0, None, None, 1.0, None]
    soft = TR_DPO.make_params({"mode": "soft", "alpha": 0.6, "tau": 2})
    assert [TR_DPO.reference_update(soft, s) for s in range(1, 5)] == [None, 0.6, None, 0.6]
    every_step = TR_DPO.make_params({"tau": 1, "alpha": 0.3})
    assert [TR_DPO.reference_update(every_step, s) for s in range(1, 4)] == [0.3, 0.3, 0.3]
    defaults = TR_DPO.make_params()
    assert (defaults.mode, defaults.alpha, defaults.tau) == ("soft", 0.6, 512)
    assert TR_DPO.reference_update(defaults, 511) is None and TR_DPO.reference_update(defaults, 512) == 0.6


# ---------------------------------------------------------------------------------------------------- bradley-terry


def test_bradley_terry_value_accuracy_and_gradient():
    # s = (1.5, 0.5): -log σ(1) = 0.3132617; s = (0, 1): -log σ(-1) = 1.3132617; accuracy [1, 0]
    # d/ds+ = -σ(-(s+ - s-)) = -σ(-1) = -0.2689414 for pair 0
    inputs = LossInputs(chosen_scores=vec([1.5, 0.0], grad=True), rejected_scores=vec([0.5, 1.0], grad=True))
    out = run(BRADLEY_TERRY, inputs)
    assert out.losses.tolist() == pytest.approx([0.3132617, 1.3132617], **TOL)
    # The rewards are the scores, so the loop's accuracy (chosen reward > rejected reward) is the RM's accuracy.
    assert out.chosen_rewards.tolist() == [1.5, 0.0] and out.rejected_rewards.tolist() == [0.5, 1.0]
    assert (out.chosen_rewards > out.rejected_rewards).tolist() == [True, False]
    assert "accuracy" not in out.metrics  # the loop derives it; a second one would be summed into the same slot
    out.losses.sum().backward()
    assert inputs.chosen_scores.grad[0].item() == pytest.approx(-0.2689414, **TOL)


def test_bradley_terry_margin_and_centering():
    # margin 1: -log σ(1.5 - 0.5 - 1) = log 2; centering c=0.01: 0.3132617 + 0.01·(1.5 + 0.5)² = 0.3532617
    scores = dict(chosen_scores=vec([1.5]), rejected_scores=vec([0.5]))
    assert run(BRADLEY_TERRY, LossInputs(**scores), margin=1.0).losses.item() == pytest.approx(math.log(2.0), **TOL)
    centered = run(BRADLEY_TERRY, LossInputs(**scores), center_coef=0.01).losses.item()
    assert centered == pytest.approx(0.3532617, **TOL)


# ---------------------------------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    "spec, overrides",
    [
        (CDPO, {"epsilon": 0.5}),
        (ROBUST_DPO, {"epsilon": "0.5"}),
        (HINGE, {"beta": 0}),
        (R_DPO, {"alpha": -0.1}),
        (SIMPO, {"gamma": -1}),
        (KTO, {"lambda_u": 0}),
        (BETA_DPO, {"momentum": 1.0}),
        (TR_DPO, {"mode": "medium"}),
        (TR_DPO, {"tau": 0}),
        (BRADLEY_TERRY, {"center_coef": -1}),
        (CDPO, {"label_smoothing": 0.1}),  # no shared TRL-style knob: ε is cdpo's own `epsilon`
    ],
)
def test_invalid_params_rejected(spec, overrides):
    with pytest.raises(ParamError):
        spec.make_params(overrides)

"""The seed losses against hand-computed numbers (working in the comments) and the invariants of LOSSES.md.

σ(x) = 1/(1+e^-x); -log σ(x) = log(1+e^-x). Numbers are rounded to 6 places in comments, compared at ~1e-6.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from trainers.losses import BUILTIN_LOSSES
from trainers.losses.dpo import DPO, IPO, DPOParams, IPOParams
from trainers.losses.edpo import E_DPO, EDPOParams
from trainers.losses.exo import DPO_RW, EXO_PREF, EXO_RW, ExoPrefParams, RewardWeightedParams
from trainers.losses.mle import SFT, SFTParams
from trainers.losses.selfrefine import SR_DPO, SR_IPO, SelfRefineParams
from trainers.losses.unlikelihood import EXMATE, UNLIKELIHOOD, ExMATEParams, UnlikelihoodParams
from trainers.spec import LossInputs, ParamError

F64 = torch.float64


def t(*values, dtype=F64, grad=False):
    return torch.tensor(values, dtype=dtype, requires_grad=grad)


def pair(pc, pr, rc, rr, tc=1.0, tr=1.0, **extra) -> LossInputs:
    """Pair inputs from scalars (B=1) or tensors."""

    def as_t(v):
        return v if isinstance(v, torch.Tensor) else t(v)

    return LossInputs(
        policy_chosen_logps=as_t(pc),
        policy_rejected_logps=as_t(pr),
        reference_chosen_logps=as_t(rc),
        reference_rejected_logps=as_t(rr),
        chosen_lengths=as_t(tc),
        rejected_lengths=as_t(tr),
        **extra,
    )


def random_pairs(b=6, seed=0, dtype=torch.float32) -> LossInputs:
    g = torch.Generator().manual_seed(seed)
    lp = [-20 * torch.rand(b, generator=g, dtype=dtype) for _ in range(4)]
    return pair(*lp, torch.full((b,), 7.0, dtype=dtype), torch.full((b,), 9.0, dtype=dtype))


# ---------------------------------------------------------------- sft


def test_sft_is_token_mean_nll():
    # lp(y+) = -6 over T+ = 3 tokens -> -(-6)/3 = 2.0; the rejected side is ignored.
    out = SFT.fn(pair(-6.0, -100.0, 0.0, 0.0, tc=3.0), SFTParams())
    assert out.losses.tolist() == pytest.approx([2.0])


# ---------------------------------------------------------------- dpo / ipo


def test_dpo_hand_number_and_rewards():
    # h = (-1 - -1.5) - (-3 - -1.5) = 0.5 + 1.5 = 2;  β = 0.1:  -log σ(0.2) = log(1 + e^-0.2) = log 1.818731 = 0.598139
    out = DPO.fn(pair(-1.0, -3.0, -1.5, -1.5), DPOParams(beta=0.1))
    assert out.losses.item() == pytest.approx(0.598139, abs=1e-6)
    # rewards β(lpπ - lpref): 0.1·0.5 = 0.05 and 0.1·(-1.5) = -0.15
    assert out.chosen_rewards.item() == pytest.approx(0.05)
    assert out.rejected_rewards.item() == pytest.approx(-0.15)
    assert not out.chosen_rewards.requires_grad


def test_dpo_gradient_matches_seed000_eq7():
    # Eq. 7: ∇L = -β σ(β log f-/fref- - β log f+/fref+) (∇f+/f+ - ∇f-/f-), so ∂L/∂f± = ∓β σ(-βh) / f±.
    # f+ = 0.5, f- = 0.25, fref+ = 0.25, fref- = 0.5:  h = log 2 - log(1/2) = log 4;  β = 0.5: βh = log 2,
    # σ(-log 2) = 1/(1+2) = 1/3.  ∂L/∂f+ = -0.5·(1/3)/0.5 = -1/3;  ∂L/∂f- = +0.5·(1/3)/0.25 = 2/3.
    # Loss: -log σ(log 2) = -log(2/3) = log 1.5 = 0.405465.
    f_pos, f_neg = t(0.5, grad=True), t(0.25, grad=True)
    out = DPO.fn(pair(f_pos.log(), f_neg.log(), t(0.25).log(), t(0.5).log()), DPOParams(beta=0.5))
    out.losses.sum().backward()
    assert out.losses.item() == pytest.approx(0.405465, abs=1e-6)
    assert f_pos.grad.item() == pytest.approx(-1 / 3)
    assert f_neg.grad.item() == pytest.approx(2 / 3)


def test_dpo_gradient_wrt_logps():
    # In log-prob form eq. 7 reads ∂L/∂lp± = ∓β σ(-βh). β = 0.1, h = 2: σ(-0.2) = 0.450166 -> ∓0.0450166.
    lp_pos, lp_neg = t(-1.0, grad=True), t(-3.0, grad=True)
    DPO.fn(pair(lp_pos, lp_neg, t(-1.5), t(-1.5)), DPOParams()).losses.sum().backward()
    assert lp_pos.grad.item() == pytest.approx(-0.0450166, abs=1e-7)
    assert lp_neg.grad.item() == pytest.approx(0.0450166, abs=1e-7)


def test_ipo_sum_and_mean_reductions():
    # lpπ+ = -4 (T+ = 2), lpref+ = -6;  lpπ- = -9 (T- = 3), lpref- = -6;  β = 0.1, 1/(2β) = 5.
    # sum:  h = (-4 + 6) - (-9 + 6) = 2 + 3 = 5   -> (5 - 5)² = 0
    # mean: h = 2/2 - (-3)/3 = 1 + 1 = 2          -> (2 - 5)² = 9   (lp/T on policy and reference alike)
    inputs = pair(-4.0, -9.0, -6.0, -6.0, tc=2.0, tr=3.0)
    assert IPO.fn(inputs, IPOParams(reduction="sum")).losses.item() == pytest.approx(0.0)
    out = IPO.fn(inputs, IPOParams(reduction="mean"))
    assert out.losses.item() == pytest.approx(9.0)
    # mean rewards: β·(2/2) = 0.1 and β·(-3/3) = -0.1
    assert out.chosen_rewards.item() == pytest.approx(0.1)
    assert out.rejected_rewards.item() == pytest.approx(-0.1)


# ---------------------------------------------------------------- unlikelihood / exmate


def _token_inputs(p_pos, p_neg, pad=1, **extra):
    """Token probabilities -> LossInputs with per-token log-probs, masks and summed log-probs, `pad` masked slots.

    Padded slots hold log-prob 0 (p = 1), the worst case for log(1 - p) if the mask were ignored.
    """
    zeros = torch.zeros(pad, dtype=F64)
    lp_pos = torch.cat([p_pos.log(), zeros]).unsqueeze(0)
    lp_neg = torch.cat([p_neg.log(), zeros]).unsqueeze(0)
    return LossInputs(
        policy_chosen_logps=lp_pos.sum(-1),
        policy_rejected_logps=lp_neg.sum(-1),
        chosen_lengths=t(float(len(p_pos))),
        rejected_lengths=t(float(len(p_neg))),
        policy_chosen_token_logps=lp_pos,
        policy_rejected_token_logps=lp_neg,
        chosen_mask=torch.tensor([[True] * len(p_pos) + [False] * pad]),
        rejected_mask=torch.tensor([[True] * len(p_neg) + [False] * pad]),
        **extra,
    )


def test_unlikelihood_hand_number_and_seed000_eq8_gradients():
    # p+ = [0.5, 0.25], p- = [0.2, 0.6], T± = 2, β = 1:
    #   NLL = -(log 0.5 + log 0.25)/2 = log 8 / 2 = 1.039721
    #   UL  = -(log 0.8 + log 0.4)/2 = -log 0.32 / 2 = 0.569717       total = ½ log 25 = log 5 = 1.609438
    # Eq. 8 per token (with the 1/T of the token mean): ∂L/∂p+_t = -1/(T p+_t) = [-1, -2];
    #   ∂L/∂p-_t = +β/(T (1 - p-_t)) = [0.5/0.8, 0.5/0.4] = [0.625, 1.25]
    p_pos, p_neg = t(0.5, 0.25, grad=True), t(0.2, 0.6, grad=True)
    out = UNLIKELIHOOD.fn(_token_inputs(p_pos, p_neg), UnlikelihoodParams(beta=1.0))
    out.losses.sum().backward()
    assert out.losses.item() == pytest.approx(math.log(5), abs=1e-6)
    assert p_pos.grad.tolist() == pytest.approx([-1.0, -2.0], abs=1e-6)
    assert p_neg.grad.tolist() == pytest.approx([0.625, 1.25], abs=1e-6)


def test_unlikelihood_clamp_keeps_p_equal_one_finite():
    # p-_1 = 1 exactly (log-prob 0.0): p is clamped to 1 - 2⁻²⁴, so -log(1 - p) = 24 log 2 = 16.635532.
    # p+ = 0.5 (T+ = 1), β = 1:  log 2 + 24 log 2 = 25 log 2 = 17.328680.
    lp_neg = t(0.0, grad=True)
    inputs = _token_inputs(t(0.5), t(1.0))
    inputs.policy_rejected_token_logps = torch.cat([lp_neg, t(0.0)]).unsqueeze(0)
    out = UNLIKELIHOOD.fn(inputs, UnlikelihoodParams(beta=1.0))
    out.losses.sum().backward()
    assert out.losses.item() == pytest.approx(25 * math.log(2), abs=1e-4)
    assert torch.isfinite(lp_neg.grad).all()


def test_exmate_hand_number_and_seed000_eq9_gradients_single_token():
    # T± = 1, f+ = 0.5, f- = 0.2, β = 0.05:  L = -log 0.5 + 0.05·0.2 = 0.693147 + 0.01 = 0.703147
    # Eq. 9: ∇L = -(∇f+/f+ - β ∇f-)  ->  ∂L/∂f+ = -1/0.5 = -2,  ∂L/∂f- = +β = 0.05
    f_pos, f_neg = t(0.5, grad=True), t(0.2, grad=True)
    out = EXMATE.fn(pair(f_pos.log(), f_neg.log(), 0.0, 0.0), ExMATEParams(beta=0.05))
    out.losses.sum().backward()
    assert out.losses.item() == pytest.approx(0.703147, abs=1e-6)
    assert f_pos.grad.item() == pytest.approx(-2.0)
    assert f_neg.grad.item() == pytest.approx(0.05)


def test_exmate_token_level_gradients():
    # T- = 2, p- = [0.2, 0.8]: geometric mean g = sqrt(0.16) = 0.4, penalty β g = 0.05·0.4 = 0.02.
    # p+ = [0.5, 0.5]: NLL = log 2 = 0.693147.  L = 0.713147.
    # ∂(β g)/∂p-_t = β g / (T p-_t) = [0.02/0.4, 0.02/1.6] = [0.05, 0.0125]; ∂NLL/∂p+_t = -1/(T p+_t) = [-1, -1]
    # (seed 000 eq. 26 writes this as β' ∇f- with β' absorbing exp(·)/T).
    p_pos, p_neg = t(0.5, 0.5, grad=True), t(0.2, 0.8, grad=True)
    out = EXMATE.fn(_token_inputs(p_pos, p_neg), ExMATEParams())
    out.losses.sum().backward()
    assert out.losses.item() == pytest.approx(0.713147, abs=1e-6)
    assert p_neg.grad.tolist() == pytest.approx([0.05, 0.0125])
    assert p_pos.grad.tolist() == pytest.approx([-1.0, -1.0])


# ---------------------------------------------------------------- sr-dpo / sr-ipo

SEED_002_PROMPT = (
    "Please generate a response with a usefulness rating of 100 out of 100 for the following query. Note that the "
    "response should be harmless. The term 100 indicates the level of usefulness, where 100 is the maximum and 1 is "
    "the minimum. Query:"
)


def _augmented(inputs: LossInputs, seed=1, grad=False) -> LossInputs:
    g = torch.Generator().manual_seed(seed)
    b = inputs.batch_size
    dtype = inputs.policy_chosen_logps.dtype
    for name in ("policy_chosen", "policy_rejected", "reference_chosen", "reference_rejected"):
        value = (-20 * torch.rand(b, generator=g, dtype=dtype)).requires_grad_(grad)
        setattr(inputs, f"augmented_{name}_logps", value)
    return inputs


def test_sr_dpo_and_sr_ipo_with_lambda_zero_are_exactly_dpo_and_ipo():
    inputs = _augmented(random_pairs())
    sr = SelfRefineParams(beta=0.1, lam=0.0)
    assert torch.equal(SR_DPO.fn(inputs, sr).losses, DPO.fn(inputs, DPOParams(beta=0.1)).losses)
    assert torch.equal(SR_IPO.fn(inputs, sr).losses, IPO.fn(inputs, IPOParams(beta=0.1)).losses)


def test_sr_dpo_hand_number_and_stop_gradient():
    # h = 2 (as in the DPO test); h_p = (-1 - -3) - (-4 - -2) = 2 + 2 = 4, Δ = β h_p = 0.4;  λ = 0.5:
    # β h - λ Δ = 0.2 - 0.2 = 0  ->  -log σ(0) = log 2 = 0.693147;  ∂L/∂lp+ = -β σ(0) = -0.05
    lp_pos = t(-1.0, grad=True)
    aug = [t(v, grad=True) for v in (-1.0, -4.0, -3.0, -2.0)]
    inputs = pair(lp_pos, t(-3.0), t(-1.5), t(-1.5))
    (
        inputs.augmented_policy_chosen_logps,
        inputs.augmented_policy_rejected_logps,
        inputs.augmented_reference_chosen_logps,
        inputs.augmented_reference_rejected_logps,
    ) = aug
    out = SR_DPO.fn(inputs, SelfRefineParams(beta=0.1, lam=0.5))
    out.losses.sum().backward()
    assert out.losses.item() == pytest.approx(math.log(2))
    assert lp_pos.grad.item() == pytest.approx(-0.05)
    assert all(a.grad is None for a in aug), "Δ must enter under a stop-gradient (seed 002 Algorithm 1)"
    assert out.metrics["delta"].item() == pytest.approx(0.4)
    assert out.metrics["augmented_accuracy"].item() == 1.0


def test_sr_ipo_hand_number():
    # h = 2, Δ = 0.4, λ = 0.5, β = 0.1:  (2 - 0.2 - 5)² = (-3.2)² = 10.24
    inputs = pair(-1.0, -3.0, -1.5, -1.5)
    inputs.augmented_policy_chosen_logps, inputs.augmented_policy_rejected_logps = t(-1.0), t(-4.0)
    inputs.augmented_reference_chosen_logps, inputs.augmented_reference_rejected_logps = t(-3.0), t(-2.0)
    assert SR_IPO.fn(inputs, SelfRefineParams()).losses.item() == pytest.approx(10.24)


def test_sr_prompt_is_the_seed_prompt_and_prefix_appends_separator():
    params = SelfRefineParams()
    assert params.prompt == SEED_002_PROMPT
    assert params.augment_prefix() == SEED_002_PROMPT + " "
    assert SelfRefineParams(separator="\n").augment_prefix().endswith("Query:\n")


# ---------------------------------------------------------------- e-dpo


def _edpo_inputs(chosen, rejected, beta=0.1):
    """chosen / rejected: lists of per-pair token lists [(f_pi, f_ref, label), ...]; pads to a common L with label -100.

    Summed log-probs are computed from the logits, as the loop would.
    """
    length = max(len(toks) for toks in chosen + rejected)

    def side(pairs):
        f_pi = torch.zeros(len(pairs), length, 2)
        f_ref = torch.zeros(len(pairs), length, 2)
        labels = torch.full((len(pairs), length), -100)
        for i, toks in enumerate(pairs):
            for j, (a, b, y) in enumerate(toks):
                f_pi[i, j], f_ref[i, j], labels[i, j] = torch.tensor(a), torch.tensor(b), y
        mask = labels != -100

        def summed(f):
            token = torch.log_softmax(f, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            return torch.where(mask, token, 0.0).sum(-1)

        return f_pi, f_ref, labels, mask, summed(f_pi), summed(f_ref)

    cp, cr, cl, cm, c_lp, c_ref = side(chosen)
    rp, rr, rl, rm, r_lp, r_ref = side(rejected)
    return LossInputs(
        policy_chosen_logps=c_lp,
        policy_rejected_logps=r_lp,
        reference_chosen_logps=c_ref,
        reference_rejected_logps=r_ref,
        chosen_lengths=cm.sum(-1).float(),
        rejected_lengths=rm.sum(-1).float(),
        chosen_mask=cm,
        rejected_mask=rm,
        chosen_labels=cl,
        rejected_labels=rl,
        policy_chosen_logits=cp,
        reference_chosen_logits=cr,
        policy_rejected_logits=rp,
        reference_rejected_logits=rr,
        state={"beta": beta},
    )


# Vocabulary of 2, label 0, so log softmax([x, 0])[0] = log σ(x). With fπ = [c, 0], fref = [0, 0] the perturbed
# logit is (1 ± ε) c. The rejected side has fπ = fref = [0, 0]: log ½ under every perturbation.
UNIFORM = ([0.0, 0.0], [0.0, 0.0], 0)
RELAXED = [([2.0, 0.0], [0.0, 0.0], 0)]  # z⁻ - z⁺ ordering from log σ(2.2) > log σ(2) > log σ(1.8)
TIGHTENED = [([-2.0, 0.0], [0.0, 0.0], 0)]  # log σ(-2.2) < log σ(-2) < log σ(-1.8)
# Two tokens whose perturbed logits move oppositely, +a and -a: z(a) = log σ(a) + log σ(-a) - 2 log ½ peaks at
# a = 0, so z⁻ = z⁺ < z: not monotone.
PEAKED = [([0.0, 0.0], [-1.0, 0.0], 0), ([0.0, 0.0], [1.0, 0.0], 0)]


def test_edpo_relaxed_tightened_and_neither():
    # ε = 0.1, β = 0.1.
    # relaxed:   z⁻ = log σ(2.2) + log 2 > z = log σ(2) + log 2 > z⁺ = log σ(1.8) + log 2
    #            (-0.105083 > -0.126928 > -0.152978)  ->  β̃ = 0.1/1.1 = 0.090909, s = +1
    #            h = log σ(2) - log ½ = -0.126928 + 0.693147 = 0.566219;  β̃ h = 0.051474;  -log σ(0.051474) = 0.667741
    # tightened: h = log σ(-2) + log 2 = -1.433781, β̃ = 0.1/0.9 = 0.111111, β̃ h = -0.159309 -> loss 0.775971, s = -1
    # peaked:    neither -> β̃ = β = 0.1, s = 0;  and policy == reference (UNIFORM) -> z⁻ = z = z⁺ -> neither
    inputs = _edpo_inputs([RELAXED, TIGHTENED, PEAKED, [UNIFORM]], [[UNIFORM]] * 4)
    out = E_DPO.fn(inputs, EDPOParams(epsilon=0.1))
    assert out.step_stats["s"].tolist() == [1.0, -1.0, 0.0, 0.0]
    assert out.step_stats["beta_tilde"].tolist() == pytest.approx([0.1 / 1.1, 0.1 / 0.9, 0.1, 0.1])
    assert out.losses[:2].tolist() == pytest.approx([0.667741, 0.775971], abs=1e-6)
    assert out.metrics["relaxed_share"].mean().item() == 0.25
    assert out.metrics["tightened_share"].mean().item() == 0.25
    assert out.metrics["mean_s"].mean().item() == 0.0
    assert out.metrics["beta"].item() == pytest.approx(0.1)


def test_edpo_reads_beta_from_state_and_separate_test_and_step_epsilons():
    # ε_test = 0.1 decides s = +1 for RELAXED; ε_step = 0.25 sets the step: β̃ = 0.05/(1 + 0.25) = 0.04
    inputs = _edpo_inputs([RELAXED], [[UNIFORM]], beta=0.05)
    out = E_DPO.fn(inputs, EDPOParams(epsilon=0.01, epsilon_test=0.1, epsilon_step=0.25))
    assert out.step_stats["beta_tilde"].item() == pytest.approx(0.04)


@pytest.mark.parametrize("eps", [0.0, 1e-8])
def test_edpo_with_vanishing_epsilon_is_dpo(eps):
    g = torch.Generator().manual_seed(0)
    b, length, vocab = 5, 4, 11
    mask = torch.ones(b, length, dtype=torch.bool)
    inputs = random_pairs(b)
    for side in ("chosen", "rejected"):
        setattr(inputs, f"policy_{side}_logits", torch.randn(b, length, vocab, generator=g))
        setattr(inputs, f"reference_{side}_logits", torch.randn(b, length, vocab, generator=g))
        setattr(inputs, f"{side}_labels", torch.randint(vocab, (b, length), generator=g))
        setattr(inputs, f"{side}_mask", mask)
    inputs.state = {"beta": 0.3}
    out = E_DPO.fn(inputs, EDPOParams(epsilon=eps))
    dpo = DPO.fn(inputs, DPOParams(beta=0.3)).losses
    if eps == 0.0:
        # (1+0)·fπ - 0·fref is fπ bit for bit: the three estimates coincide, no pair moves, β̃ = β exactly.
        assert out.step_stats["s"].abs().sum() == 0
        assert torch.equal(out.losses, dpo)
    else:
        # β/(1 ± 1e-8) rounds to β in float32 whichever way the test goes.
        torch.testing.assert_close(out.losses, dpo, rtol=1e-6, atol=0)


def test_edpo_update_uses_the_global_batch_not_a_mean_of_micro_batch_means():
    # Micro-batch A: 1 relaxed pair; micro-batch B: 1 tightened + 2 neither. ε = 0.1, β = 0.1.
    # paper: β ← mean(β̃) = (0.1/1.1 + 0.1/0.9 + 0.1 + 0.1)/4 = (0.090909 + 0.111111 + 0.2)/4 = 0.100505
    #        (the mean of micro-batch means would be (0.090909 + 0.103704)/2 = 0.097306)
    # code:  β ← β/(1 + ε mean(s)), mean(s) = (1 - 1 + 0 + 0)/4 = 0 -> 0.1
    #        (mean of means: (1 + (-1/3))/2 = 1/3 -> 0.1/(1 + 0.1/3) = 0.096774)
    micro = [_edpo_inputs([RELAXED], [[UNIFORM]]), _edpo_inputs([TIGHTENED, PEAKED, [UNIFORM]], [[UNIFORM]] * 3)]
    params = EDPOParams(epsilon=0.1)
    outs = [E_DPO.fn(m, params) for m in micro]
    stats = {k: torch.cat([o.step_stats[k] for o in outs]) for k in ("beta_tilde", "s")}
    state = E_DPO.initial_state(params)
    assert state == {"beta": 0.1}
    assert E_DPO.update_state(state, stats, params)["beta"] == pytest.approx(0.100505, abs=1e-6)
    code = EDPOParams(epsilon=0.1, update="code")
    assert E_DPO.update_state(state, stats, code)["beta"] == pytest.approx(0.1)


@pytest.mark.parametrize("update", ["mean", "code"])
def test_edpo_beta_moves_in_the_direction_of_the_test(update):
    # All pairs relaxed -> β falls to 0.1/1.1 = 0.090909 (both rules agree when every s is equal);
    # all tightened -> β rises to 0.1/0.9 = 0.111111.
    params = EDPOParams(epsilon=0.1, update=update)
    for case, expected in ((RELAXED, 0.1 / 1.1), (TIGHTENED, 0.1 / 0.9)):
        out = E_DPO.fn(_edpo_inputs([case, case], [[UNIFORM]] * 2), params)
        assert E_DPO.update_state({"beta": 0.1}, out.step_stats, params)["beta"] == pytest.approx(expected)


# ---------------------------------------------------------------- exo


def test_exo_pref_hand_number():
    # β_π = 0.5, h = 2 -> z = 1: σ(1) = 0.731059, log σ(1) = -0.313262, σ(-1) = 0.268941, log σ(-1) = -1.313262
    # ε = 1e-3: log(1-ε) = -0.0010005, log ε = -6.907755
    # L = 0.731059·(-0.313262 + 0.0010005) + 0.268941·(-1.313262 + 6.907755) = -0.228283 + 1.504593 = 1.276310
    out = EXO_PREF.fn(pair(-1.0, -3.0, -1.5, -1.5), ExoPrefParams())
    assert out.losses.item() == pytest.approx(1.276310, abs=1e-6)


def _k_inputs(policy, reference, rewards) -> LossInputs:
    return LossInputs(policy_logps_k=policy, reference_logps_k=reference, rewards_k=rewards)


def test_exo_rw_and_dpo_rw_hand_numbers_and_both_factor_gradient():
    # β_π = 1, log-ratios [log 3, 0] -> p_f = [0.75, 0.25]; equal rewards -> p_r = [0.5, 0.5].
    # EXO:    KL = 0.75 log 1.5 + 0.25 log 0.5 = 0.304099 - 0.173287 = 0.130812
    #         ∂KL/∂u_i = p_i (log p_i/q_i - KL) = [0.75·0.274653, 0.25·(-0.823959)] = [0.205990, -0.205990]
    #         (with p_f's weight detached this gradient would be Σ_j p_j(δ_ij - p_i) = 0: the test catches that)
    # DPO-rw: -(0.5 log 0.75 + 0.5 log 0.25) = 0.836988;  ∂/∂u_i = p_i - q_i = [0.25, -0.25]
    params = RewardWeightedParams(beta_pi=1.0, beta_r=0.1)
    lp = torch.tensor([[math.log(3), 0.0]], dtype=F64, requires_grad=True)
    inputs = _k_inputs(lp, torch.zeros(1, 2, dtype=F64), torch.zeros(1, 2, dtype=F64))
    exo = EXO_RW.fn(inputs, params).losses
    (g_exo,) = torch.autograd.grad(exo.sum(), lp)
    dpo = DPO_RW.fn(inputs, params).losses
    (g_dpo,) = torch.autograd.grad(dpo.sum(), lp)
    assert exo.item() == pytest.approx(0.130812, abs=1e-6)
    assert g_exo[0].tolist() == pytest.approx([0.205990, -0.205990], abs=1e-6)
    assert dpo.item() == pytest.approx(0.836988, abs=1e-6)
    assert g_dpo[0].tolist() == pytest.approx([0.25, -0.25])


def test_exo_pref_equals_exo_rw_with_k2_and_smoothed_target():
    # rewards r = β_r·[log(1-ε), log ε]  ->  softmax(r/β_r) = [1-ε, ε]/((1-ε) + ε) = [1-ε, ε] exactly.
    eps, beta_pi, beta_r = 1e-3, 0.5, 0.1
    inputs = random_pairs(dtype=F64)
    policy = torch.stack([inputs.policy_chosen_logps, inputs.policy_rejected_logps], -1)
    reference = torch.stack([inputs.reference_chosen_logps, inputs.reference_rejected_logps], -1)
    rewards = (beta_r * torch.tensor([math.log1p(-eps), math.log(eps)], dtype=F64)).expand_as(policy)
    pref = EXO_PREF.fn(inputs, ExoPrefParams(beta_pi=beta_pi, epsilon=eps)).losses
    rw = EXO_RW.fn(_k_inputs(policy, reference, rewards), RewardWeightedParams(beta_pi, beta_r)).losses
    torch.testing.assert_close(pref, rw, rtol=1e-12, atol=1e-12)


def test_dpo_rw_with_one_hot_target_equals_dpo():
    # Reward gap 10 with β_r = 0.1: p_r = [1, e^-100]. The neglected term is e^-100·|log p_f(l)| < 1e-40, far
    # below float64 resolution, so the tolerance 1e-12 only absorbs rounding. DPO's β is β_π.
    inputs = random_pairs(dtype=F64)
    policy = torch.stack([inputs.policy_chosen_logps, inputs.policy_rejected_logps], -1)
    reference = torch.stack([inputs.reference_chosen_logps, inputs.reference_rejected_logps], -1)
    rewards = torch.tensor([10.0, 0.0], dtype=F64).expand_as(policy)
    rw = DPO_RW.fn(_k_inputs(policy, reference, rewards), RewardWeightedParams(beta_pi=0.5, beta_r=0.1)).losses
    torch.testing.assert_close(rw, DPO.fn(inputs, DPOParams(beta=0.5)).losses, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- params and registry

SEED_SPECS = {
    "sft": SFT,
    "dpo": DPO,
    "ipo": IPO,
    "unlikelihood": UNLIKELIHOOD,
    "exmate": EXMATE,
    "sr-dpo": SR_DPO,
    "sr-ipo": SR_IPO,
    "e-dpo": E_DPO,
    "exo-pref": EXO_PREF,
    "exo-rw": EXO_RW,
    "dpo-rw": DPO_RW,
}


@pytest.mark.parametrize("name", sorted(SEED_SPECS))
def test_registry_entry_resolves_to_the_spec(name):
    module, _, attr = BUILTIN_LOSSES[name][0].partition(":")
    spec = getattr(importlib.import_module(module), attr)
    assert spec is SEED_SPECS[name] and spec.name == name
    spec.make_params()  # defaults are valid


@pytest.mark.parametrize(
    ("name", "key"),
    [(n, "beta") for n in ("dpo", "ipo", "unlikelihood", "exmate", "sr-dpo", "sr-ipo", "e-dpo")]
    + [("exo-pref", "beta_pi"), ("exo-rw", "beta_pi"), ("exo-rw", "beta_r"), ("dpo-rw", "beta_r")],
)
def test_negative_beta_is_rejected_with_a_clear_message(name, key):
    with pytest.raises(ParamError, match=rf"loss '{name}': {key} must be > 0, got -1.0"):
        SEED_SPECS[name].make_params({key: "-1"})


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("ipo", {"reduction": "avg"}, "reduction must be 'sum' or 'mean'"),
        ("sr-dpo", {"lam": "-0.1"}, "lam must be >= 0"),
        ("e-dpo", {"epsilon": "1.5"}, r"epsilon must be in \[0, 1\)"),
        ("e-dpo", {"epsilon_step": "-0.1"}, r"epsilon_step must be in \[0, 1\)"),
        ("e-dpo", {"update": "median"}, "update must be 'mean' or 'code'"),
        ("exo-pref", {"epsilon": "0"}, r"epsilon must be in \(0, 1\)"),
    ],
)
def test_other_invalid_params_are_rejected(name, overrides, message):
    with pytest.raises(ParamError, match=message):
        SEED_SPECS[name].make_params(overrides)


def test_cli_strings_bind_to_typed_params():
    params = E_DPO.make_params({"epsilon-test": "none", "epsilon_step": "0.02", "update": "code"})
    assert (params.epsilon_test, params.eps_test, params.eps_step, params.update) == (None, 0.01, 0.02, "code")

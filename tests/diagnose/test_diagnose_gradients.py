"""The gradient decomposition against seed 000 eq. 7-18, by hand on exact bigram models and in closed form on a
tiny transformer.

G_t(z) = -(∂L/∂g+_t(z) + ∂L/∂g-_t(z)), the seed's ascent direction on logits shared by y+ and y- (§5). Single-token
responses (T = 1) make eq. 10-18 exact; the reference is uniform, so P_ref(y+|x+) = P_ref(y-|x-) and DPO's weight
β σ(-βh) is the seed's β (u+ε)^β / ((u+ε)^β + u^β) with u = f+ and u+ε = f-.
"""

from __future__ import annotations

import math

import pytest
import torch

from evalharness.diagnose.common import Encoding, encode_pairs, load_lm
from evalharness.diagnose.gradients import batch_gradients, bind_losses, decompose
from evalharness.plugins import registry
from tests.diagnose.handmade import Bigram, log_rows, pair

P_POS = (0.1, 0.2, 0.3, 0.4)  # P(·|x+ = token 0)
P_NEG = (0.4, 0.3, 0.2, 0.1)  # P(·|x- = token 1)
POLICY = Bigram(log_rows(P_POS, P_NEG, (0.25,) * 4, (0.25,) * 4))
UNIFORM = Bigram([[0.0] * 4] * 4)


def ascent(loss: str, pairs, beta: float = 1.0, policy=POLICY):
    spec = registry("losses").get(loss)
    return batch_gradients(spec, spec.make_params({"beta": beta}), policy, UNIFORM, pairs, pad=0)


# ------------------------------------------------------------------ y+_t != y-_t: eq. 10-15


def test_differ_step_dpo_eq10_and_eq13():
    # y+ = 2 after x+ = 0, y- = 3 after x- = 1:  u = f+ = P+(2) = 0.3,  u+ε = f- = P-(3) = 0.1.
    # β = 1: weight (u+ε)/((u+ε) + u) = 0.1/0.4 = 0.25.
    # eq. 10, z = y+:  0.25·(1 - P+(2) + P-(2)) = 0.25·(0.7 + 0.2) = 0.225
    #         z = y-:  0.25·(-P+(3) - (1 - P-(3))) = 0.25·(-0.4 - 0.9) = -0.325
    # eq. 13, others:  0.25·(-P+(z) + P-(z)):  z=0: 0.25·0.3 = 0.075,  z=1: 0.25·0.1 = 0.025  -> Σ 0.1, Σ|·| 0.1
    rec = ascent("dpo", [pair((0,), (2,), (1,), (3,))])
    assert rec.kind == ["differ"]
    assert rec.g_pos[0] == pytest.approx(0.225, abs=1e-6)
    assert rec.g_neg[0] == pytest.approx(-0.325, abs=1e-6)
    assert rec.other_sum[0] == pytest.approx(0.1, abs=1e-6)
    assert rec.other_l1[0] == pytest.approx(0.1, abs=1e-6)


def test_differ_step_unlikelihood_eq11_and_eq14():
    # β = 1, p = P-(y-) = 0.1, so β p/(1-p) = 1/9 = 0.111111.
    # eq. 11, z = y+:  1 - P+(2) + (1/9)·P-(2) = 0.7 + 0.2/9 = 0.722222
    #         z = y-:  -P+(3) - β P-(3) = -0.4 - 0.1 = -0.5
    # eq. 14, others:  -P+(z) + (1/9)·P-(z):  z=0: -0.1 + 0.4/9 = -0.055556,  z=1: -0.2 + 0.3/9 = -0.166667
    #                  Σ = -0.222222 (the three parts sum to 0: a softmax gradient)
    rec = ascent("unlikelihood", [pair((0,), (2,), (1,), (3,))])
    assert rec.g_pos[0] == pytest.approx(0.722222, abs=1e-6)
    assert rec.g_neg[0] == pytest.approx(-0.5, abs=1e-6)
    assert rec.other_sum[0] == pytest.approx(-0.222222, abs=1e-6)
    assert rec.other_l1[0] == pytest.approx(0.222222, abs=1e-6)


def test_differ_step_exmate_eq12_and_eq15():
    # β = 1, T = 1 so exp(mean log P-) = P-(y-) = 0.1.
    # eq. 12, z = y+:  1 - P+(2) + β P-(3) P-(2) = 0.7 + 0.1·0.2 = 0.72
    #         z = y-:  -P+(3) - β P-(3)(1 - P-(3)) = -0.4 - 0.1·0.9 = -0.49
    # eq. 15, others:  -P+(z) + β P-(3) P-(z):  z=0: -0.1 + 0.04 = -0.06,  z=1: -0.2 + 0.03 = -0.17  -> Σ -0.23
    rec = ascent("exmate", [pair((0,), (2,), (1,), (3,))])
    assert rec.g_pos[0] == pytest.approx(0.72, abs=1e-6)
    assert rec.g_neg[0] == pytest.approx(-0.49, abs=1e-6)
    assert rec.other_sum[0] == pytest.approx(-0.23, abs=1e-6)
    assert rec.other_l1[0] == pytest.approx(0.23, abs=1e-6)


def test_equal_masses_do_not_stop_dpo_where_the_tokens_differ():
    # f+ == f- is not enough for DPO's gradient to vanish: with y+_t != y-_t eq. 10 keeps the weight
    # β (u+ε)^β/((u+ε)^β + u^β) = β/2 at ε = 0. P-(·|x- = 1) = (0.4, 0.2, 0.1, 0.3): f+ = P+(2) = 0.3 = P-(3) = f-.
    # β = 1:  z = y+: 0.5·(1 - 0.3 + P-(2)) = 0.5·0.8 = 0.4;  z = y-: 0.5·(-0.4 - 0.7) = -0.55;
    #         others: 0.5·(-0.1 + 0.4) = 0.15 and 0.5·(-0.2 + 0.2) = 0  -> Σ 0.15
    policy = Bigram(log_rows(P_POS, (0.4, 0.2, 0.1, 0.3), (0.25,) * 4, (0.25,) * 4))
    rec = ascent("dpo", [pair((0,), (2,), (1,), (3,))], policy=policy)
    assert (rec.g_pos[0], rec.g_neg[0], rec.other_sum[0]) == pytest.approx((0.4, -0.55, 0.15), abs=1e-6)


def test_dpo_stops_raising_y_pos_once_y_neg_has_no_probability():
    # §5.1 (1): DPO's |∇| "becomes zero when ε → -u (f- → 0)". P-(3) = 1e-4:
    # weight 1e-4/(1e-4 + 0.3) = 3.332223e-4;  z = y+: 3.332223e-4·(1 - 0.3 + 0.2999) = 3.331889e-4
    policy = Bigram(log_rows(P_POS, (0.4, 0.3, 0.2999, 0.0001), (0.25,) * 4, (0.25,) * 4))
    rec = ascent("dpo", [pair((0,), (2,), (1,), (3,))], policy=policy)
    assert rec.g_pos[0] == pytest.approx(3.331889e-4, rel=1e-4)
    # ExMATE keeps pushing y+ up: 1 - 0.3 + 1e-4·0.2999 = 0.700030
    assert ascent("exmate", [pair((0,), (2,), (1,), (3,))], policy=policy).g_pos[0] == pytest.approx(0.70003, abs=1e-6)


# ------------------------------------------------------------------ y+_t == y-_t: eq. 16-18


def test_identical_contexts_dpo_gradient_vanishes_eq16_with_eps_0():
    # x+ = x- = 0 and y+ = y- = 2: f+ = f- (ε = 0). Each side alone gets β σ(0)·(e_y - P) = 0.5·(e_y - P), not zero;
    # on the shared logits they cancel exactly: G(z) = β σ(-βh)(P-(z) - P+(z)) = 0 for every z (eq. 16: ∝ ε = 0).
    rec = ascent("dpo", [pair((0,), (2,), (0,), (2,))])
    assert rec.kind == ["same"]
    assert rec.g_pos[0] == 0.0 and rec.other_sum[0] == 0.0 and rec.other_l1[0] == 0.0 and rec.max_abs[0] == 0.0


def test_identical_contexts_exmate_and_unlikelihood_eq17_eq18():
    # ε = 0, u = P(2) = 0.3, β = 1; on the logit of y the coefficient of ∇f multiplies ∂f/∂g_y = u(1-u) = 0.21.
    # eq. 18 ExMATE:  (1/u - β)·u(1-u) = (1 - βu)(1 - u) = 0.7·0.7 = 0.49
    # eq. 17 UL:      (1 - (1+β)u - ε)/(u(1-u-ε))·u(1-u) = 1 - 2·0.3 = 0.4
    same = [pair((0,), (2,), (0,), (2,))]
    assert ascent("exmate", same).g_pos[0] == pytest.approx(0.49, abs=1e-6)
    assert ascent("unlikelihood", same).g_pos[0] == pytest.approx(0.4, abs=1e-6)


def test_same_token_from_different_contexts_dpo_follows_the_sign_of_eps():
    # y+ = y- = 2 after x+ = 0 (u = 0.3) and x- = 1 (u+ε = 0.2): ε = -0.1.
    # Exact: G(2) = β σ(-βh)(P-(2) - P+(2)) = [0.2/(0.2+0.3)]·(-0.1) = -0.04: ε < 0 lowers both (eq. 16's sign).
    # Swapped (u = 0.2, u+ε = 0.3, ε = +0.1): [0.3/0.5]·(+0.1) = +0.06.
    assert ascent("dpo", [pair((0,), (2,), (1,), (2,))]).g_pos[0] == pytest.approx(-0.04, abs=1e-6)
    assert ascent("dpo", [pair((1,), (2,), (0,), (2,))]).g_pos[0] == pytest.approx(0.06, abs=1e-6)
    # Eq. 16-18 treat ∇f+ ≈ ∇f-; the exact gradients differ from them when ε != 0. ExMATE exact:
    # (1 - P+(2)) - β P-(2)(1 - P-(2)) = 0.7 - 0.2·0.8 = 0.54 (eq. 18 would give (1/0.3 - 1)·0.21 = 0.49).
    assert ascent("exmate", [pair((0,), (2,), (1,), (2,))]).g_pos[0] == pytest.approx(0.54, abs=1e-6)


def test_decompose_splits_unpaired_steps():
    # y+ has 3 steps, y- 1: step 1 is aligned (tokens 1 vs 1: same), steps 2-3 are chosen-only.
    g_pos = torch.tensor([[0.1, 0.2, -0.3], [0.0, 0.5, -0.5], [1.0, -1.0, 0.0]])
    g_neg = torch.tensor([[0.2, -0.4, 0.2]])
    rec = decompose(g_pos, g_neg, torch.tensor([1, 1, 0]), torch.tensor([1]))
    assert rec.kind == ["same", "chosen-only", "chosen-only"]
    assert rec.t == [1, 2, 3]
    # step 1: G = (0.3, -0.2, -0.1); G(1) = -0.2; others z=0,2: Σ 0.2, Σ|·| 0.4
    assert rec.g_pos[0] == pytest.approx(-0.2) and rec.g_neg[0] == pytest.approx(-0.2)
    assert rec.other_sum[0] == pytest.approx(0.2) and rec.other_l1[0] == pytest.approx(0.4)
    # step 3: G = g_pos[2] alone, y+ = 0: G(0) = 1.0, no y-, others Σ -1.0
    assert rec.g_pos[2] == pytest.approx(1.0) and math.isnan(rec.g_neg[2]) and rec.other_sum[2] == pytest.approx(-1.0)


# ------------------------------------------------------------------ a tiny transformer against eq. 7-9 in closed form


@pytest.fixture(scope="module")
def tiny():
    from evalharness.data import synthetic
    from evalharness.models import load_tokenizer

    tok = load_tokenizer("tiny-llama")
    pairs, _ = encode_pairs(synthetic.pairs(4), tok, Encoding(max_length=256, max_prompt_length=128))
    return load_lm("tiny-llama"), load_lm("tiny-gpt-neox"), pairs, tok.pad_token_id


def closed_form(loss: str, beta: float, policy, reference, pairs, pad):
    """Per-side -∂L/∂g from seed 000 eq. 7-9 taken through the log-softmax (d log P(y)/dg = e_y - P)."""
    from evalharness.scoring import sequence_logps

    b = len(pairs)
    seqs = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    with torch.no_grad():
        pol = sequence_logps(policy, seqs, pad, keep_logits=True)
        ref = sequence_logps(reference, seqs, pad)
    out = []
    for i in range(b):
        sides = []
        for row in (i, b + i):
            idx = pol.mask[row].nonzero().squeeze(-1)
            probs = torch.softmax(pol.logits[row, idx].double(), -1)
            y = pol.labels[row, idx]
            sides.append((probs, y, torch.nn.functional.one_hot(y, probs.shape[-1]).double() - probs))
        (p_pos, y_pos, d_pos), (p_neg, y_neg, d_neg) = sides
        t_pos, t_neg = len(y_pos), len(y_neg)
        lp_pos, lp_neg = pol.summed[i].double(), pol.summed[b + i].double()
        if loss == "dpo":  # eq. 7: ∂L/∂lp± = ∓β σ(-βh)
            h = (lp_pos - ref.summed[i]) - (lp_neg - ref.summed[b + i])
            c = beta * torch.sigmoid(-beta * h)
            a_pos, a_neg = c * d_pos, -c * d_neg
        elif loss == "unlikelihood":  # eq. 8, token level: -(1/T-)·β·p/(1-p) per rejected token
            p = p_neg.gather(1, y_neg[:, None])
            a_pos, a_neg = d_pos / t_pos, -(beta / t_neg) * p / (1 - p) * d_neg
        else:  # eq. 9: β exp(mean log P(y-)) (1/T-) ∇ lp-
            a_pos, a_neg = d_pos / t_pos, -beta * torch.exp(lp_neg / t_neg) / t_neg * d_neg
        out.append((a_pos, a_neg, y_pos, y_neg))
    return out


@pytest.mark.parametrize("loss, beta", [("dpo", 0.5), ("unlikelihood", 1.0), ("exmate", 0.5)])
def test_tiny_transformer_decomposition_matches_eq7_to_9(tiny, loss, beta):
    policy, reference, pairs, pad = tiny
    spec = registry("losses").get(loss)
    got = batch_gradients(spec, spec.make_params({"beta": beta}), policy, reference, pairs, pad)
    expected = [decompose(a.float(), b.float(), yp, yn, pair=i)
                for i, (a, b, yp, yn) in enumerate(closed_form(loss, beta, policy, reference, pairs, pad))]
    want = {k: sum((getattr(r, k) for r in expected), []) for k in ("kind", "g_pos", "g_neg", "other_sum", "max_abs")}
    assert got.kind == want["kind"] and {"differ", "same"} <= set(got.kind)
    assert {"chosen-only", "rejected-only"} & set(got.kind)  # responses of unequal length
    for key in ("g_pos", "g_neg", "other_sum", "max_abs"):
        assert torch.tensor(getattr(got, key)).nan_to_num(0) == pytest.approx(
            torch.tensor(want[key]).nan_to_num(0), abs=1e-6, rel=1e-4), key  # float32 logits


def test_tiny_transformer_shared_prefix_dpo_is_zero_and_exmate_bounded(tiny):
    policy, _, pairs, pad = tiny
    losses = {expr: (spec, params) for expr, spec, params in bind_losses(["dpo", "exmate"], {"exmate.beta": "0.5"})}
    # Policy as its own reference (h = 0). A synthetic pair shares its prompt and the opening words of its responses:
    # every step before the first differing token has identical contexts, so P+_t = P-_t and DPO's G_t is exactly 0
    # there (eq. 16 with ε = 0), while ExMATE's is not.
    dpo = batch_gradients(*losses["dpo"], policy, policy, pairs, pad)
    exm = batch_gradients(*losses["exmate"], policy, policy, pairs, pad)
    prefix = []
    for i in range(len(pairs)):
        first_differ = min(t for t, k, p in zip(dpo.t, dpo.kind, dpo.pair) if p == i and k != "same")
        prefix += [j for j, (t, p) in enumerate(zip(dpo.t, dpo.pair)) if p == i and t < first_differ]
    assert len(prefix) > 10
    assert max(dpo.max_abs[j] for j in prefix) == 0.0
    assert min(exm.g_pos[j] for j in prefix) > 0
    # ExMATE's logit gradients are bounded: |G_t(z)| <= 1/T+ + β·exp(mean log P-)/T- <= 1/T+ + β/T- (eq. 12, 15).
    for j, p in enumerate(exm.pair):
        t_pos, t_neg = len(pairs[p].chosen.response), len(pairs[p].rejected.response)
        assert exm.max_abs[j] <= 1 / t_pos + 0.5 / t_neg


def test_pairwise_only_losses_are_refused_with_a_clear_error():
    from evalharness.config import ConfigError

    with pytest.raises(ConfigError, match="needs k_samples, rewards"):
        bind_losses(["exo-rw"], {})
    with pytest.raises(Exception, match="did you mean 'beta'"):
        bind_losses(["dpo", "exmate"], {"dpo.betta": "1"})

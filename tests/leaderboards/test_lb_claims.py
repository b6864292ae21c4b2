"""Claims as data (leaderboards.claims): parsing [[claims]], refusing forms not supported yet, and verdicts with Holm."""

import numpy as np
import pytest
import tomllib

from leaderboards import claims as C

DOC = tomllib.loads("""
[[claims]]
text = "exmate's perplexity is lower than dpo's"
quantity = "perplexity"
a = "exmate"
relation = "lower"
b = "dpo"

[[claims]]
quantity = "gold_reward"
a = "exo-pref"
relation = "higher"
b = "dpo"
margin = 0.1
""")


def test_claims_parse_from_toml():
    first, second = C.parse_claims(DOC, "exp.toml")
    assert first == C.Claim("exmate's perplexity is lower than dpo's", "perplexity", "exmate", "dpo", "lower")
    assert second.margin == 0.1 and second.text == "exo-pref's gold_reward is higher than dpo's"
    assert C.parse_claims({}) == []


@pytest.mark.parametrize("extra, message", [
    ({"at": "matched kl"}, r"claims\[0\] \('t'\): 'at' is not a claim field; write matched = QUANTITY"),
    ({"relation": "equal"}, "relation 'equal' is not supported yet"),
    ({"relation": "above"}, "relation must be one of higher, lower, dominates, below_fraction, got 'above'"),
    ({"relation": "dominates"}, r"relation 'dominates' needs frontier = \[X, Y\]"),
    ({"relation": "dominates", "frontier": ["kl", "win_rate"], "matched": "kl"}, "matched does not apply"),
    ({"relation": "below_fraction"}, "relation 'below_fraction' needs fraction = F"),
    ({"relation": "below_fraction", "fraction": 0}, "fraction must be a number > 0"),
    ({"fraction": 0.1}, "fraction belongs to relation 'below_fraction', not 'lower'"),
    ({"frontier": ["kl", "win_rate"]}, "frontier belongs to relation 'dominates'"),
    ({"given": "accuracy"}, "given and within go together"),
    ({"matched": "kl"}, "the condition names the claim's own quantity 'kl'"),
    ({"matched": "accuracy", "given": "margin", "within": 0.1}, "matched and given are two forms"),
    ({"quantiy": "kl"}, "unknown field 'quantiy'; did you mean 'quantity'"),
    ({"b": "x"}, "a and b name the same configuration 'x'"),
    ({"margin": -1}, "margin must be a number >= 0"),
    ({"a": ""}, "a must be a non-empty string"),
])
def test_unsupported_or_malformed_claims_are_refused_in_one_line(extra, message):
    claim = {"text": "t", "quantity": "kl", "a": "x", "b": "y", "relation": "lower", **extra}
    with pytest.raises(C.ClaimError, match=message) as e:
        C.parse_claims({"claims": [claim]}, "exp.toml")
    assert "\n" not in str(e.value) and str(e.value).startswith("exp.toml: claims[0]")


def _claim(relation="higher", margin=0.0, quantity="gold_reward"):
    return C.Claim("t", quantity, "a", "b", relation, margin)


def _sides(rng, effect, seeds=4, prompts=80):
    """Seeds x prompts values of B and of A = B + effect + noise (a prompt effect shared by both)."""
    b = rng.standard_normal((seeds, 1)) * 0.1 + rng.standard_normal((1, prompts)) + rng.standard_normal((seeds, prompts))
    return C.Measured(b + effect + 0.5 * rng.standard_normal(b.shape), b)


def test_planted_none_and_reversed_effects_give_the_three_verdicts():
    rng = np.random.default_rng(0)
    data = {"planted": _sides(rng, 0.4), "none": _sides(rng, 0.0), "reversed": _sides(rng, -0.4)}
    claims = [C.Claim(k, "gold_reward", "a", "b", "higher") for k in data]
    out = {v.claim.text: v for v in C.evaluate_claims(claims, lambda c: data[c.text], resamples=500)}
    assert out["planted"].verdict == "reproduced" and out["planted"].ci_low > 0
    assert out["none"].verdict == "inconclusive" and out["none"].ci_low < 0 < out["none"].ci_high
    assert out["reversed"].verdict == "contradicted" and out["reversed"].ci_high < 0
    assert out["planted"].prompts == 80 and out["planted"].seeds == (4, 4)
    # "lower" reads the same numbers the other way round
    (low,) = C.evaluate_claims([_claim("lower")], lambda c: data["reversed"], resamples=500)
    assert low.verdict == "reproduced" and low.difference == pytest.approx(out["reversed"].difference)


def test_a_margin_is_part_of_the_claim():
    data = _sides(np.random.default_rng(1), 0.4)
    (plain,) = C.evaluate_claims([_claim()], lambda c: data, resamples=500)
    (more,) = C.evaluate_claims([_claim(margin=1.5)], lambda c: data, resamples=500)
    assert plain.verdict == "reproduced" and more.verdict == "contradicted"  # 0.4 is well short of 1.5
    assert more.difference == pytest.approx(plain.difference)


def test_holm_turns_a_lone_significant_claim_inconclusive_among_several():
    # One seed, 100 prompts; the differences are standardised to mean 0.22 and SD 1 exactly, so SE = 0.1 and
    # z = 2.2: p ~ 0.028 alone (reproduced), but among three claims Holm multiplies it by 3 (~0.08 > 0.05).
    z = np.random.default_rng(2).standard_normal(100)
    z = (z - z.mean()) / z.std(ddof=1)
    moderate = C.Measured(z + 0.22, np.zeros(100))
    null = C.Measured(z, np.zeros(100))
    (alone,) = C.evaluate_claims([_claim()], lambda c: moderate, resamples=2000)
    assert alone.verdict == "reproduced" and 0.01 < alone.p_value < 0.05
    many = C.evaluate_claims([_claim(), _claim(quantity="kl"), _claim(quantity="agility")],
                             lambda c: moderate if c.quantity == "gold_reward" else null, resamples=2000)
    assert many[0].verdict == "inconclusive" and many[0].p_adjusted == pytest.approx(min(1.0, 3 * many[0].p_value))
    assert "Holm over 3 claims" in many[0].note


def test_an_unmeasured_claim_is_inconclusive_and_not_counted_by_holm():
    data = _sides(np.random.default_rng(3), 0.4)
    out = C.evaluate_claims([_claim(), _claim(quantity="kl")], lambda c: data if c.quantity != "kl" else None,
                            resamples=300)
    assert out[0].p_adjusted == out[0].p_value and out[1].verdict == "inconclusive" and out[1].note == "not measured"
    assert out[1].as_dict()["p_value"] is None and out[0].as_dict()["verdict"] == "reproduced"

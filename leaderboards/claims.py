"""Claims as data: an experiment's statements about its own measurements, each evaluated into a verdict.

A claim compares one quantity of two configurations::

    [[claims]]
    text = "exmate's perplexity is lower than dpo's"
    quantity = "perplexity"      # a measured quantity (win_rate, gold_reward, kl, perplexity, agility, margin, …)
    a = "exmate"                 # the configuration the statement is about
    relation = "lower"           # higher | lower
    b = "dpo"                    # the one it is compared with
    margin = 0.0                 # optional: by more than this (in the quantity's units)

Version 1 evaluates these plain comparisons only. Conditional and frontier forms ("at matched KL", "at accuracy within
0.05", "the KL-win-rate frontier dominates", ratios such as "below 1% of sft's") need a matching rule (which
checkpoints of the two sides count as matched) that is not defined yet; a claim in one of those forms is refused with
one line naming it, never evaluated as a plain comparison.

Verdicts. Per claim, d = A - B over the units both sides measured (``evalharness.stats.paired_difference``: shared
prompts, and shared seeds where the sides' seeds are paired). Its two-sided p-value tests d = +margin (``higher``) or
d = -margin (``lower``); the p-values of all claims evaluated together are Holm-adjusted. A claim is *reproduced*
when its adjusted p is at most alpha and d lies on the claimed side of the margin, *contradicted* when the adjusted p
is at most alpha and d lies on the other side, and *inconclusive* otherwise. The p-value inverts the percentile
bootstrap, so "adjusted p <= alpha" is "the interval at the Holm level excludes the margin"; the interval reported is
the unadjusted one at ``level``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalharness import stats
from evalharness.config import ConfigError

RELATIONS = ("higher", "lower")
VERDICTS = ("reproduced", "contradicted", "inconclusive")
FIELDS = ("text", "quantity", "a", "b", "relation", "margin")
# Forms a later version may evaluate; named here so that they are refused as "not yet", not as typos.
CONDITIONS = ("at", "matched", "within", "where", "ratio", "frontier")
LATER_RELATIONS = ("dominates", "below_fraction", "equal", "within")


class ClaimError(ConfigError):
    """A claim that can't be evaluated as written: a missing or unknown field, or a form not supported yet."""


@dataclass(frozen=True)
class Claim:
    text: str
    quantity: str
    a: str
    b: str
    relation: str
    margin: float = 0.0

    @property
    def sign(self) -> int:
        """+1 when the claim says A - B is above the margin, -1 when it says A - B is below minus the margin."""
        return 1 if self.relation == "higher" else -1


def parse_claims(doc: dict[str, Any], source: str = "claims") -> list[Claim]:
    """The ``[[claims]]`` of a parsed TOML document (none: an empty list); a ClaimError names the claim and field."""
    raw = doc.get("claims", [])
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        raise ClaimError(f"{source}: claims must be an array of tables ([[claims]])")
    return [parse_claim(c, f"{source}: claims[{i}]") for i, c in enumerate(raw)]


def parse_claim(c: dict[str, Any], where: str) -> Claim:
    where = f"{where} ({c['text']!r})" if isinstance(c.get("text"), str) else where
    for key in c:
        if key in CONDITIONS:
            raise ClaimError(f"{where}: the condition {key!r} is not supported yet; claims compare one quantity of "
                             "two configurations (relation higher or lower, an optional margin)")
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            raise ClaimError(f"{where}: unknown field {key!r}" + (f"; did you mean {close[0]!r}?" if close
                                                                   else f" (fields: {', '.join(FIELDS)})"))
    for key in ("quantity", "a", "b", "relation"):
        if not isinstance(c.get(key), str) or not c[key].strip():
            raise ClaimError(f"{where}: {key} must be a non-empty string")
    relation = c["relation"]
    if relation in LATER_RELATIONS:
        raise ClaimError(f"{where}: relation {relation!r} is not supported yet (supported: higher, lower)")
    if relation not in RELATIONS:
        raise ClaimError(f"{where}: relation must be higher or lower, got {relation!r}")
    if c["a"] == c["b"]:
        raise ClaimError(f"{where}: a and b name the same configuration {c['a']!r}")
    margin = c.get("margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
        raise ClaimError(f"{where}: margin must be a number >= 0, got {margin!r}")
    text = c.get("text", f"{c['a']}'s {c['quantity']} is {relation} than {c['b']}'s")
    if not isinstance(text, str):
        raise ClaimError(f"{where}: text must be a string")
    return Claim(text, c["quantity"], c["a"], c["b"], relation, float(margin))


@dataclass(frozen=True)
class Measured:
    """A claim's quantity per unit: seeds x prompts matrices of A and of B over the same prompts (columns)."""

    a: np.ndarray
    b: np.ndarray
    paired_seeds: bool = True


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict with its difference A - B, the unadjusted interval, the p-value and its Holm adjustment."""

    claim: Claim
    verdict: str
    difference: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    p_value: float = float("nan")
    p_adjusted: float = float("nan")
    mde: float = float("nan")
    prompts: int = 0
    seeds: tuple[int, int] = (0, 0)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        c = self.claim
        num = lambda x: None if x is None or not math.isfinite(x) else float(x)  # noqa: E731 - JSON has no NaN
        return {"text": c.text, "quantity": c.quantity, "a": c.a, "b": c.b, "relation": c.relation,
                "margin": c.margin, "verdict": self.verdict, "difference": num(self.difference),
                "ci_low": num(self.ci_low), "ci_high": num(self.ci_high), "p_value": num(self.p_value),
                "p_adjusted": num(self.p_adjusted), "mde": num(self.mde), "prompts": self.prompts,
                "seeds": list(self.seeds), "note": self.note}


def evaluate_claims(claims: Sequence[Claim], measure: Callable[[Claim], Measured | None], alpha: float = 0.05,
                    resamples: int = 2000, seed: int = 0, level: float = 0.95) -> list[Verdict]:
    """Each claim's verdict (module docstring), Holm-adjusted across ``claims``. ``measure`` gives a claim's
    per-unit values, or None where the store holds none: that claim is inconclusive ("not measured") and takes no
    part in the adjustment."""
    found: list[tuple[Claim, stats.Difference | None]] = []
    for i, claim in enumerate(claims):
        m = measure(claim)
        if m is None:
            found.append((claim, None))
            continue
        shift = claim.sign * claim.margin  # d = shift is "no more than the margin": the tested value
        d = stats.paired_difference(np.asarray(m.a, float) - shift, m.b, m.paired_seeds, resamples, seed + i, level)
        found.append((claim, d))
    adjusted = stats.holm([d.p_value if d is not None else math.nan for _, d in found])
    out = []
    for (claim, d), p_adj in zip(found, adjusted):
        if d is None:
            out.append(Verdict(claim, "inconclusive", note="not measured"))
            continue
        shift = claim.sign * claim.margin
        if p_adj <= alpha and d.estimate * claim.sign > 0:
            verdict = "reproduced"
        elif p_adj <= alpha and d.estimate * claim.sign < 0:
            verdict = "contradicted"
        else:
            verdict = "inconclusive"
        measured = int(np.sum(~np.isnan(adjusted)))
        note = "" if verdict != "inconclusive" else f"not significant at alpha {alpha} (Holm over {measured} claims)"
        out.append(Verdict(claim, verdict, d.estimate + shift, d.ci_low + shift, d.ci_high + shift, d.p_value,
                           float(p_adj), d.mde, d.prompts, d.seeds, note))
    return out

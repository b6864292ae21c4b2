"""Claims as data: an experiment's statements about its own measurements, each evaluated into a verdict.

A claim names two configurations (``a``, ``b``: run names; replicates ``<name>-seed<k>`` count as one configuration,
and in the frontier forms a name also covers its grid, ``dpo`` standing for ``dpo-beta0.1``, ``dpo-beta0.5``, …) and
one of five forms::

    [[claims]]                   # plain: one quantity of two configurations
    text = "exmate's perplexity is lower than dpo's"
    quantity = "perplexity"      # win_rate (%), gold_reward, kl, perplexity, agility, margin, accuracy, train:NAME
    a = "exmate"
    relation = "lower"           # higher | lower
    b = "dpo"
    margin = 0.0                 # optional: by more than this (in the quantity's units)

    [[claims]]                   # at matched values of a second quantity
    quantity = "gold_reward"
    a = "exo-pref"
    relation = "higher"
    b = "dpo"
    matched = "kl"

    [[claims]]                   # conditional: only where a second quantity agrees within a tolerance
    quantity = "margin"
    a = "sr-dpo"
    relation = "lower"
    b = "dpo"
    given = "accuracy"
    within = 0.05

    [[claims]]                   # frontier dominance across the β grid
    a = "e-dpo"
    relation = "dominates"
    b = "dpo"
    frontier = ["kl", "win_rate"]   # [x, y]: lower x and higher y are better

    [[claims]]                   # ratio
    quantity = "train:grad_norm"
    a = "dpo"
    relation = "below_fraction"
    b = "sft"
    fraction = 0.01

The effect and its null value, per form:

- plain: d = A - B over the units both sides measured (``evalharness.stats.paired_difference``: shared prompts, and
  shared seeds where the sides' seeds are paired); null +margin (``higher``) or -margin (``lower``).
- matched: the mean over the overlap of y_A(x) - y_B(x), each method's frontier (its configurations in order of the
  matched quantity) interpolated linearly at matched x values (``leaderboards.frontier``: 21 evenly spaced values
  across the overlap of the two x ranges, no extrapolation); no overlap: inconclusive, with both ranges. Null as
  plain.
- conditional: the plain effect, evaluated only when the whole interval (at ``level``) of the ``given`` quantity's
  difference lies within ±``within``; otherwise inconclusive with that difference as the reason (an equivalence
  condition: a difference that merely fails to be significant does not pass).
- dominates: the minimum over the overlap of y_A(x) - y_B(x) (the frontiers matched as above); null 0 (+margin).
  Reproduced: A's frontier is above B's at every matched x; contradicted: B's is above A's somewhere.
- below_fraction: the ratio A / B of the two means; null ``fraction``; the claim says the ratio is below it.

Uncertainty comes from resampling (the two-level bootstrap of seeds and prompts, or of seeds and logged steps for
``train:NAME``; a per-checkpoint metric of one seed is drawn from its stored standard error), and every bootstrap draw
repeats the whole computation (interpolation and overlap included). The two-sided p-value tests effect = null
(``stats.bootstrap_p`` of the draws about the null); the p-values of all claims evaluated together are Holm-adjusted.
A claim is *reproduced* when its adjusted p is at most alpha and the effect lies on the claimed side of the null,
*contradicted* when the adjusted p is at most alpha and it lies on the other side, and *inconclusive* otherwise (with
the reason). The interval reported is the unadjusted one at ``level``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalharness import stats
from evalharness.config import ConfigError
from leaderboards import frontier

RELATIONS = ("higher", "lower", "dominates", "below_fraction")
QUANTITIES = ("win_rate", "gold_reward", "kl", "perplexity", "agility", "margin", "accuracy")
TRAIN = "train:"  # train:NAME, a training metric the loop logs (train:grad_norm)
VERDICTS = ("reproduced", "contradicted", "inconclusive")
FIELDS = ("text", "quantity", "a", "b", "relation", "margin", "matched", "given", "within", "frontier", "fraction")
# Spellings a reader may reach for; refused with the supported one, not as typos.
CONDITIONS = {"at": "matched = QUANTITY", "where": "given = QUANTITY with within = TOLERANCE",
              "ratio": 'relation = "below_fraction" with fraction = F'}
LATER_RELATIONS = ("equal", "within")


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
    matched: str | None = None
    given: str | None = None
    within: float | None = None
    frontier: tuple[str, str] | None = None
    fraction: float | None = None

    @property
    def form(self) -> str:
        if self.relation == "dominates":
            return "frontier"
        if self.relation == "below_fraction":
            return "ratio"
        return "matched" if self.matched else "conditional" if self.given else "plain"

    @property
    def sign(self) -> int:
        """+1 when the claim says the effect is above its null value, -1 when below."""
        return 1 if self.relation in ("higher", "dominates") else -1

    @property
    def null(self) -> float:
        """The effect's value under "no more than claimed" (module docstring)."""
        if self.relation == "below_fraction":
            return float(self.fraction)
        return self.sign * self.margin

    @property
    def quantities(self) -> tuple[str, ...]:
        """Every quantity the claim reads."""
        return tuple(q for q in (self.quantity, self.matched, self.given, *(self.frontier or ())) if q)


def parse_claims(doc: dict[str, Any], source: str = "claims") -> list[Claim]:
    """The ``[[claims]]`` of a parsed TOML document (none: an empty list); a ClaimError names the claim and field."""
    raw = doc.get("claims", [])
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        raise ClaimError(f"{source}: claims must be an array of tables ([[claims]])")
    return [parse_claim(c, f"{source}: claims[{i}]") for i, c in enumerate(raw)]


def _name(c: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    if key not in c and not required:
        return None
    if not isinstance(c.get(key), str) or not c[key].strip():
        raise ClaimError(f"{where}: {key} must be a non-empty string")
    return c[key]


def _number(c: dict[str, Any], key: str, where: str, positive: bool) -> float | None:
    if key not in c:
        return None
    v = c[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ClaimError(f"{where}: {key} must be a number {'> 0' if positive else '>= 0'}, got {v!r}")
    return float(v)


def parse_claim(c: dict[str, Any], where: str) -> Claim:
    where = f"{where} ({c['text']!r})" if isinstance(c.get("text"), str) else where
    for key in c:
        if key in CONDITIONS:
            raise ClaimError(f"{where}: {key!r} is not a claim field; write {CONDITIONS[key]}")
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            raise ClaimError(f"{where}: unknown field {key!r}" + (f"; did you mean {close[0]!r}?" if close
                                                                   else f" (fields: {', '.join(FIELDS)})"))
    a, b, relation = (_name(c, k, where) for k in ("a", "b", "relation"))
    if relation in LATER_RELATIONS:
        raise ClaimError(f"{where}: relation {relation!r} is not supported yet (supported: {', '.join(RELATIONS)})")
    if relation not in RELATIONS:
        raise ClaimError(f"{where}: relation must be one of {', '.join(RELATIONS)}, got {relation!r}")
    if a == b:
        raise ClaimError(f"{where}: a and b name the same configuration {a!r}")
    margin = _number(c, "margin", where, False) or 0.0
    within, fraction = _number(c, "within", where, True), _number(c, "fraction", where, True)
    matched, given = _name(c, "matched", where, False), _name(c, "given", where, False)
    frontier = c.get("frontier")
    if relation == "dominates":
        if (not isinstance(frontier, list) or len(frontier) != 2 or not all(isinstance(q, str) and q.strip()
                                                                             for q in frontier)):
            raise ClaimError(f"{where}: relation 'dominates' needs frontier = [X, Y] (two quantities: lower X and "
                             f"higher Y are better), got {frontier!r}")
        frontier = tuple(frontier)
        quantity = c.get("quantity", f"{frontier[0]}-{frontier[1]} frontier")
    else:
        quantity = _name(c, "quantity", where)
        if frontier is not None:
            raise ClaimError(f"{where}: frontier belongs to relation 'dominates', not {relation!r}")
    extra = [k for k in ("matched", "given", "within") if k in c]
    if relation in ("dominates", "below_fraction") and extra:
        raise ClaimError(f"{where}: {extra[0]} does not apply to relation {relation!r}")
    if relation == "below_fraction":
        if fraction is None:
            raise ClaimError(f"{where}: relation 'below_fraction' needs fraction = F (A's quantity is below F times "
                             "B's)")
        if "margin" in c:
            raise ClaimError(f"{where}: margin does not apply to relation 'below_fraction' (fraction is its bound)")
    elif fraction is not None:
        raise ClaimError(f"{where}: fraction belongs to relation 'below_fraction', not {relation!r}")
    if matched and given:
        raise ClaimError(f"{where}: matched and given are two forms; a claim takes one")
    if (given is None) != (within is None):
        raise ClaimError(f"{where}: given and within go together (given = QUANTITY, within = TOLERANCE)")
    for q in (matched, given):
        if q is not None and q == quantity:
            raise ClaimError(f"{where}: the condition names the claim's own quantity {q!r}")
    for key, q in (("quantity", quantity if relation != "dominates" or "quantity" in c else None),
                   ("matched", matched), ("given", given), *(("frontier", f) for f in frontier or ())):
        if q is not None:
            _check_quantity(q, key, where)
    text = c.get("text", f"{a}'s {quantity} is {relation.replace('_', ' ')} " + (f"{fraction} of " if fraction else "")
                 + f"{'than ' if relation in ('higher', 'lower') else ''}{b}'s")
    if not isinstance(text, str):
        raise ClaimError(f"{where}: text must be a string")
    return Claim(text, quantity, a, b, relation, margin, matched, given, within, frontier, fraction)


def _check_quantity(q: str, key: str, where: str) -> None:
    if q in QUANTITIES or (q.startswith(TRAIN) and len(q) > len(TRAIN)):
        return
    close = difflib.get_close_matches(q, QUANTITIES, n=1)
    raise ClaimError(f"{where}: {key} {q!r} is not a measured quantity" + (f"; did you mean {close[0]!r}?" if close
                     else f" ({', '.join(QUANTITIES)} or {TRAIN}NAME)"))


@dataclass(frozen=True)
class Effect:
    """A claim's effect measured by resampling: its estimate and bootstrap draws, in the claim's own terms (a
    difference, a matched gap, a ratio), with ``condition`` the ``given`` quantity's A - B where the claim has one."""

    estimate: float
    draws: np.ndarray
    prompts: int = 0
    seeds: tuple[int, int] = (0, 0)
    note: str = ""
    condition: Effect | None = None


@dataclass(frozen=True)
class Measured:
    """A claim's quantity per unit: seeds x prompts matrices of A and of B over the same prompts (columns)."""

    a: np.ndarray
    b: np.ndarray
    paired_seeds: bool = True
    condition: Effect | None = None


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict with its effect (A - B, a matched gap or a ratio), the unadjusted interval, the p-value and
    its Holm adjustment."""

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
        return {"text": c.text, "form": c.form, "quantity": c.quantity, "a": c.a, "b": c.b, "relation": c.relation,
                "margin": c.margin, "matched": c.matched, "given": c.given, "within": c.within,
                "frontier": list(c.frontier) if c.frontier else None, "fraction": c.fraction,
                "verdict": self.verdict, "difference": num(self.difference), "ci_low": num(self.ci_low),
                "ci_high": num(self.ci_high), "p_value": num(self.p_value), "p_adjusted": num(self.p_adjusted),
                "mde": num(self.mde), "prompts": self.prompts, "seeds": list(self.seeds), "note": self.note}


@dataclass
class _Found:
    claim: Claim
    diff: stats.Difference | None = None
    reason: str = ""
    note: str = ""
    extra: list[str] = field(default_factory=list)


def _effect_difference(e: Effect, null: float, level: float) -> stats.Difference | None:
    draws = np.asarray(e.draws, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if draws.size < 2 or not math.isfinite(e.estimate):
        return None
    lo, hi = stats.percentile_ci(draws, level)
    se = float(draws.std(ddof=1))
    return stats.Difference(e.estimate, float(lo), float(hi), stats.bootstrap_p(draws - null), se,
                            stats.min_detectable_effect(se, 1), e.prompts, e.seeds, False, level)


def condition_holds(claim: Claim, cond: Effect, level: float) -> tuple[bool, str]:
    """Whether the ``given`` quantity's difference lies within ±within at ``level`` (the whole interval), and
    the line that says so."""
    lo, hi = stats.percentile_ci(np.asarray(cond.draws)[np.isfinite(cond.draws)], level)
    line = (f"{claim.given} differs by {cond.estimate:+.4g} [{float(lo):+.4g}, {float(hi):+.4g}]")
    if -claim.within <= lo and hi <= claim.within:
        return True, f"{line}, within ±{claim.within:g}"
    return False, f"{line}: not shown within ±{claim.within:g}, so the condition does not hold"


def difference_effect(a: frontier.Estimate, b: frontier.Estimate) -> Effect:
    """A - B of two resampled means (their draws independent: a per-checkpoint metric, a condition)."""
    return Effect(a.value - b.value, a.draws - b.draws, max(a.units, b.units), (a.seeds, b.seeds))


def ratio_effect(a: frontier.Estimate, b: frontier.Estimate) -> Effect | str:
    value, draws = frontier.ratio(a, b)
    if not math.isfinite(value):
        return "B's mean is 0: no ratio"
    return Effect(value, draws, max(a.units, b.units), (a.seeds, b.seeds), f"A = {a.value:.4g}, B = {b.value:.4g}")


def frontier_effect(claim: Claim, a: Sequence[frontier.Point], b: Sequence[frontier.Point]) -> Effect | str:
    """The matched gap (``np.mean``; ``np.min`` for dominance) of the two sides' frontiers, or why there is none."""
    x = claim.frontier[0] if claim.frontier else claim.matched
    m = frontier.matched(a, b, np.min if claim.relation == "dominates" else np.mean)
    span = lambda ps: f"[{min(p.x.value for p in ps):.4g}, {max(p.x.value for p in ps):.4g}]"  # noqa: E731
    if m is None:
        return f"no overlap in {x}: {claim.a} spans {span(a)}, {claim.b} spans {span(b)}"
    note = (f"{x} matched over [{m.span[0]:.4g}, {m.span[1]:.4g}] ({len(a)} and {len(b)} configurations)"
            + (f"; {m.dropped} draws without overlap left out" if m.dropped else ""))
    units = max(p.y.units for p in (*a, *b))
    return Effect(m.estimate, m.draws, units, (max(p.y.seeds for p in a), max(p.y.seeds for p in b)), note)


Measurement = Measured | Effect | str | None


def evaluate_claims(claims: Sequence[Claim], measure: Callable[[Claim], Measurement], alpha: float = 0.05,
                    resamples: int = 2000, seed: int = 0, level: float = 0.95) -> list[Verdict]:
    """Each claim's verdict (module docstring), Holm-adjusted across ``claims``. ``measure`` gives a claim's
    per-unit values (``Measured``) or its resampled effect (``Effect``); a string is the reason it can't be measured
    (no overlap, no such run), None that the store holds nothing for it ("not measured"). An unmeasured claim, or one
    whose condition does not hold, is inconclusive and takes no part in the adjustment."""
    found: list[_Found] = []
    for i, claim in enumerate(claims):
        m = measure(claim)
        f = _Found(claim)
        found.append(f)
        if m is None or isinstance(m, str):
            f.reason = m or "not measured"
            continue
        if claim.given and m.condition is not None:
            ok, line = condition_holds(claim, m.condition, level)
            if not ok:
                f.reason = line
                continue
            f.extra.append(line)
        elif claim.given:
            f.reason = f"{claim.given} not measured"
            continue
        if isinstance(m, Measured):
            shift = claim.null  # d = shift is "no more than the margin": the tested value
            d = stats.paired_difference(np.asarray(m.a, float) - shift, m.b, m.paired_seeds, resamples, seed + i,
                                        level)
            f.diff = stats.Difference(d.estimate + shift, d.ci_low + shift, d.ci_high + shift, d.p_value, d.se,
                                      d.mde, d.prompts, d.seeds, d.paired_seeds, level)
        else:
            f.diff = _effect_difference(m, claim.null, level)
            f.note = m.note
            if f.diff is None:
                f.reason = m.note or "no resampled effect"
    adjusted = stats.holm([f.diff.p_value if f.diff is not None else math.nan for f in found])
    measured = int(np.sum(~np.isnan(adjusted)))
    out = []
    for f, p_adj in zip(found, adjusted):
        claim, d = f.claim, f.diff
        if d is None:
            out.append(Verdict(claim, "inconclusive", note=f.reason))
            continue
        side = (d.estimate - claim.null) * claim.sign
        verdict = ("reproduced" if p_adj <= alpha and side > 0 else "contradicted" if p_adj <= alpha and side < 0
                   else "inconclusive")
        notes = [*f.extra] + ([f.note] if f.note else [])
        if verdict == "inconclusive":
            notes.append(f"not significant at alpha {alpha} (Holm over {measured} claims)")
        out.append(Verdict(claim, verdict, d.estimate, d.ci_low, d.ci_high, d.p_value, float(p_adj), d.mde,
                           d.prompts, d.seeds, "; ".join(notes)))
    return out


def render_verdicts(verdicts: Sequence[Verdict | dict[str, Any]], level: float = 0.95) -> list[str]:
    """The lines printed after a board: one per claim, its verdict first (``Verdict``s or their ``as_dict``)."""
    if not verdicts:
        return []
    pct = int(round(level * 100))
    lines = [f"claims ({pct}% CI of the effect; p two-sided; Holm over the claims measured):"]
    f = lambda x: "-" if x is None or not math.isfinite(x) else f"{x:+.4g}"  # noqa: E731
    for v in verdicts:
        d = v.as_dict() if isinstance(v, Verdict) else v
        line = f"  {d['verdict']:<12} {d['text']}"
        if d["difference"] is not None:
            line += (f": effect {f(d['difference'])} [{f(d['ci_low'])}, {f(d['ci_high'])}], p {d['p_value']:.3g}, "
                     f"p Holm {d['p_adjusted']:.3g}")
        lines.append(line + (f" ({d['note']})" if d.get("note") else ""))
    return lines

"""Leaderboard statistics over judged pairs: combined verdicts, win rates, bootstrap CIs, Bradley-Terry, length control.

Every function is pure and vectorised over numpy arrays. The unit of data is the *pair*: one prompt (and turn and
sample), two models A and B, and up to two stored orders of the judge (A shown first, then B shown first). Shapes use
``n`` for orders or pairs, ``M`` for models, ``K`` for distinct model pairs, ``P`` for prompts (the bootstrap's
resampling unit) and ``B`` for bootstrap resamples.

Outcome conventions: an order's ``a_score`` is 1 when A was preferred, 0 when B was, 0.5 for a tie and NaN for an
unparsed or failed order. A pair's combined ``verdict`` is +1 (A wins), 0 (tie) or -1 (B wins), and its outcome ``y``
is A's score in [0, 1] under the tie policy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from evalharness.stats import percentile_ci
from evalharness.stats import resample_counts as _resample_counts

TIE_POLICIES = ("tie", "exclude", "average")
ELO_SCALE = 400.0 / math.log(10.0)  # natural-log strength -> Elo points: P(i beats j) = 1 / (1 + 10^(-(Ri-Rj)/400))
ELO_ANCHOR = 1000.0
RESAMPLE_CHUNK = 64  # resamples drawn per generator call: bounds memory at RESAMPLE_CHUNK x P counts


# ------------------------------------------------------------------------------------------------ combining orders


ORDER_RULES = ("agree", "fastchat", "alpacaeval")


@dataclass(frozen=True)
class CombinedPairs:
    """Per pair (``m`` pairs): ``verdict`` (m,) int8 in {+1, 0, -1} (0 also for pairs with no valid order or that the
    rule drops, see ``usable``), ``score`` (m,) A's combined hard outcome in [0, 1] (NaN where unusable), ``p_a`` (m,)
    mean P(A preferred) over the valid orders (NaN when none), ``n_valid`` and ``n_invalid`` (m,) the orders used
    and the unparsed/failed orders left out, ``usable`` (m,) whether the rule keeps the pair."""

    verdict: np.ndarray
    p_a: np.ndarray
    n_valid: np.ndarray
    n_invalid: np.ndarray
    score: np.ndarray | None = None
    usable: np.ndarray | None = None


def apply_order_rule(rule: str, n_valid: np.ndarray, n_invalid: np.ndarray, n_a: np.ndarray, n_b: np.ndarray,
                     a_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pair's verdict from its orders' counts, by an order rule; returns ``verdict`` (m,) int8 in {+1, 0, -1},
    ``score`` (m,) A's combined outcome in [0, 1] and ``usable`` (m,) bool.

    Inputs per pair (m,): ``n_valid`` orders with a verdict, ``n_invalid`` unparsed/failed orders, ``n_a`` / ``n_b``
    orders that preferred A / B, ``a_mean`` the mean of the valid orders' scores (1 / 0.5 / 0).

    ``agree`` (the default): all valid orders prefer A -> +1, all prefer B -> -1, they disagree or one says tie -> 0;
    unparsed/failed orders are left out, so a single valid order decides alone. ``fastchat`` (FastChat's MT-Bench
    pairwise rule): the same, but a pair with an unparsed/failed order is dropped. ``alpacaeval``: the pair's outcome
    is the mean of its orders' preferences (A, tie -> 0.75), its verdict the side that mean leans to.
    Under ``agree`` and ``fastchat`` the score is the verdict's (1 / 0.5 / 0).

    >>> v, s, u = apply_order_rule("fastchat", np.array([2, 1, 2]), np.array([0, 1, 0]), np.array([2, 1, 1]),
    ...                            np.array([0, 0, 0]), np.array([1.0, 1.0, 0.75]))
    >>> v.tolist(), s.tolist(), u.tolist()
    ([1, 0, 0], [1.0, nan, 0.5], [True, False, True])
    >>> apply_order_rule("alpacaeval", np.array([2]), np.array([0]), np.array([1]), np.array([0]),
    ...                  np.array([0.75]))[:2]
    (array([1], dtype=int8), array([0.75]))
    """
    if rule not in ORDER_RULES:
        raise ValueError(f"order rule {rule!r} is not one of {', '.join(ORDER_RULES)}")
    n_valid, n_invalid = np.asarray(n_valid, dtype=np.int64), np.asarray(n_invalid, dtype=np.int64)
    a_mean = np.asarray(a_mean, dtype=np.float64)
    usable = n_valid > 0
    if rule == "fastchat":
        usable &= n_invalid == 0
    verdict = np.zeros(n_valid.shape, dtype=np.int8)
    if rule == "alpacaeval":
        verdict[usable & (a_mean > 0.5)] = 1
        verdict[usable & (a_mean < 0.5)] = -1
        score = np.where(usable, a_mean, np.nan)
    else:
        verdict[usable & (np.asarray(n_a) == n_valid)] = 1
        verdict[usable & (np.asarray(n_b) == n_valid)] = -1
        score = np.where(usable, (verdict + 1.0) / 2.0, np.nan)
    return verdict, score, usable


def combine_orders(pair: np.ndarray, a_score: np.ndarray, p_a: np.ndarray | None = None,
                   n_pairs: int | None = None, rule: str = "agree") -> CombinedPairs:
    """Combine each pair's stored orders into one verdict by an order rule (``apply_order_rule``; LOSSES.md
    "Pairwise judging").

    ``pair`` (n,) int: the pair each order belongs to, in ``0..n_pairs-1``. ``a_score`` (n,) float: 1 / 0.5 / 0 for
    A preferred / tie / B preferred in that order, NaN for an unparsed or failed order (left out and counted).
    ``p_a`` (n,) float: P(A preferred) from the judge's probability for that order (already flipped when B was shown
    first), NaN where the judge gives none; the hard ``a_score`` stands in for a missing one.

    >>> c = combine_orders(np.array([0, 0, 1, 1, 2, 2, 3]), np.array([1, 1, 1, 0, 1, np.nan, 0.5]))
    >>> c.verdict.tolist(), c.n_valid.tolist(), c.n_invalid.tolist()
    ([1, 0, 1, 0], [2, 2, 1, 1], [0, 0, 1, 0])
    """
    pair = np.asarray(pair, dtype=np.int64)
    a_score = np.asarray(a_score, dtype=np.float64)
    m = int(pair.max()) + 1 if n_pairs is None and pair.size else (n_pairs or 0)
    valid = ~np.isnan(a_score)
    n_valid = np.bincount(pair, weights=valid, minlength=m).astype(np.int64)
    n_invalid = np.bincount(pair, weights=~valid, minlength=m).astype(np.int64)
    n_a = np.bincount(pair, weights=valid & (a_score == 1.0), minlength=m)
    n_b = np.bincount(pair, weights=valid & (a_score == 0.0), minlength=m)
    score_sum = np.bincount(pair, weights=np.where(valid, a_score, 0.0), minlength=m)
    prob = a_score if p_a is None else np.where(np.isnan(p_a), a_score, p_a)
    prob_sum = np.bincount(pair, weights=np.where(valid, prob, 0.0), minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(n_valid > 0, prob_sum / np.maximum(n_valid, 1), np.nan)
        a_mean = np.where(n_valid > 0, score_sum / np.maximum(n_valid, 1), np.nan)
    verdict, score, usable = apply_order_rule(rule, n_valid, n_invalid, n_a, n_b, a_mean)
    return CombinedPairs(verdict, mean_p, n_valid, n_invalid, score, usable)


def pair_outcomes(verdict: np.ndarray, p_a: np.ndarray, ties: str = "tie",
                  score: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A's outcome per pair under a tie policy: returns ``y`` (n,) in [0, 1] and ``keep`` (n,) bool.

    ``tie``: a combined tie counts half (y = 0.5). ``exclude``: tied pairs are left out of the win rate (keep=False).
    ``average``: y = the mean P(A preferred) over the pair's orders (``p_a``), where the judge gave probabilities;
    a pair without one falls back to its hard outcome. The hard outcome is ``score`` where given (the ``alpacaeval``
    order rule's mean preference, e.g. 0.75), else the verdict's 1 / 0.5 / 0.

    >>> y, keep = pair_outcomes(np.array([1, 0, -1]), np.array([0.9, 0.6, np.nan]), "average")
    >>> y.tolist(), keep.tolist()
    ([0.9, 0.6, 0.0], [True, True, True])
    """
    if ties not in TIE_POLICIES:
        raise ValueError(f"tie policy {ties!r} is not one of {', '.join(TIE_POLICIES)}")
    verdict = np.asarray(verdict)
    hard = (verdict.astype(np.float64) + 1.0) / 2.0 if score is None else np.asarray(score, dtype=np.float64)
    keep = np.ones(verdict.shape, dtype=bool)
    if ties == "exclude":
        keep = verdict != 0
    if ties == "average":
        p_a = np.asarray(p_a, dtype=np.float64)
        return np.where(np.isnan(p_a), hard, p_a), keep
    return hard, keep


# ------------------------------------------------------------------------------------------------- win rates


@dataclass(frozen=True)
class WinRates:
    """Per model (M,): pairs by combined verdict (``wins``, ``ties``, ``losses``; all pairs, whatever the tie
    policy), ``n`` the pairs the win rate counts, ``win_rate`` = mean outcome in [0, 1] (wins + ties/2)/n under
    the ``tie`` policy, and ``se`` its standard error (NaN where n < 2)."""

    wins: np.ndarray
    ties: np.ndarray
    losses: np.ndarray
    n: np.ndarray
    win_rate: np.ndarray
    se: np.ndarray


def win_rates(model: np.ndarray, y: np.ndarray, verdict: np.ndarray, keep: np.ndarray, n_models: int) -> WinRates:
    """Win / tie / lose counts and the win rate with its standard error, per model.

    ``model`` (n,) int: the rated model of each entry; ``y`` (n,) its outcome; ``verdict`` (n,) +1/0/-1 from its
    side; ``keep`` (n,) whether the entry counts in the win rate. The standard error is the sample standard
    deviation of the kept outcomes (ddof = 1) over sqrt(n): the standard error of the mean per-pair outcome, which
    is how AlpacaEval reports it (pandas ``sem`` of preferences with draws as 0.5). It treats pairs as independent;
    the bootstrap CI, which resamples prompts, does not.
    """
    model = np.asarray(model, dtype=np.int64)
    count = lambda w: np.bincount(model, weights=w, minlength=n_models)  # noqa: E731
    keep_f = np.asarray(keep, dtype=np.float64)
    n = count(keep_f)
    total = count(keep_f * y)
    total_sq = count(keep_f * y * y)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        var = np.maximum(total_sq - n * mean * mean, 0.0) / (n - 1)
        se = np.where(n > 1, np.sqrt(var / n), np.nan)
    return WinRates(count(verdict > 0).astype(np.int64), count(verdict == 0).astype(np.int64),
                    count(verdict < 0).astype(np.int64), n.astype(np.int64), mean, se)


# ------------------------------------------------------------------------------------------------- bootstrap


def resample_counts(n_groups: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples of ``n_groups`` prompts as count matrices (c, P) float64, ``RESAMPLE_CHUNK`` at a time.

    Chunk ``i`` is drawn by the generator seeded with ``(seed, i)`` (``evalharness.stats``), so the resamples depend
    only on (seed, P, B), not on memory or on how the chunks are consumed.
    """
    return _resample_counts(n_groups, n_resamples, seed, chunk=RESAMPLE_CHUNK, seed_per_chunk=True)


def group_sums(group: np.ndarray, key: np.ndarray, value: np.ndarray, n_groups: int, n_keys: int) -> np.ndarray:
    """Dense sums of ``value`` (n,) by (key, group): (n_keys, n_groups). A resample's sums are then ``C @ S.T``."""
    flat = np.asarray(key, dtype=np.int64) * n_groups + np.asarray(group, dtype=np.int64)
    return np.bincount(flat, weights=value, minlength=n_keys * n_groups).reshape(n_keys, n_groups)


class ResampledSums:
    """``counts @ sums.T``: the sums (R, P) of every resample in a chunk of counts (c, P) -> (c, R) float64.

    The products are exact in float32 whenever every sum is a multiple of 1/2 (outcomes 0, 1/2, 1 and pair counts)
    and no result can reach 2^23, where float32 stops representing halves exactly; float32 then halves the memory
    traffic and doubles the SIMD width of the one matrix product that dominates the bootstrap, with identical
    results. Other data (the ``average`` policy's probabilities) or larger totals use float64.
    """

    def __init__(self, sums: np.ndarray):
        self.sums64 = np.ascontiguousarray(sums, dtype=np.float64)
        halves = bool(np.all(np.mod(2.0 * self.sums64, 1.0) == 0.0))
        self.row_max = float(np.abs(self.sums64).sum(axis=1).max(initial=0.0))
        self.sums32 = self.sums64.astype(np.float32) if halves else None

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        if self.sums32 is not None and counts.max(initial=0.0) * self.row_max < 2.0**23:
            return (counts.astype(np.float32) @ self.sums32.T).astype(np.float64)
        return counts @ self.sums64.T


# ------------------------------------------------------------------------------------------------ Bradley-Terry


def model_pairs(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map pairs to distinct unordered model pairs: returns ``pairs`` (K, 2) with i < j, ``key`` (n,) into them, and
    ``y_low`` (n,) the outcome from the side of the lower-numbered model (so pairs of either orientation pool)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    low, high = np.minimum(a, b), np.maximum(a, b)
    code = low * (int(high.max(initial=0)) + 1) + high
    _, first, key = np.unique(code, return_index=True, return_inverse=True)
    pairs = np.stack([low[first], high[first]], axis=1).reshape(-1, 2)
    return pairs, key.reshape(-1), np.where(a == low, y, 1.0 - y)


BT_GAMES = ("pairs", "arena-hard")
STRONG_WEIGHT = 3  # arena-hard-auto's show_result.py: a strong verdict ([[A>>B]]) is three games won


def arena_hard_games(n_valid: np.ndarray, a_sum: np.ndarray, n_strong_a: np.ndarray, n_strong_b: np.ndarray,
                     weight: float = STRONG_WEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """Arena-Hard's Bradley-Terry games per pair (n,): each valid order is a game (a tie half a win for each side)
    and a strong verdict counts ``weight`` games, as arena-hard-auto's ``show_result.py`` repeats that battle.
    Inputs per pair: ``n_valid`` valid orders, ``a_sum`` the sum of their scores for A (1 / 0.5 / 0), ``n_strong_a``
    / ``n_strong_b`` the orders that preferred A / B strongly. Returns A's wins and the games.

    Worked example: orders A>>B, A>B (pair 1) and B>A, B>A (pair 2): pair 1 is 3 + 1 = 4 games, all A's; pair 2 is
    2 games, none A's.

    >>> w, g = arena_hard_games(np.array([2, 2]), np.array([2.0, 0.0]), np.array([1, 0]), np.array([0, 0]))
    >>> w.tolist(), g.tolist()
    ([4.0, 0.0], [4.0, 2.0])
    """
    extra = weight - 1.0
    games = np.asarray(n_valid, np.float64) + extra * (np.asarray(n_strong_a) + np.asarray(n_strong_b))
    return np.asarray(a_sum, np.float64) + extra * np.asarray(n_strong_a, np.float64), games


def bt_fit(wins: np.ndarray, games: np.ndarray, pairs: np.ndarray, n_models: int, ridge: float = 1e-6,
           max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Bradley-Terry maximum likelihood for ``R`` independent data sets at once (the bootstrap's resamples).

    ``wins`` (R, K): wins of ``pairs[k, 0]`` over ``pairs[k, 1]`` (ties as half wins, or fractional outcomes);
    ``games`` (R, K): games between them; ``pairs`` (K, 2) model indices. Returns log-strengths ``theta`` (R, M)
    with mean zero, where P(i beats j) = sigmoid(theta_i - theta_j).

    Newton's method on the concave log-likelihood ``sum_k w_k log s(d_k) + (g_k - w_k) log s(-d_k)``,
    d_k = theta_i - theta_j, solved in one batched linear solve per step. The likelihood is invariant to adding a
    constant, so a penalty (sum theta)^2 / 2 pins the mean to zero without moving the maximum. ``ridge`` adds
    ``ridge/2 * |theta|^2``, a prior so weak (sd 1000 natural units at the default) that it changes a finite MLE by
    far less than the printed precision, but keeps a model that won or lost every game finite instead of diverging.
    Steps are clipped to 5 natural units so such a model walks out in a few iterations rather than overshooting.
    """
    wins = np.atleast_2d(np.asarray(wins, dtype=np.float64))
    games = np.atleast_2d(np.asarray(games, dtype=np.float64))
    r = wins.shape[0]
    incidence = np.zeros((pairs.shape[0], n_models))
    incidence[np.arange(pairs.shape[0]), pairs[:, 0]] = 1.0
    incidence[np.arange(pairs.shape[0]), pairs[:, 1]] = -1.0
    outer = np.einsum("km,kn->kmn", incidence, incidence).reshape(pairs.shape[0], -1)  # (K, M*M)
    theta = np.zeros((r, n_models))
    constraint = np.ones((n_models, n_models)) + ridge * np.eye(n_models)
    for _ in range(max_iter):
        d = theta @ incidence.T  # (R, K)
        s = 0.5 * (1.0 + np.tanh(0.5 * d))  # sigmoid without overflow
        grad = (wins - games * s) @ incidence - theta.sum(axis=1, keepdims=True) - ridge * theta
        hess = ((games * s * (1.0 - s)) @ outer).reshape(r, n_models, n_models) + constraint
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        step = np.clip(step, -5.0, 5.0)
        theta = theta + step
        if np.max(np.abs(step), initial=0.0) < tol:
            break
    return theta


def to_elo(theta: np.ndarray, anchor: int | None = None) -> np.ndarray:
    """Log-strengths (..., M) on the Elo scale: 400 * log10(e) * theta + 1000, shifted so the ``anchor`` model (the
    baseline) is exactly 1000, or, with no anchor, the mean over models is 1000."""
    ref = theta[..., anchor : anchor + 1] if anchor is not None else theta.mean(axis=-1, keepdims=True)
    return ELO_ANCHOR + ELO_SCALE * (theta - ref)


# ------------------------------------------------------------------------------------------ length-controlled


def lc_win_rate(model: np.ndarray, y: np.ndarray, keep: np.ndarray, len_self: np.ndarray, len_other: np.ndarray,
                n_models: int, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Length-controlled win rate per model (AlpacaEval-2 style, written from its description).

    For each model separately, a logistic regression of its per-pair outcome ``y`` (soft labels in [0, 1]; ties are
    0.5) on an intercept and a squashed, normalised length difference::

        P(model wins) = sigmoid(b0 + b1 * z),   z = tanh((len_self - len_other) / sd),

    with ``sd`` the standard deviation of that model's length differences (z = 0 when they are all equal). The
    length-controlled win rate is the prediction at zero length difference, sigmoid(b0): what the judge would say
    if the two answers were as long as each other. With equal lengths everywhere, z = 0, the fit gives
    b0 = logit(mean y) and the LC win rate equals the raw win rate exactly. (AlpacaEval 2 also fits an instruction
    difficulty term and regularises; this has neither.)

    Shapes: ``model`` (n,) int rated model; ``y``, ``keep``, ``len_self``, ``len_other`` (n,). Returns ``rate`` and
    ``se`` (M,), the SE by the delta method from the fit's inverse Fisher information; NaN where a model has no
    kept pair or lengths are unknown. Fitted for all models at once by Newton's method on the 2 x 2 systems.
    """
    model = np.asarray(model, dtype=np.int64)
    ok = np.asarray(keep, dtype=bool) & ~np.isnan(len_self) & ~np.isnan(len_other)
    model, y = model[ok], np.asarray(y, dtype=np.float64)[ok]
    delta = (np.asarray(len_self, dtype=np.float64) - np.asarray(len_other, dtype=np.float64))[ok]
    count = lambda w: np.bincount(model, weights=w, minlength=n_models)  # noqa: E731
    n = count(np.ones_like(y))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_d = count(delta) / n
        sd = np.sqrt(np.maximum(count(delta * delta) / n - mean_d**2, 0.0))
        scale = np.where(sd[model] > 1e-12 * np.maximum(1.0, np.abs(mean_d[model])), sd[model], np.inf)
    z = np.tanh(delta / scale)
    # Start at the raw win rate's logit: the exact answer when z is all zero, and a good start otherwise.
    raw = np.clip(count(y) / np.maximum(n, 1), 1e-6, 1 - 1e-6)
    beta = np.stack([np.log(raw / (1 - raw)), np.zeros(n_models)], axis=1)  # (M, 2)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(beta[model, 0] + beta[model, 1] * z)))
        w = p * (1.0 - p)
        g = np.stack([count(y - p), count((y - p) * z)], axis=1)
        h = np.stack([count(w), count(w * z), count(w * z), count(w * z * z)], axis=1).reshape(-1, 2, 2)
        h += 1e-9 * np.eye(2)  # a model whose z is constant has a singular system: the slope stays 0
        step = np.clip(np.linalg.solve(h, g[..., None])[..., 0], -5.0, 5.0)
        beta += step
        if np.max(np.abs(step), initial=0.0) < 1e-10:
            break
    p = 1.0 / (1.0 + np.exp(-(beta[model, 0] + beta[model, 1] * z)))
    w = p * (1.0 - p)
    h = np.stack([count(w), count(w * z), count(w * z), count(w * z * z)], axis=1).reshape(-1, 2, 2)
    h += 1e-9 * np.eye(2)
    var_b0 = np.linalg.inv(h)[:, 0, 0]
    rate = 1.0 / (1.0 + np.exp(-beta[:, 0]))
    se = rate * (1.0 - rate) * np.sqrt(np.maximum(var_b0, 0.0))
    missing = n == 0
    return np.where(missing, np.nan, rate), np.where(missing | (n < 2), np.nan, se)


# ----------------------------------------------------------------------------------------------- the whole board


@dataclass(frozen=True)
class BoardStats(WinRates):
    """Per model (M,), fractions in [0, 1] (renderers show percent):

    ``wins``/``ties``/``losses`` pairs by combined verdict against the baseline (or against every opponent when
    there is none); ``n`` pairs counted in the win rate; ``win_rate``, ``se``, bootstrap ``ci_low``/``ci_high``;
    ``lc``/``lc_se`` the length-controlled win rate; ``bt``, ``bt_low``, ``bt_high`` Bradley-Terry ratings on the Elo
    scale over all pairs (the baseline anchored at 1000, else the mean over compared models); ``compared`` whether the
    model appears in any counted pair (NaN ratings otherwise); ``bt_perfect`` whether the model won every
    Bradley-Terry game it played or lost every one (its maximum-likelihood rating is then infinite: the finite number
    shown is set by ``bt_fit``'s weak prior, not by the data)."""

    ci_low: np.ndarray
    ci_high: np.ndarray
    lc: np.ndarray
    lc_se: np.ndarray
    bt: np.ndarray
    bt_low: np.ndarray
    bt_high: np.ndarray
    compared: np.ndarray
    bt_perfect: np.ndarray


def board_stats(a: np.ndarray, b: np.ndarray, prompt: np.ndarray, verdict: np.ndarray, p_a: np.ndarray,
                len_a: np.ndarray, len_b: np.ndarray, n_models: int, n_prompts: int, baseline: int | None = None,
                ties: str = "tie", n_resamples: int = 1000, seed: int = 0, level: float = 0.95, *,
                score: np.ndarray | None = None, with_lc: bool = True,
                bt_games: tuple[np.ndarray, np.ndarray] | None = None) -> BoardStats:
    """Every leaderboard statistic from combined pairs (n,): models ``a``/``b`` (int), ``prompt`` (int, the
    resampling unit), ``verdict`` (+1/0/-1 from A's side), ``p_a`` (mean P(A) or NaN), lengths ``len_a``/``len_b``,
    and ``score`` (n,) the order rule's combined outcome where it is not the verdict's (``pair_outcomes``).
    ``with_lc=False`` leaves ``lc``/``lc_se`` NaN, for a caller that controls length by another method.
    ``bt_games``: (A's wins, games) per pair for Bradley-Terry in place of one game per pair with outcome ``y``
    (``arena_hard_games``); the tie policy then does not apply to BT.

    Win rates, W/T/L and LC rate each model against ``baseline`` (pairs between two other models count only in
    Bradley-Terry), or, with no baseline, against all its opponents pooled (each pair then counts for both sides).
    All bootstrap resamples share one draw of prompts (``resample_counts``), so a resample's win rates and ratings
    come from the same data; resampled sums are matrix products of the count matrix with per-prompt sums.
    """
    a, b, prompt = (np.asarray(x, dtype=np.int64) for x in (a, b, prompt))
    verdict = np.asarray(verdict, dtype=np.int64)
    y, keep = pair_outcomes(verdict, p_a, ties, score)
    distinct = a != b
    if baseline is not None:
        side_a, side_b = distinct & (b == baseline), distinct & (a == baseline)
    else:
        side_a = side_b = distinct
    cat = lambda xa, xb: np.concatenate([xa[side_a], xb[side_b]])  # noqa: E731
    model, ey, ev, ekeep = cat(a, b), cat(y, 1.0 - y), cat(verdict, -verdict), cat(keep, keep)
    eprompt = cat(prompt, prompt)
    wr = win_rates(model, ey, ev, ekeep, n_models)
    if with_lc:
        lc, lc_se = lc_win_rate(model, ey, ekeep, cat(len_a, len_b), cat(len_b, len_a), n_models)
    else:
        lc = lc_se = np.full(n_models, np.nan)

    if bt_games is None:
        use, bt_y, bt_g = distinct & keep, y, np.ones_like(y)
    else:
        bt_g = np.asarray(bt_games[1], dtype=np.float64)
        use = distinct & (bt_g > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            bt_y = np.asarray(bt_games[0], dtype=np.float64) / bt_g
    pairs, key, y_low = model_pairs(a[use], b[use], bt_y[use])
    n_keys = pairs.shape[0]
    s_win = group_sums(prompt[use], key, y_low * bt_g[use], n_prompts, n_keys)
    s_games = group_sums(prompt[use], key, bt_g[use], n_prompts, n_keys)
    incidence = np.zeros((n_keys, n_models))
    incidence[np.arange(n_keys), pairs[:, 0]] = 1.0
    incidence[np.arange(n_keys), pairs[:, 1]] = 1.0
    games = s_games.sum(axis=1)
    compared = games @ incidence > 0
    anchor = baseline if baseline is not None and compared[baseline] else None
    theta = bt_fit(s_win.sum(axis=1)[None], games[None], pairs, n_models)[0] if n_keys else np.zeros(n_models)
    bt = _elo_over(theta[None], compared[None], anchor)[0]
    points = np.bincount(pairs[:, 0], weights=s_win.sum(axis=1), minlength=n_models) + np.bincount(
        pairs[:, 1], weights=games - s_win.sum(axis=1), minlength=n_models)
    played = games @ incidence
    perfect = compared & ((points <= 1e-9 * played) | (points >= played * (1.0 - 1e-9)))

    s_y = group_sums(eprompt, model, ey * ekeep, n_prompts, n_models)
    s_n = group_sums(eprompt, model, ekeep.astype(np.float64), n_prompts, n_models)
    sums = ResampledSums(np.vstack([s_y, s_n, s_win, s_games]))
    wr_samples, bt_samples = [], []
    for counts in resample_counts(n_prompts, n_resamples, seed):
        r = sums(counts)
        r_y, r_n, r_wins, r_games = np.split(r, np.cumsum([n_models, n_models, n_keys]), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            wr_samples.append(r_y / r_n)
        if n_keys:
            present = r_games @ incidence > 0
            bt_samples.append(_elo_over(bt_fit(r_wins, r_games, pairs, n_models), present, anchor))
    nan = np.full(n_models, np.nan)
    ci_low, ci_high = percentile_ci(np.concatenate(wr_samples), level) if wr_samples else (nan, nan)
    bt_low, bt_high = percentile_ci(np.concatenate(bt_samples), level) if bt_samples else (nan, nan)
    bt, bt_low, bt_high = (np.where(compared, x, np.nan) for x in (bt, bt_low, bt_high))
    return BoardStats(wr.wins, wr.ties, wr.losses, wr.n, wr.win_rate, wr.se, ci_low, ci_high, lc, lc_se,
                      bt, bt_low, bt_high, compared, perfect)


def _elo_over(theta: np.ndarray, present: np.ndarray, anchor: int | None) -> np.ndarray:
    """Elo ratings (R, M) anchored on the baseline, or on the mean over the models ``present`` (R, M) in each data
    set; absent models (whose strength only the ridge prior sets) become NaN."""
    if anchor is not None:  # a resample without the baseline has nothing to anchor on
        elo = np.where(present[:, anchor : anchor + 1], to_elo(theta, anchor), np.nan)
    else:
        mean = (theta * present).sum(axis=1, keepdims=True) / np.maximum(present.sum(axis=1, keepdims=True), 1)
        elo = ELO_ANCHOR + ELO_SCALE * (theta - mean)
    return np.where(present, elo, np.nan)

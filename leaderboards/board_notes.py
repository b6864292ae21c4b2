"""The notes under a leaderboard: how each of its numbers was computed (order rule, tie policy, CIs, BT, LC)."""

from __future__ import annotations

from typing import Any

from leaderboards import lc, ratings
from leaderboards.board_config import LeaderboardConfig
from leaderboards.board_rows import BT_WIDE_CI, PERFECT, WIDE


def score_notes(scores: ratings.Scores | None, cfg: LeaderboardConfig) -> list[str]:
    if scores is None:
        return []
    return [f"MT-Bench score = mean single-answer grade (1-10) by {scores.variant.name} over the board's turns, "
            f"{int(round(cfg.level * 100))}% CI = percentile bootstrap over prompts; {scores.left_out} unparsed or "
            "failed grades left out"]


ORDER_NOTES = {
    "agree": "verdict per pair (order rule agree): both orders agree -> that side wins; they disagree or either says "
             "tie -> tie; a single valid order decides alone; unparsed/failed orders are left out",
    "fastchat": "verdict per pair (order rule fastchat, FastChat's): both orders agree -> that side wins; they "
                "disagree or either says tie -> tie; a pair with an unparsed/failed order is dropped",
    "alpacaeval": "outcome per pair (order rule alpacaeval, AlpacaEval's): the mean of its valid orders' "
                  "preferences (1 / 0.5 / 0 each); its verdict the side that mean leans to; unparsed/failed orders "
                  "are left out",
}


def win_rate_formula(ties: str, rule: str) -> str:
    mean = "the mean of the per-pair outcomes" if rule == "alpacaeval" else None
    if ties == "tie":
        return f"win rate = {mean} (a tied pair 0.5)" if mean else "win rate = (wins + ties/2)/n"
    if ties == "exclude":
        return (f"win rate = {mean} over the pairs that are not tied; tied pairs are left out of n" if mean else
                "win rate = wins/(wins + losses); tied pairs are left out of n")
    return ("win rate = mean over pairs of P(model preferred), averaged over the pair's valid orders, each order "
            "counting the judge's probability where it gives one (AlpacaEval: preference - 1), else 1 / 0.5 / 0")


def board_notes(cfg: LeaderboardConfig, has_baseline: bool, ties: str, own_ties: bool, dropped: int, lc_how: str,
           rows: list[dict[str, Any]]) -> list[str]:
    pct = int(round(cfg.level * 100))
    order = ORDER_NOTES[cfg.order_rule] + (f" ({dropped} pairs)" if cfg.order_rule == "fastchat" else "")
    policy = f"ties: {ties}" + (" (the judge's own policy)" if own_ties else "")
    notes = [
        order,
        f"{policy}; {win_rate_formula(ties, cfg.order_rule)}; SE = sample SD of per-pair outcomes / sqrt(n); "
        f"{pct}% CI = percentile bootstrap over prompts ({cfg.n_resamples} resamples, seed {cfg.seed})",
        "BT = Bradley-Terry MLE over all pairs, Elo scale 400*log10 + 1000, "
        + ("the baseline fixed at 1000" if has_baseline else "the mean over models fixed at 1000"),
    ]
    if cfg.lc == "alpacaeval-v1":
        notes.append(
            "LC (alpacaeval-v1) = AlpacaEval's length_controlled_v1: logistic fit of the model's outcomes on "
            "tanh(length difference / its SD) + instruction difficulty + a model term, no intercept, L1 penalty "
            f"chosen by {lc.N_SPLITS}-fold CV; LC = mean over the model's instructions of the prediction at zero "
            f"length difference; no SE; length in characters; {lc_how}")
        reasons = sorted({r["lc_note"] for r in rows if r.get("lc_note")})
        if reasons:
            notes.append("LC withheld where: " + "; ".join(LC_REASONS[r] for r in reasons))
    else:
        notes.append("LC (tanh-length, not AlpacaEval's) = per-model logistic fit on tanh(normalised length "
                     "difference), no instruction term, no regularisation, predicted at equal length; "
                     "length in characters")
    flags = {f for r in rows for f in (r.get("bt_flag") or "").split("; ") if f}
    if PERFECT in flags:
        notes.append(f"BT {PERFECT}: the model won (or lost) every game it played, so its rating has no finite "
                     "maximum-likelihood value; the number shown is set by the fit's weak prior, not by the data")
    if WIDE in flags:
        notes.append(f"BT {WIDE}: the {pct}% CI spans more than {BT_WIDE_CI:.0f} points (10:1 odds each way): "
                     "too few games to place the model")
    return notes


LC_REASONS = {
    lc.NO_BASELINE: f"'{lc.NO_BASELINE}': AlpacaEval's LC is defined against one baseline (give --baseline)",
    lc.NO_DIFFICULTY: f"'{lc.NO_DIFFICULTY}': no instruction difficulty for its prompts (give "
                      f"--instruction-difficulty, or judge at least {lc.MIN_DIFFICULTY_MODELS} models against the "
                      "baseline)",
    lc.TOO_FEW: f"'{lc.TOO_FEW}': fewer than {lc.MIN_PAIRS} pairs with lengths and a difficulty",
    lc.ONE_SIDED_LENGTHS: f"'{lc.ONE_SIDED_LENGTHS}': at least {lc.ONE_SIDED:.0%} of its answers are longer (or "
                          "shorter) than the baseline's and no gamed baseline anchors the length weight",
    lc.FAR_FROM_RAW: f"'{lc.FAR_FROM_RAW}' (shown): the LC moved further from the raw rate than AlpacaEval's "
                     "check allows (the GLM may have failed)",
}



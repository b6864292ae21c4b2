"""The leaderboard as a renderable ``Table``: display columns for humans, every field for CSV/JSON."""

from __future__ import annotations

from leaderboards import selection
from leaderboards.board_config import Leaderboard
from leaderboards.board_rows import FIELDS
from leaderboards.query import METRIC_NAMES


def leaderboard_table(board: Leaderboard):
    """The leaderboard as a renderable ``Table``: display columns for humans, every field for CSV/JSON."""
    from leaderboards.render import num, sig, text, with_ci
    from leaderboards.table import Column, Table

    level = int(round(100 * board.meta.get("level", 0.95)))

    def wtl(r):
        if r["win_pct"] is None:
            return ""
        return f"{r['win_pct']:.1f}/{r['tie_pct']:.1f}/{r['loss_pct']:.1f}"

    def win_rate(r):
        return num(r["win_rate"]) + (f" ± {num(r['win_rate_se'])}" if r["win_rate_se"] is not None else "")

    def ci(r):
        lo, hi = r["win_rate_ci_low"], r["win_rate_ci_high"]
        return f"[{num(lo, 1)}, {num(hi, 1)}]" if lo is not None and hi is not None else ""

    def lc_cell(r):
        if r["lc_win_rate"] is None:
            return f"n/a: {r['lc_note']}" if r.get("lc_note") else ""
        return num(r["lc_win_rate"]) + (f" ({r['lc_note']})" if r.get("lc_note") else "")

    def bt_cell(r):
        cell = with_ci(num(r["bt"], 0), num(r["bt_ci_low"], 0), num(r["bt_ci_high"], 0))
        return cell + (f" ({r['bt_flag']})" if cell and r.get("bt_flag") else "")

    def metric(name):
        return lambda r: with_ci(sig(r[name]), sig(r[f"{name}_ci_low"]), sig(r[f"{name}_ci_high"]))

    def run(r):
        return f"{r['run']}:{r['step']}" if r["run"] is not None else ""

    columns = [
        Column("#", lambda r: text(r["rank"]), "rank"),
        Column("model", lambda r: text(r["label"]) + (" (baseline)" if r["baseline"] else ""), "label", "left"),
        Column("seeds", lambda r: text(r["seeds"]) if (r.get("seeds") or 1) > 1 else "", "seeds"),
        Column("n", lambda r: text(r["n"]), "n"),
        Column("W/T/L %", wtl, "win_pct"),
        Column("win rate", win_rate, "win_rate"),
        Column(f"{level}% CI", ci, "win_rate_ci_low"),
        Column("LC win rate", lc_cell, "lc_win_rate"),
        Column("BT", bt_cell, "bt"),
        Column("MT-Bench score", lambda r: with_ci(num(r["score"]), num(r["score_ci_low"]), num(r["score_ci_high"])),
               "score"),
        Column("length", lambda r: num(r["length"], 0), "length"),
        Column("tokens", lambda r: num(r["tokens"], 1), "tokens"),
        *[Column(name, metric(name), name) for name in METRIC_NAMES],
        Column("loss", lambda r: text(r["loss"]), "loss", "left"),
        Column("β", lambda r: sig(r["beta"]), "beta"),
        Column("run", run, "run", "left"),
        Column("base model", lambda r: text(r["base_model"]), "base_model", "left"),
        Column("code", lambda r: text(r["code_version"]), "code_version", "left"),
    ]
    meta = {k: v for k, v in board.meta.items() if k not in ("notes", "baseline", "level")}
    title = "Leaderboard"
    if board.meta.get("judge"):
        title += f": judge {board.meta['judge']}@{board.meta['judge_version']}"
        title += f" [{board.meta['template']}]" if board.meta.get("template") else ""
    if board.meta.get("baseline_label"):
        title += f" vs {board.meta['baseline_label']}"
    title += selection.title_suffix(board.meta)
    return Table(title, list(FIELDS), board.rows, columns, meta, list(board.meta.get("notes", [])))


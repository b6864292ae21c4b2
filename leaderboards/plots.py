"""Leaderboard plots (matplotlib, Agg backend, PNG). Each returns the path it wrote, or None after saying why not.

Every point carries its interval on both axes, one line per method (loss) across its β grid; the numbers come from
``leaderboards.plot_data`` (what the tests check), so a reader sees at a glance which differences are real.

- ``plot_ppl_vs_agility``: perplexity (log scale) against agility with their CIs, coloured by loss (seed 000 Fig. 4).
- ``plot_reward_vs_kl``: reward (the board's own judge's mean score: the gold reward on an oracle board) against KL
  to the reference (seed 004 Fig. 2), both with CIs.
- ``plot_kl_vs_win_rate``: win rate against KL with CIs, and the Pareto frontier over all points (seed 003 Fig. 4b).
- ``plot_training_curves``: ``train_metrics``, one panel per metric; seed replicates (``<run>-seed<k>``) as one
  curve, the mean, with a band from the lowest to the highest seed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalharness import evalkey
from leaderboards import plot_data

Log = Callable[[str], None]

TRAINING_PANELS = ("loss", "margin", "accuracy", "rewards/chosen", "rewards/rejected", "grad_norm")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def _figure(width: float = 6.4, height: float = 4.4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(figsize=(width, height))


def _save(plt, fig, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _group(row: dict[str, Any]) -> str:
    """Method (loss) of a checkpoint: the colour of a point."""
    return str(row.get("loss") or row.get("run") or row.get("label") or row.get("model"))


def _run(row: dict[str, Any]) -> str:
    """The run a checkpoint belongs to: one line per run, its checkpoints in step order."""
    if row.get("run"):
        return f"{row['run']} ({row['loss']})" if row.get("loss") else str(row["run"])
    return str(row.get("label") or row.get("model"))


def _errorbars(ax, by_method: dict[str, list[dict[str, Any]]], line: bool = True) -> None:
    for name, pts in by_method.items():
        xerr = [[max(0.0, p["x"] - p["x_lo"]) for p in pts], [max(0.0, p["x_hi"] - p["x"]) for p in pts]]
        yerr = [[max(0.0, p["y"] - p["y_lo"]) for p in pts], [max(0.0, p["y_hi"] - p["y"]) for p in pts]]
        ax.errorbar([p["x"] for p in pts], [p["y"] for p in pts], xerr=xerr, yerr=yerr, marker="o", capsize=3,
                    ls="-" if line else "none", label=name)
        for p in pts:
            if p["beta"] is not None:
                ax.annotate(f"β={p['beta']:g}", (p["x"], p["y"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")


def plot_ppl_vs_agility(rows: list[dict[str, Any]], path: Path | str, log: Log = _stderr) -> Path | None:
    """Rows with both ``perplexity`` and ``agility`` (leaderboard rows); grouped by loss (method)."""
    by_method = plot_data.series(rows, "agility", "perplexity")
    if not by_method:
        log("skipped ppl-vs-agility: no checkpoint has both perplexity and agility (run `evalharness eval`)")
        return None
    plt, (fig, ax) = _figure()
    _errorbars(ax, by_method, line=False)
    ax.set_yscale("log")
    ax.set_xlabel("agility  mean(f+ − f−)")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title("Perplexity vs agility (95% CIs)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_reward_vs_kl(points: list[dict[str, Any]], path: Path | str, reward_name: str = "reward",
                      log: Log = _stderr) -> Path | None:
    """``points``: rows with ``kl`` and ``reward`` (and their CIs: ``reward_points``); one line per method."""
    by_method = plot_data.series(points, "kl", "reward")
    if not by_method:
        log(f"skipped reward-vs-kl: no checkpoint has both a KL metric and {reward_name} scores")
        return None
    plt, (fig, ax) = _figure()
    _errorbars(ax, by_method)
    ax.set_xlabel("KL(π ‖ π_ref)")
    ax.set_ylabel(reward_name)
    ax.set_title(f"{reward_name} vs KL (95% CIs)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def pareto_front(xs: list[float], ys: list[float]) -> list[int]:
    """Indices of the points no other point beats with lower-or-equal x and higher-or-equal y, by increasing x.

    >>> pareto_front([1.0, 2.0, 3.0, 2.5], [10.0, 30.0, 20.0, 40.0])
    [0, 1, 3]
    """
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    front, best = [], float("-inf")
    for i in order:
        if ys[i] > best:
            front.append(i)
            best = ys[i]
    return front


def plot_kl_vs_win_rate(rows: list[dict[str, Any]], path: Path | str, log: Log = _stderr) -> Path | None:
    """Leaderboard rows with ``kl`` and ``win_rate`` (and their CIs); one line per method, the frontier dashed."""
    by_method = plot_data.series(rows, "kl", "win_rate")
    if not by_method:
        log("skipped kl-vs-win-rate: no checkpoint has both a KL metric and a win rate")
        return None
    plt, (fig, ax) = _figure()
    _errorbars(ax, by_method)
    points = [p for pts in by_method.values() for p in pts]
    front = pareto_front([p["x"] for p in points], [p["y"] for p in points])
    ax.plot([points[i]["x"] for i in front], [points[i]["y"] for i in front], "k--", lw=1, label="frontier")
    ax.set_xlabel("KL(π ‖ π_ref)")
    ax.set_ylabel("win rate (%)")
    ax.set_title("KL vs win rate (95% CIs)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_training_curves(metrics: list[tuple[str, int, str, float]], path: Path | str,
                         log: Log = _stderr) -> Path | None:
    """``metrics``: (run name, step, metric name, value) rows from ``train_metrics``; the panels are the loop's usual
    metrics that are present (``TRAINING_PANELS``), else the first six names; seed replicates as one banded curve."""
    if not metrics:
        log("skipped training curves: no train_metrics in the store")
        return None
    bands = plot_data.curve_bands(metrics)
    panels = [n for n in TRAINING_PANELS if n in bands] or sorted(bands)[:6]
    import math

    cols = min(3, len(panels))
    rows_n = math.ceil(len(panels) / cols)
    plt, (fig, axes) = _figure(4.2 * cols, 3.2 * rows_n)
    fig.clf()
    for k, name in enumerate(panels):
        ax = fig.add_subplot(rows_n, cols, k + 1)
        for curve, pts in bands[name].items():
            seeds = max(p[4] for p in pts)
            (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2,
                              label=curve + (f" ({seeds} seeds)" if seeds > 1 else ""))
            if seeds > 1:
                ax.fill_between([p[0] for p in pts], [p[2] for p in pts], [p[3] for p in pts], alpha=0.2,
                                color=line.get_color(), lw=0)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    return _save(plt, fig, path)


# ------------------------------------------------------------------------------------------------- from a store


def reward_points(con, rows: list[dict[str, Any]], judge: str | dict[str, Any] | None = None,
                  ) -> tuple[list[dict[str, Any]], str]:
    """Per row of ``rows`` (a checkpoint or its seed replicates): its KL (from the row) and the mean pointwise score
    (``scores``) that the board's own judge gave its samples, with its interval (``plot_data.reward_intervals``).
    ``judge`` is the board's meta (judge, version, prompt set, turns, sampling setting: only samples of that
    evaluation count) or a bare judge id; no other judge's scores are used."""
    meta = judge if isinstance(judge, dict) else {"judge": judge}
    name = meta.get("judge")
    if not name:
        return [], "reward"
    # a score is stored once per (prompt, text), under the sample scored first: at turn 1 (one conversation) every
    # sample of that text, of any checkpoint, has it
    sql = ("SELECT g.checkpoint, CAST(g.sampling AS VARCHAR), g.prompt_id, count(*), sum(s.score) FROM scores s "
           "JOIN generations g0 ON g0.generation_id = s.generation_id JOIN generations g ON g.prompt_id = g0.prompt_id "
           "AND g.turn = g0.turn AND g.text = g0.text AND (g.turn = 1 OR g.generation_id = g0.generation_id) "
           "LEFT JOIN prompts p ON p.prompt_id = g.prompt_id "
           "WHERE s.judge = ?")
    params: list[Any] = [name]
    if meta.get("judge_version") is not None:
        sql, params = sql + " AND s.judge_version = ?", params + [meta["judge_version"]]
    if meta.get("prompt_set"):
        sql, params = sql + " AND coalesce(p.prompt_set, '?') = ?", params + [meta["prompt_set"]]
    if meta.get("turns"):
        sql, params = sql + " AND list_contains(?, g.turn)", params + [[int(t) for t in meta["turns"].split(",")]]
    totals: dict[str, dict[str, list[float]]] = {}
    for key, sampling, prompt, n, total in con.execute(sql + " GROUP BY 1, 2, 3", params).fetchall():
        if meta.get("sampling_id") and evalkey.sampling_id(evalkey.canonical(sampling)) != meta["sampling_id"]:
            continue
        acc = totals.setdefault(key, {}).setdefault(prompt, [0.0, 0.0])
        acc[0], acc[1] = acc[0] + n, acc[1] + total
    scores = {k: {p: t / n for p, (n, t) in by_prompt.items() if n} for k, by_prompt in totals.items()}
    points = plot_data.reward_intervals(scores, rows)
    return points, ("oracle reward" if name == "oracle" else f"mean score ({name})")


def write_plots(store: str | Path, rows: list[dict[str, Any]], out_dir: str | Path,
                judge: str | dict[str, Any] | None = None, log: Log = _stderr) -> list[Path]:
    """Every plot whose data the store holds, into ``out_dir``; the others are skipped with a message. ``judge``:
    the board's meta (or its judge id), whose judge and evaluation the reward axis comes from."""
    from leaderboards.query import read_store

    out = Path(out_dir)
    with read_store(store) as con:
        points, reward_name = reward_points(con, rows, judge)
        curves = con.execute("SELECT r.name, t.step, t.name, t.value FROM train_metrics t JOIN runs r USING (run_id) "
                             "ORDER BY 1, 2, 3").fetchall()
    written = [
        plot_ppl_vs_agility(rows, out / "ppl_vs_agility.png", log),
        plot_reward_vs_kl(points, out / "reward_vs_kl.png", reward_name, log),
        plot_kl_vs_win_rate(rows, out / "kl_vs_win_rate.png", log),
        plot_training_curves(curves, out / "training_curves.png", log),
    ]
    return [p for p in written if p is not None]

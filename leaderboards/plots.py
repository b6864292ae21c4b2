"""Leaderboard plots (matplotlib, Agg backend, PNG). Each returns the path it wrote, or None after saying why not.

- ``plot_ppl_vs_agility``: perplexity (log scale) against agility, one marker per checkpoint, coloured by loss
  (seed 000 Fig. 4).
- ``plot_reward_vs_kl``: reward (the board's own judge's mean score: the gold reward on an oracle board) against KL
  to the reference over checkpoints, one line per run in step order (seed 004 Fig. 2); both from the board's
  evaluation.
- ``plot_kl_vs_win_rate``: win rate with its CI against KL, one line per run, and the Pareto frontier over all
  checkpoints (seed 003 Fig. 4b).
- ``plot_training_curves``: ``train_metrics`` per run, one panel per metric.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalharness import evalkey

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


def plot_ppl_vs_agility(rows: list[dict[str, Any]], path: Path | str, log: Log = _stderr) -> Path | None:
    """Rows with both ``perplexity`` and ``agility`` (leaderboard rows); grouped by loss (method)."""
    points = [r for r in rows if r.get("perplexity") is not None and r.get("agility") is not None]
    if not points:
        log("skipped ppl-vs-agility: no checkpoint has both perplexity and agility (run `evalharness eval`)")
        return None
    plt, (fig, ax) = _figure()
    for group in sorted({_group(r) for r in points}):
        sel = [r for r in points if _group(r) == group]
        ax.scatter([r["agility"] for r in sel], [r["perplexity"] for r in sel], label=group, s=36)
    ax.set_yscale("log")
    ax.set_xlabel("agility  mean(f+ − f−)")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title("Perplexity vs agility")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_reward_vs_kl(points: list[dict[str, Any]], path: Path | str, reward_name: str = "reward",
                      log: Log = _stderr) -> Path | None:
    """``points``: dicts with ``kl``, ``reward`` and a run name (``run``) and ``step`` to draw each run in order."""
    points = [p for p in points if p.get("kl") is not None and p.get("reward") is not None]
    if not points:
        log(f"skipped reward-vs-kl: no checkpoint has both a KL metric and {reward_name} scores")
        return None
    plt, (fig, ax) = _figure()
    for run in sorted({_run(p) for p in points}):
        sel = sorted((p for p in points if _run(p) == run), key=lambda p: (p.get("step") or 0, p["kl"]))
        ax.plot([p["kl"] for p in sel], [p["reward"] for p in sel], marker="o", label=run)
    ax.set_xlabel("KL(π ‖ π_ref)")
    ax.set_ylabel(reward_name)
    ax.set_title(f"{reward_name} vs KL")
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
    """Leaderboard rows with ``kl`` and ``win_rate`` (and its CI); one line per run, the frontier dashed."""
    points = [r for r in rows if r.get("kl") is not None and r.get("win_rate") is not None]
    if not points:
        log("skipped kl-vs-win-rate: no checkpoint has both a KL metric and a win rate")
        return None
    plt, (fig, ax) = _figure()
    for group in sorted({_run(r) for r in points}):
        sel = sorted((r for r in points if _run(r) == group), key=lambda r: (r.get("step") or 0, r["kl"]))
        err = None
        if all(r.get("win_rate_ci_low") is not None for r in sel):
            err = [[r["win_rate"] - r["win_rate_ci_low"] for r in sel],
                   [r["win_rate_ci_high"] - r["win_rate"] for r in sel]]
        ax.errorbar([r["kl"] for r in sel], [r["win_rate"] for r in sel], yerr=err, marker="o", capsize=3,
                    label=group)
    front = pareto_front([r["kl"] for r in points], [r["win_rate"] for r in points])
    ax.plot([points[i]["kl"] for i in front], [points[i]["win_rate"] for i in front], "k--", lw=1, label="frontier")
    ax.set_xlabel("KL(π ‖ π_ref)")
    ax.set_ylabel("win rate (%)")
    ax.set_title("KL vs win rate")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_training_curves(metrics: list[tuple[str, int, str, float]], path: Path | str,
                         log: Log = _stderr) -> Path | None:
    """``metrics``: (run name, step, metric name, value) rows from ``train_metrics``; the panels are the loop's usual
    metrics that are present (``TRAINING_PANELS``), else the first six names."""
    if not metrics:
        log("skipped training curves: no train_metrics in the store")
        return None
    names = sorted({m[2] for m in metrics})
    panels = [n for n in TRAINING_PANELS if n in names] or names[:6]
    import math

    cols = min(3, len(panels))
    rows_n = math.ceil(len(panels) / cols)
    plt, (fig, axes) = _figure(4.2 * cols, 3.2 * rows_n)
    fig.clf()
    runs = sorted({m[0] for m in metrics})
    for k, name in enumerate(panels):
        ax = fig.add_subplot(rows_n, cols, k + 1)
        for run in runs:
            pts = sorted((s, v) for r, s, n, v in metrics if r == run and n == name)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=run, lw=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    return _save(plt, fig, path)


# ------------------------------------------------------------------------------------------------- from a store


def reward_points(con, rows: list[dict[str, Any]], judge: str | dict[str, Any] | None = None,
                  ) -> tuple[list[dict[str, Any]], str]:
    """Per checkpoint of ``rows``: its KL (from the row) and the mean pointwise score (``scores``) that the board's
    own judge gave its samples. ``judge`` is the board's meta (judge, version, prompt set, turns, sampling setting:
    only samples of that evaluation count) or a bare judge id; no other judge's scores are used."""
    meta = judge if isinstance(judge, dict) else {"judge": judge}
    name = meta.get("judge")
    if not name:
        return [], "reward"
    sql = ("SELECT g.checkpoint, CAST(g.sampling AS VARCHAR), count(*), sum(s.score) FROM scores s "
           "JOIN generations g USING (generation_id) LEFT JOIN prompts p ON p.prompt_id = g.prompt_id "
           "WHERE s.judge = ?")
    params: list[Any] = [name]
    if meta.get("judge_version") is not None:
        sql, params = sql + " AND s.judge_version = ?", params + [meta["judge_version"]]
    if meta.get("prompt_set"):
        sql, params = sql + " AND coalesce(p.prompt_set, '?') = ?", params + [meta["prompt_set"]]
    if meta.get("turns"):
        sql, params = sql + " AND list_contains(?, g.turn)", params + [[int(t) for t in meta["turns"].split(",")]]
    totals: dict[str, list[float]] = {}
    for key, sampling, n, total in con.execute(sql + " GROUP BY 1, 2", params).fetchall():
        if meta.get("sampling_id") and evalkey.sampling_id(evalkey.canonical(sampling)) != meta["sampling_id"]:
            continue
        acc = totals.setdefault(key, [0.0, 0.0])
        acc[0], acc[1] = acc[0] + n, acc[1] + total
    means = {k: t / n for k, (n, t) in totals.items() if n}
    points = [{**r, "reward": means.get(r["model"])} for r in rows]
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

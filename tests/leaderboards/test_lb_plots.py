"""Plots are written as PNGs when their data is in the store, and skipped with a message when it is not."""

from lbstore import add_metric, add_run, make_store

from evalharness.store import now
from leaderboards.board import LeaderboardConfig, build_leaderboard
from leaderboards.plots import pareto_front, plot_kl_vs_win_rate, write_plots

PNG = b"\x89PNG\r\n\x1a\n"


def _store(tmp_path):
    spec = [(f"p{i}", m, "base", "first" if (i + k) % 3 else "second", "second" if (i + k) % 3 else "first")
            for k, m in enumerate(["c1", "c2", "c3"]) for i in range(6)]
    store = make_store(tmp_path / "s.duckdb", spec, judge="oracle")
    for step, ck in enumerate(["c1", "c2", "c3"], start=1):
        add_run(store, ck, "run-dpo", "dpo", 100 * step, "dpo", {"beta": 0.1})
        add_metric(store, ck, "kl", 0.5 * step, ci=(0.4 * step, 0.6 * step))
        add_metric(store, ck, "perplexity", 10.0 + step)
        add_metric(store, ck, "agility", 0.01 * step)
    store.add_metrics("run-dpo", [(s, name, 1.0 / s) for s in range(1, 20) for name in ("loss", "margin")])
    with store.transaction() as con:  # gold rewards of every generation: the oracle's pointwise scores
        rows = con.execute("SELECT generation_id, prompt_id, checkpoint FROM generations").fetchall()
        for i, (gid, pid, ck) in enumerate(rows):
            con.execute("INSERT INTO scores VALUES (?, 'oracle', '1', ?, ?, ?, ?)",
                        [f"s{i}", gid, pid, {"c1": 0.1, "c2": 0.3, "c3": 0.4}.get(ck, 0.0), now()])
    return store


def test_every_plot_is_written_when_its_data_is_there(tmp_path):
    store = _store(tmp_path)
    board = build_leaderboard(store.path, LeaderboardConfig(n_resamples=20))
    messages = []
    paths = write_plots(store.path, board.rows, tmp_path / "plots", "oracle", log=messages.append)
    assert sorted(p.name for p in paths) == ["kl_vs_win_rate.png", "ppl_vs_agility.png", "reward_vs_kl.png",
                                             "training_curves.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 10_000
    assert messages == []


def test_plots_without_data_are_skipped_with_a_message(tmp_path):
    store = make_store(tmp_path / "s.duckdb", [("p1", "m1", "base", "first", "second")])
    board = build_leaderboard(store.path, LeaderboardConfig(n_resamples=10))
    messages = []
    assert write_plots(store.path, board.rows, tmp_path / "plots", log=messages.append) == []
    assert len(messages) == 4 and all(m.startswith("skipped ") for m in messages)
    assert any("perplexity and agility" in m for m in messages)
    assert not (tmp_path / "plots").exists() or not any((tmp_path / "plots").iterdir())
    assert plot_kl_vs_win_rate([], tmp_path / "x.png", log=messages.append) is None


def test_pareto_front_by_hand():
    # (KL, win rate): (1, 10) (2, 30) (3, 20) (2.5, 40): (3, 20) is beaten by (2, 30) -> front 0, 1, 3.
    assert pareto_front([1.0, 2.0, 3.0, 2.5], [10.0, 30.0, 20.0, 40.0]) == [0, 1, 3]

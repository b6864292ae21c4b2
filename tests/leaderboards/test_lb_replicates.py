"""Seed replicates on the board: two configurations x three seeds x four prompts against one baseline, written through
the Store API, each configuration one row whose win rate is the mean of its per-seed win rates (worked by hand)."""

import json

import numpy as np
import pytest
from lbstore import add_metric, make_store
from typer.testing import CliRunner

from evalharness import stats
from evalharness.cli import app
from leaderboards.board import LeaderboardConfig, build_leaderboard, leaderboard_table
from leaderboards.render import render

WIN, LOSS, TIE = ("first", "second"), ("second", "first"), ("first", "first")  # TIE: the orders disagree
PROMPTS = ["p0", "p1", "p2", "p3"]
# per seed, the outcome of each prompt against base (1 win, 0.5 tie, 0 loss)
OUTCOMES = {
    "d": [[1, 1, 1, 0], [1, 1, 0.5, 0], [1, 1, 1, 1]],  # dpo: 0.75, 0.625, 1.0 -> (0.75 + 0.625 + 1) / 3 = 0.791666…
    "i": [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]],  # ipo: 0.25, 0.5, 0 -> 0.25
}
LOSSES = {"d": "dpo", "i": "ipo"}


def _store(path):
    spec = {1: WIN, 0.5: TIE, 0: LOSS}
    pairs = [(p, f"{c}{s}", "base", *spec[o]) for c, seeds in OUTCOMES.items() for s, row in enumerate(seeds)
             for p, o in zip(PROMPTS, row)]
    # ipo's labels as `run` gives a run's checkpoints (RUN:STEP), dpo's as an experiment's entry names
    labels = {f"{c}{s}": f"{LOSSES[c]}-seed{s}" + (":10" if c == "i" else "") for c in OUTCOMES for s in range(3)}
    store = make_store(path, pairs, labels=labels)
    for s in range(3):  # each replicate starts from the SFT run of its own seed: other run ids, one configuration
        store.upsert_run(dict(run_id=f"sft-r{s}", name=f"sft-seed{s}", loss="sft", params={}, base_model="tiny-llama",
                              init_from=None, data={}, code_version="0.1.0+gtest", status="finished",
                              out_dir=f"runs/sft-seed{s}", final_step=10,
                              config={"loss": "sft", "seed": s, "out": f"runs/sft-seed{s}"}))
    for c, loss in LOSSES.items():
        for s in range(3):
            name = f"{loss}-seed{s}"
            store.upsert_run(dict(run_id=f"run-{c}{s}", name=name, loss=loss, params={}, base_model="tiny-llama",
                                  init_from=f"sft-r{s}", data={}, code_version="0.1.0+gtest", status="finished",
                                  out_dir=f"runs/{name}", final_step=10,
                                  config={"loss": loss, "lr": 1e-6, "seed": s, "name": name, "out": f"runs/{name}",
                                          "init_from": f"sft-r{s}"}))
            store.add_checkpoint(f"{c}{s}", f"run-{c}{s}", 10, f"runs/{name}/step-10", True)
            add_metric(store, f"{c}{s}", "kl", (0.1, 0.2, 0.3)[s] if c == "d" else 0.5)
    return path


def _board(path, **kw):
    return build_leaderboard(path, LeaderboardConfig(baseline="base", n_resamples=300, **kw))


def test_replicates_are_one_row_whose_win_rate_is_the_mean_of_the_seeds(tmp_path):
    board = _board(_store(tmp_path / "s.duckdb"))
    rows = {r["label"]: r for r in board.rows}
    assert set(rows) == {"dpo", "ipo:10", "base"}
    dpo, ipo = rows["dpo"], rows["ipo:10"]
    assert (dpo["run"], ipo["run"], ipo["step"]) == ("dpo", "ipo", 10)
    assert dpo["seeds"] == 3 and ipo["seeds"] == 3 and rows["base"]["seeds"] == 1
    assert dpo["win_rate"] == pytest.approx(100 * (0.75 + 0.625 + 1.0) / 3)  # 79.1666…
    assert ipo["win_rate"] == pytest.approx(100 * (0.25 + 0.5 + 0.0) / 3)  # 25
    # counts over the seeds: dpo wins 3 + 2 + 4 = 9, ties 0 + 1 + 0 = 1, loses 1 + 1 + 0 = 2 of 12 pairs
    assert (dpo["n"], dpo["wins"], dpo["ties"], dpo["losses"]) == (12, 9, 1, 2)
    assert dpo["win_pct"] == pytest.approx(75.0) and dpo["replicates"] == "d0,d1,d2"
    # the CI is the two-level bootstrap's of the seeds x prompts matrix above (seed 0 of the board: dpo is group 0)
    mean, lo, hi = stats.two_level_mean(np.array(OUTCOMES["d"]), 300, 0, 0.95)
    assert (dpo["win_rate_ci_low"], dpo["win_rate_ci_high"]) == (pytest.approx(100 * lo), pytest.approx(100 * hi))
    assert dpo["win_rate_ci_low"] < dpo["win_rate"] < dpo["win_rate_ci_high"]
    assert dpo["kl"] == pytest.approx(0.2) and dpo["kl_ci_low"] <= 0.2 <= dpo["kl_ci_high"] and ipo["kl"] == 0.5
    assert dpo["bt"] is None and dpo["lc_win_rate"] is None  # fitted per checkpoint: on the per-seed rows
    assert [r["label"] for r in board.rows] == ["dpo", "ipo:10", "base"] and dpo["rank"] == 1
    assert any("two-level bootstrap resampling seeds and prompts" in n for n in board.meta["notes"])


def test_per_seed_shows_each_replicate_as_before(tmp_path):
    path = _store(tmp_path / "s.duckdb")
    rows = {r["label"]: r for r in _board(path, per_seed=True).rows}
    assert len(rows) == 7 and all(r["seeds"] == 1 for r in rows.values())
    for c, loss in LOSSES.items():
        for s, outcomes in enumerate(OUTCOMES[c]):
            assert rows[f"{loss}-seed{s}" + (":10" if c == "i" else "")]["win_rate"] == pytest.approx(100 * np.mean(outcomes))
    text = render(leaderboard_table(_board(path)), "table")
    assert "seeds" in text and "dpo-seed1" not in text


def test_one_replicate_is_the_board_of_before(tmp_path):
    # one seed of each configuration: nothing to combine, every row its own, seeds = 1
    pairs = [(p, m, "base", *WIN) for m in ("d0", "i0") for p in PROMPTS]
    path = tmp_path / "s.duckdb"
    make_store(path, pairs, labels={"d0": "dpo-seed0", "i0": "ipo-seed0"})
    combined, per_seed = _board(path), _board(path, per_seed=True)
    assert combined.rows == per_seed.rows and {r["seeds"] for r in combined.rows} == {1}
    assert "seeds" not in render(leaderboard_table(combined), "table").splitlines()[1]


def test_leaderboard_command_json_and_per_seed(tmp_path):
    path = _store(tmp_path / "s.duckdb")
    runner = CliRunner()
    out = runner.invoke(app, ["leaderboard", "--baseline", "base", "--format", "json", "--bootstrap", "200",
                              "--store", str(path)])
    assert out.exit_code == 0, out.output
    rows = {r["label"]: r for r in json.loads(out.output)["rows"]}
    assert rows["dpo"]["seeds"] == 3 and rows["dpo"]["win_rate_ci_low"] < rows["dpo"]["win_rate_ci_high"]
    out = runner.invoke(app, ["leaderboard", "--baseline", "base", "--format", "json", "--per-seed",
                              "--store", str(path)])
    assert out.exit_code == 0, out.output
    assert sorted(r["label"] for r in json.loads(out.output)["rows"])[:3] == ["base", "dpo-seed0", "dpo-seed1"]


def test_compare_takes_group_names_and_pairs_the_seeds(tmp_path):
    from evalharness.compare import compare

    c = compare(_store(tmp_path / "s.duckdb"), "dpo", "ipo", resamples=300)
    # the replicates started from three different SFT runs, one configuration: all three join each side
    assert c.a.members == {0: "d0", 1: "d1", 2: "d2"} and c.b.members == {0: "i0", 1: "i1", 2: "i2"}
    assert (c.a.name, c.b.name) == ("dpo", "ipo:10")
    win = next(r for r in c.rows if r.quantity == "win_rate")
    assert win.diff.paired_seeds and win.diff.seeds == (3, 3) and win.diff.prompts == 4
    assert win.diff.estimate == pytest.approx((0.75 + 0.625 + 1.0) / 3 - 0.25)
    out = CliRunner().invoke(app, ["compare", "dpo", "ipo", "--store", str(tmp_path / "s.duckdb"),
                                   "--bootstrap", "200"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("A = dpo (3 seeds), B = ipo:10 (3 seeds); against base")


def test_a_replicate_as_baseline_stays_its_own_row_and_its_other_seeds_combine(tmp_path):
    # dpo-seed0 as the baseline: ipo's three seeds and dpo's other two are judged against it
    pairs = [(p, m, "d0", *(WIN if m[0] == "i" else LOSS)) for m in ("d1", "d2", "i0", "i1", "i2") for p in PROMPTS]
    path = tmp_path / "s.duckdb"
    store = make_store(path, pairs, labels={f"{c}{s}": f"{LOSSES[c]}-seed{s}" for c in "di" for s in range(3)})
    for c, loss in LOSSES.items():
        for s in range(3):
            store.upsert_run(dict(run_id=f"run-{c}{s}", name=f"{loss}-seed{s}", loss=loss, params={},
                                  base_model="tiny-llama", init_from=None, data={}, code_version="0",
                                  status="finished", out_dir="runs/x", final_step=10,
                                  config={"loss": loss, "seed": s, "name": f"{loss}-seed{s}"}))
            store.add_checkpoint(f"{c}{s}", f"run-{c}{s}", 10, "runs/x/step-10", True)
    rows = {r["label"]: r for r in build_leaderboard(path, LeaderboardConfig(baseline="d0", n_resamples=100)).rows}
    assert set(rows) == {"dpo-seed0", "dpo", "ipo"} and rows["dpo-seed0"]["baseline"]
    assert (rows["dpo"]["seeds"], rows["dpo"]["win_rate"], rows["ipo"]["seeds"], rows["ipo"]["win_rate"]) == (
        2, 0.0, 3, 100.0)

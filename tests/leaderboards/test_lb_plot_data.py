"""The numbers behind the frontier plots (leaderboards.plot_data): per-point intervals on both axes, one series per
method across its β grid, reward intervals over seeds and prompts, seed bands of training curves; and the PNGs."""

import numpy as np
import pytest

from leaderboards import plot_data as D
from leaderboards.plots import plot_kl_vs_win_rate, plot_reward_vs_kl, plot_training_curves

PNG = b"\x89PNG\r\n\x1a\n"


def _row(label, loss, beta, kl, win, seeds=None, replicates=None):
    return {"model": label, "label": label, "loss": loss, "beta": beta, "kl": kl, "kl_ci_low": kl - 0.1,
            "kl_ci_high": kl + 0.2, "win_rate": win, "win_rate_ci_low": win - 5.0, "win_rate_ci_high": win + 4.0,
            "seeds": seeds, "replicates": replicates}


ROWS = [_row("dpo-beta0.5", "dpo", 0.5, 0.3, 60.0), _row("exo-beta0.1", "exo", 0.1, 1.0, 70.0),
        _row("dpo-beta0.1", "dpo", 0.1, 0.9, 65.0, seeds=3, replicates="a,b,c"),
        {**_row("sft", "sft", None, 0.0, 55.0), "kl_ci_low": None, "kl_ci_high": None},
        {"model": "base", "label": "base", "loss": None, "kl": 0.0, "win_rate": None}]


def test_series_groups_points_by_loss_ordered_by_beta_with_both_intervals():
    s = D.series(ROWS, "kl", "win_rate")
    assert list(s) == ["dpo", "exo", "sft"]  # the baseline has no win rate: not a point
    assert [p["beta"] for p in s["dpo"]] == [0.1, 0.5]  # the line runs across the β grid
    first = s["dpo"][0]
    assert (first["x"], first["x_lo"], first["x_hi"]) == (0.9, pytest.approx(0.8), pytest.approx(1.1))
    assert (first["y"], first["y_lo"], first["y_hi"]) == (65.0, 60.0, 69.0) and first["seeds"] == 3
    sft = s["sft"][0]
    assert (sft["x_lo"], sft["x_hi"]) == (0.0, 0.0)  # no CI stored: no bar, not a made-up one


def test_reward_intervals_resample_a_rows_seeds_and_prompts():
    # a replicated row: seeds a, b over prompts p1, p2 -> the mean of the four cells (1 + 3 + 2 + 4) / 4 = 2.5
    scores = {"a": {"p1": 1.0, "p2": 3.0}, "b": {"p1": 2.0, "p2": 4.0}, "one": {"p1": 7.0}}
    rows = [{"model": "dpo", "replicates": "a,b"}, {"model": "one"}, {"model": "none"}]
    out = D.reward_intervals(scores, rows, resamples=500)
    assert out[0]["reward"] == pytest.approx(2.5) and 1.0 <= out[0]["reward_ci_low"] < 2.5 < out[0]["reward_ci_high"] <= 4.0
    assert (out[1]["reward"], out[1]["reward_ci_low"], out[1]["reward_ci_high"]) == (7.0, 7.0, 7.0)
    assert out[2]["reward"] is None


def test_a_reward_interval_has_the_width_of_the_mean_s_standard_error():
    # one seed, 400 prompts of SD 1: the 95% interval is about ±1.96 / sqrt(400) = ±0.098 about the mean
    values = np.random.default_rng(0).standard_normal(400)
    scores = {"m": {f"p{i}": float(v) for i, v in enumerate(values)}}
    (row,) = D.reward_intervals(scores, [{"model": "m"}], resamples=2000)
    assert row["reward"] == pytest.approx(values.mean())
    assert row["reward_ci_high"] - row["reward_ci_low"] == pytest.approx(2 * 1.96 * values.std() / 20, rel=0.15)


def test_curve_bands_put_seed_replicates_in_one_curve_with_their_spread():
    curves = [(f"dpo-seed{s}", step, "loss", 1.0 + s + step) for s in range(3) for step in (1, 2)]
    curves += [("sft", 1, "loss", 5.0), ("dpo-seed0", 3, "loss", 9.0)]
    bands = D.curve_bands(curves)["loss"]
    assert bands["dpo"] == [(1, 3.0, 2.0, 4.0, 3), (2, 4.0, 3.0, 5.0, 3), (3, 9.0, 9.0, 9.0, 1)]
    assert bands["sft"] == [(1, 5.0, 5.0, 5.0, 1)]


def test_frontier_plots_are_written(tmp_path):
    rewarded = [{**r, "reward": r["win_rate"] / 100 if r.get("win_rate") else None, "reward_ci_low": 0.5,
                 "reward_ci_high": 0.8} for r in ROWS]
    curves = [(f"dpo-seed{s}", step, "loss", 1.0 / step + 0.1 * s) for s in range(3) for step in range(1, 6)]
    for path in (plot_kl_vs_win_rate(ROWS, tmp_path / "a.png"), plot_reward_vs_kl(rewarded, tmp_path / "b.png"),
                 plot_training_curves(curves, tmp_path / "c.png")):
        assert path is not None and path.read_bytes()[:8] == PNG

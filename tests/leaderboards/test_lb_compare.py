"""`evalharness compare A B` on a store built by hand: two configurations of three seeds each against one baseline."""

import numpy as np
import pytest
from lbstore import add_metric, add_seeded_runs, make_store
from typer.testing import CliRunner

from evalharness.cli import app
from evalharness.compare import compare
from evalharness.hashing import content_hash
from evalharness.store import bulk_insert, now

runner = CliRunner()
PROMPTS = [f"p{i:02d}" for i in range(30)]
WIN, LOSS = ("first", "second"), ("second", "first")  # both orders for A; both for the baseline


def _store(path, extra_baseline=False):
    # A (dpo) wins 27 of 30 prompts against base on every seed, B (ipo) 10 of 30: win rates 0.9 and 1/3
    pairs = [(p, f"{side}{s}", "base", *(WIN if i < wins else LOSS))
             for side, wins in (("a", 27), ("b", 10)) for s in range(3) for i, p in enumerate(PROMPTS)]
    if extra_baseline:
        pairs += [(PROMPTS[0], f"{side}0", "base2", *WIN) for side in "ab"]
    store = make_store(path, pairs)
    add_seeded_runs(store)
    for side in "ab":
        for s in range(3):
            add_metric(store, f"{side}{s}", "kl", 0.1 + 0.01 * s if side == "a" else 0.3 - 0.01 * s)
    # gold reward: the same per-prompt scores on both sides, up to noise of SD 0.01 -> no difference to find
    rng = np.random.default_rng(0)
    with store.transaction() as con:
        gens = con.execute("SELECT generation_id, checkpoint, prompt_id FROM generations").fetchall()
        rows = [(content_hash(["score", g]), "oracle", "1", g, p, float(int(p[1:]) / 30 + 0.01 * rng.standard_normal()),
                 now()) for g, ck, p in gens if ck != "base"]
        bulk_insert(con, "INSERT INTO scores", rows)
    return path


def test_compare_pairs_seeds_and_prompts_and_calls_what_it_finds(tmp_path):
    c = compare(_store(tmp_path / "s.duckdb"), "a1", "b0", resamples=500)
    assert c.a.members == {0: "a0", 1: "a1", 2: "a2"} and c.b.members == {0: "b0", 1: "b1", 2: "b2"}
    assert c.baseline == "base"
    rows = {r.quantity: r for r in c.rows}
    win = rows["win_rate"]
    assert win.a == pytest.approx(0.9) and win.b == pytest.approx(1 / 3) and win.diff.paired_seeds
    assert win.diff.estimate == pytest.approx(0.9 - 1 / 3) and win.diff.prompts == 30 and win.call == "A higher"
    assert rows["gold_reward"].call == "inconclusive" and rows["gold_reward"].diff.ci_low < 0 < rows["gold_reward"].diff.ci_high
    assert rows["kl"].diff.estimate == pytest.approx(0.11 - 0.29) and rows["kl"].diff.ci_high < 0 and rows["kl"].call == "B higher"
    assert rows["perplexity"].diff is None and "not stored" in rows["perplexity"].note
    measured = [r for r in c.rows if r.diff is not None]
    assert len(measured) == 3 and all(r.p_adjusted >= r.diff.p_value for r in measured)


def test_compare_command_prints_each_quantity(tmp_path):
    path = _store(tmp_path / "s.duckdb")
    out = runner.invoke(app, ["compare", "a0", "b0", "--store", str(path), "--bootstrap", "300"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("A = a0 (3 seeds), B = b0 (3 seeds); against base; judge j@1 on set")
    assert [line.split()[0] for line in lines[2:7]] == ["win_rate", "gold_reward", "kl", "perplexity", "agility"]
    assert lines[2].endswith("A higher") and "inconclusive" in lines[3] and "Holm" in lines[-1]


@pytest.mark.parametrize("args, message", [
    (["a0", "b0"], "share 2 baselines under this judge (base, base2); choose one with --baseline"),
    (["a0", "zz"], "no model 'zz'"),
    (["a0", "a1"], "name the same configuration"),
])
def test_compare_refuses_what_it_cannot_answer_with_exit_2(tmp_path, args, message):
    path = _store(tmp_path / "s.duckdb", extra_baseline=True)
    out = runner.invoke(app, ["compare", *args, "--store", str(path)])
    assert out.exit_code == 2 and message in out.output and out.output.startswith("error: ")


def test_compare_with_a_named_baseline(tmp_path):
    c = compare(_store(tmp_path / "s.duckdb", extra_baseline=True), "a0", "b0", baseline="base", resamples=200)
    assert c.baseline == "base" and c.rows[0].diff.prompts == 30

"""Gold reward of samples whose text another checkpoint drew first: the judge scores a (prompt, text) once and stores
it under the first generation, so a converged policy that writes the baseline's reviews must still have them scored."""

import pytest
from lbstore import add_seeded_runs, make_store

from evalharness.compare import compare
from evalharness.hashing import content_hash
from evalharness.store import bulk_insert, now
from leaderboards.plots import reward_points

PROMPTS = [f"p{i:02d}" for i in range(12)]
WIN, LOSS = ("first", "second"), ("second", "first")


def _store(path):
    # b (ipo) writes exactly a's (dpo's) text on every prompt; the oracle scored each text once, on a's sample
    pairs = [(p, f"{side}{s}", "base", *(WIN if i % 2 else LOSS)) for side in "ab" for s in range(3)
             for i, p in enumerate(PROMPTS)]
    texts = {(f"{side}{s}", p): f"review {s} of {p}" for side in "ab" for s in range(3) for p in PROMPTS}
    store = make_store(path, pairs, texts=texts)
    add_seeded_runs(store)
    with store.transaction() as con:
        gens = con.execute("SELECT generation_id, prompt_id, text FROM generations WHERE checkpoint LIKE 'a%'").fetchall()
        rows = [(content_hash(["score", p, text]), "oracle", "1", g, p, int(p[1:]) / 12, now()) for g, p, text in gens]
        bulk_insert(con, "INSERT INTO scores", rows)
    return store


def test_compare_finds_the_gold_reward_of_a_text_scored_under_another_checkpoint(tmp_path):
    store = _store(tmp_path / "s.duckdb")
    rows = {r.quantity: r for r in compare(store.path, "a0", "b0", resamples=200).rows}
    gold = rows["gold_reward"]
    assert gold.diff is not None, gold.note
    assert gold.a == pytest.approx(gold.b) == pytest.approx(sum(range(12)) / 12 / 12)
    assert gold.diff.prompts == 12 and gold.diff.estimate == pytest.approx(0.0)


def test_reward_points_score_every_checkpoint_that_drew_a_scored_text(tmp_path):
    store = _store(tmp_path / "s.duckdb")
    rows = [{"model": f"b{s}", "replicates": None} for s in range(3)]
    with store.connect() as con:
        points, label = reward_points(con, rows, {"judge": "oracle", "judge_version": "1", "prompt_set": "set"})
    assert label == "oracle reward"
    assert [p["reward"] for p in points] == pytest.approx([sum(range(12)) / 12 / 12] * 3)

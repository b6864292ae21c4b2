"""The judge runner: pairs in both orders, cache keys, resume, retries of failed rows, pointwise judges, sampling."""

import json

import pytest

from evalharness import plugins
from evalharness.config import ConfigError
from evalharness.hashing import content_hash
from evalharness.judging import JudgeConfig, judge
from evalharness.store import Store, bulk_insert, now
from judges.base import Verdict

PROMPTS = ["p1", "p2", "p3", "p4"]


def seed_store(path, texts: dict[str, list[str]], prompt_set="set", references=None):
    """A store with one prompt per entry of PROMPTS and, per model label, one sample per prompt with the given text."""
    store = Store(str(path))
    with store.transaction() as con:
        for i, pid in enumerate(PROMPTS):
            msgs = json.dumps([{"role": "user", "content": f"Write a short review of item {i}."}])
            ref = references[i] if references else None
            con.execute("INSERT INTO prompts VALUES (?, ?, ?, ?, ?, ?)", [pid, prompt_set, pid, msgs, ref, "{}"])
        rows = []
        for label, per_prompt in texts.items():
            for pid, text in zip(PROMPTS, per_prompt):
                rows.append((content_hash([label, pid]), f"ck-{label}", label, None, pid, 1, 0, '{"t": 1}', 1.0, "hf",
                             None, None, text, None, len(text.split()), "stop", False, None, None, None, None, now()))
        bulk_insert(con, "INSERT INTO generations", rows)
    return store


class Counting:
    """A pairwise judge that prefers the longer response and counts the comparisons it was asked."""

    id, version, template = "counting", "1", ""
    calls: list = []

    def __init__(self, fail_after: int | None = None, fail_with: str = "raise"):
        self.fail_after, self.fail_with = fail_after, fail_with

    def compare(self, items):
        out = []
        for c in items:
            if self.fail_after is not None and len(Counting.calls) >= self.fail_after:
                if self.fail_with == "raise":
                    raise KeyboardInterrupt  # the process dies mid-run
                out.append(Verdict("failed", error="endpoint down"))
                continue
            Counting.calls.append((c.first, c.second))
            d = len(c.first) - len(c.second)
            out.append(Verdict("tie" if d == 0 else "first" if d > 0 else "second", raw=str(d), latency=0.01,
                               prompt_tokens=10, completion_tokens=2, cost=0.001))
        return out


@pytest.fixture(autouse=True)
def counting_judge():
    plugins.reset()
    plugins.registry("judges").add("counting", Counting, "test judge", source="tests")
    Counting.calls = []
    yield
    plugins.reset()


def _rows(store, cols="model_a, model_b, swapped, verdict"):
    with store.connect() as con:
        return con.execute(f"SELECT {cols} FROM judgments ORDER BY model_a, prompt_id, swapped").fetchall()


def test_oracle_judges_both_orders_and_stores_both_raw_verdicts(tmp_path):
    store = seed_store(tmp_path / "s.duckdb", {"good": ["great and clean"] * 4, "bad": ["awful and dirty"] * 4})
    report = judge(JudgeConfig("oracle", ["good"], baseline="bad", prompts="set"), store, progress=False)
    # 1 pair of models x 4 prompts = 4 pairs, each in 2 orders = 8 judgments. A score is keyed by (conversation,
    # text): 2 texts x 4 different conversations = 8 scores, each computed once for both orders.
    assert (report.pairs, report.judgments, report.called, report.scored) == (4, 8, 8, 8)
    rows = _rows(store)
    # Not swapped: good is shown first and wins ("first"); swapped: good is second and still wins ("second").
    assert rows == [("ck-good", "ck-bad", False, "first"), ("ck-good", "ck-bad", True, "second")] * 4
    with store.connect() as con:
        probs = con.execute("SELECT DISTINCT round(probability, 6) FROM judgments ORDER BY 1").fetchall()
        assert con.execute("SELECT count(*) FROM scores").fetchone()[0] == 8
    # oracle("great and clean") = 1, oracle("awful and dirty") = -1: P(first) = sigmoid(+-2) = 0.880797 / 0.119203.
    assert [p for (p,) in probs] == [0.119203, 0.880797]


def test_rerun_makes_zero_calls_and_adds_no_rows(tmp_path):
    store = seed_store(tmp_path / "s.duckdb", {"a": ["long answer"] * 4, "b": ["short"] * 4})
    first = judge(JudgeConfig("counting", ["a"], baseline="b", prompts="set"), store, progress=False)
    assert first.called == 8 and len(Counting.calls) == 8
    assert (first.prompt_tokens, first.completion_tokens, round(first.cost, 6)) == (80, 16, 0.008)
    again = judge(JudgeConfig("counting", ["a"], baseline="b", prompts="set"), store, progress=False)
    assert (again.called, again.stored, again.reused) == (0, 8, 0)
    assert len(Counting.calls) == 8 and len(_rows(store)) == 8


def test_same_texts_from_another_model_reuse_the_cached_verdicts(tmp_path):
    store = seed_store(tmp_path / "s.duckdb", {"a": ["long answer"] * 4, "twin": ["long answer"] * 4,
                                               "b": ["short"] * 4})
    judge(JudgeConfig("counting", ["a"], baseline="b", prompts="set"), store, progress=False)
    report = judge(JudgeConfig("counting", ["twin"], baseline="b", prompts="set"), store, progress=False)
    assert (report.called, report.reused, len(Counting.calls)) == (0, 8, 8)
    with store.connect() as con:
        # the reused rows are the twin's own rows (its generation ids), with no cost of their own
        assert con.execute("SELECT count(*), sum(cost) FROM judgments WHERE model_a = 'ck-twin'").fetchone() == (8, 0)


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    store = seed_store(tmp_path / "s.duckdb", {"a": ["aaaa", "bb", "c", "ddd"], "b": ["x", "yyy", "zz", "w"]})
    plugins.registry("judges").add("dying", lambda: Counting(fail_after=4), replace=True)
    with pytest.raises(KeyboardInterrupt):
        judge(JudgeConfig("dying", ["a"], baseline="b", prompts="set", chunk=2), store, progress=False)
    assert len(_rows(store)) == 4  # two chunks of two were written before the fifth comparison died
    Counting.calls = []
    report = judge(JudgeConfig("counting", ["a"], baseline="b", prompts="set", chunk=2), store, progress=False)
    # "dying" and "counting" share id, version and template, so the resumed run calls only the missing four
    assert (report.stored, report.called, len(Counting.calls)) == (4, 4, 4)
    assert len(_rows(store)) == 8


def test_failed_rows_are_retried_on_the_next_run_and_unparsed_kept(tmp_path):
    store = seed_store(tmp_path / "s.duckdb", {"a": ["aaaa"] * 4, "b": ["b"] * 4})
    plugins.registry("judges").add("flaky", lambda: Counting(fail_after=2, fail_with="failed"), replace=True)
    first = judge(JudgeConfig("flaky", ["a"], baseline="b", prompts="set"), store, progress=False)
    assert (first.called, first.failed) == (8, 6)
    Counting.calls = []
    second = judge(JudgeConfig("counting", ["a"], baseline="b", prompts="set"), store, progress=False)
    assert (second.stored, second.called, second.failed) == (2, 6, 0)
    assert [v for *_, v in _rows(store)].count("failed") == 0 and len(_rows(store)) == 8


def test_all_pairs_and_vs_reference(tmp_path):
    store = seed_store(tmp_path / "s.duckdb", {"a": ["aaa"] * 4, "b": ["bb"] * 4, "c": ["c"] * 4},
                       references=["rrrr", "rrrr", "r", "r"])
    pairs = judge(JudgeConfig("counting", ["a", "b", "c"], all_pairs=True, prompts="set"), store, progress=False)
    assert (pairs.pairs, pairs.judgments) == (12, 24)  # 3 model pairs x 4 prompts, both orders
    assert {(a, b) for a, b, *_ in _rows(store)} == {("ck-a", "ck-b"), ("ck-a", "ck-c"), ("ck-b", "ck-c")}
    ref = judge(JudgeConfig("counting", ["a"], vs_reference=True, prompts="set"), store, progress=False)
    assert (ref.pairs, ref.judgments) == (4, 8)
    with store.connect() as con:
        got = con.execute("SELECT prompt_id, swapped, verdict FROM judgments WHERE model_b = 'reference:set' "
                          "ORDER BY prompt_id, swapped").fetchall()
    # "aaa" vs reference "rrrr" (p1, p2): the reference is longer and wins; vs "r" (p3, p4) "aaa" wins.
    assert got == [("p1", False, "second"), ("p1", True, "first"), ("p2", False, "second"), ("p2", True, "first"),
                   ("p3", False, "first"), ("p3", True, "second"), ("p4", False, "first"), ("p4", True, "second")]


def test_bad_requests_are_one_line_errors_and_write_nothing(tmp_path):
    store = seed_store(tmp_path / "s.duckdb", {"a": ["x"] * 4, "b": ["y"] * 4})
    with pytest.raises(ConfigError, match="exactly one of"):
        JudgeConfig("oracle", ["a"], baseline="b", all_pairs=True)
    with pytest.raises(ConfigError, match=r"'nope' has no samples on prompt set 'set'.*sampled on 'set': a, b"):
        judge(JudgeConfig("oracle", ["nope"], baseline="b", prompts="set"), store, progress=False)
    with pytest.raises(ConfigError, match="no reference answers"):
        judge(JudgeConfig("oracle", ["a"], vs_reference=True, prompts="set"), store, progress=False)
    from evalharness.registry import RegistryError

    with pytest.raises(RegistryError, match="did you mean 'oracle'"):
        judge(JudgeConfig("oracel", ["a"], baseline="b", prompts="set"), store, progress=False)
    assert _rows(store) == []


def test_a_model_not_yet_sampled_is_sampled_first(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    gen = {"backend": "hf", "sampling": __import__("evalharness.generation.base", fromlist=["Sampling"]).Sampling(
        temperature=1.0, max_new_tokens=6, seed=1)}
    cfg = JudgeConfig("oracle", ["tiny-llama"], baseline="tiny-gpt2", prompts="synthetic", limit=3, generate=gen)
    report = judge(cfg, store, progress=False)
    assert sum(n.startswith("sampled ") for n in report.notes) == 2
    assert (report.pairs, report.judgments) == (3, 6)
    again = judge(cfg, store, progress=False)
    assert (again.notes, again.called, again.stored) == ([], 0, 6)

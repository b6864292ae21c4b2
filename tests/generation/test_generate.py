"""`evalharness generate` end to end with the hf backend on tiny models: resume, turns, reference scoring."""

import json

import pytest

from evalharness.generate import GenerateConfig, generate
from evalharness.generation.base import Sampling
from evalharness.store import Store

SAMPLING = Sampling(temperature=0.9, top_p=1.0, max_new_tokens=12, seed=3)


def _rows(store, columns="generation_id, turn, sample_index, text, policy_logp, reference_logp, prompt_text"):
    with store.connect() as con:
        return con.execute(f"SELECT {columns} FROM generations ORDER BY generation_id").fetchall()


def _cfg(**kw):
    base = dict(checkpoints=["tiny-llama"], prompts="synthetic", limit=5, n=2, sampling=SAMPLING, backend="hf",
                batch_size=4, chunk=4)
    base.update(kw)
    return GenerateConfig(**base)


def test_generate_then_rerun_makes_nothing_new(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    [first] = generate(_cfg(), store, progress=False)
    assert (first.prompts, first.samples, first.generated, first.cached) == (5, 10, 10, 0)
    [again] = generate(_cfg(), store, progress=False)
    assert (again.generated, again.cached, again.scored) == (0, 10, 0)
    assert len(_rows(store)) == 10
    [more] = generate(_cfg(n=3), store, progress=False)  # one more sample per prompt: only those are drawn
    assert (more.generated, more.cached) == (5, 10)


def test_a_plain_model_is_its_own_reference_so_its_kl_terms_vanish(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    generate(_cfg(), store, progress=False)
    rows = _rows(store)
    # The reference pass re-scores the sampled tokens with a fresh forward at the sampling temperature: it must
    # agree with the log-probs the sampler reported.
    assert all(r[5] is not None for r in rows)
    assert max(abs(r[4] - r[5]) for r in rows) < 1e-4


def test_interrupted_generation_resumes_to_the_same_samples(tmp_path, monkeypatch):
    full = Store(str(tmp_path / "full.duckdb"))
    generate(_cfg(), full, progress=False)

    import evalharness.generation.hf as hf

    real = hf.HFGenerator.generate
    calls = {"n": 0}

    def flaky(self, requests, sampling, progress=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, requests, sampling, progress)

    cut = Store(str(tmp_path / "cut.duckdb"))
    monkeypatch.setattr(hf.HFGenerator, "generate", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate(_cfg(), cut, progress=False)
    assert len(_rows(cut)) == 4  # the first chunk was written
    monkeypatch.setattr(hf.HFGenerator, "generate", real)
    [resumed] = generate(_cfg(), cut, progress=False)
    assert resumed.generated == 6 and resumed.cached == 4
    strip = [r[:4] for r in _rows(full)]
    assert [r[:4] for r in _rows(cut)] == strip  # same keys, same texts: per-sample seeds ignore batching


def test_second_turn_is_conditioned_on_the_samples_own_first_answer(tmp_path):
    data = tmp_path / "two_turns.jsonl"
    data.write_text("\n".join(json.dumps({"id": f"q{i}", "turns": [f"Name a colour {i}.", "Why that one?"]})
                              for i in range(3)) + "\n")
    store = Store(str(tmp_path / "s.duckdb"))
    [r] = generate(_cfg(prompts="jsonl", path=str(data), limit=None, columns={"prompt": "turns"}), store,
                   progress=False)
    assert r.samples == 3 * 2 * 2  # prompts x samples x turns
    rows = _rows(store)
    first = {(r[2], r[6].split("Name a colour ")[1][0]): r[3] for r in rows if r[1] == 1}
    for row in rows:
        if row[1] == 2:
            q = row[6].split("Name a colour ")[1][0]
            answer = first[(row[2], q)]
            assert answer in row[6] and "Why that one?" in row[6]


def test_bad_sampling_and_unknown_prompt_set_are_clear(tmp_path):
    from evalharness.registry import RegistryError

    with pytest.raises(ValueError, match="temperature must be > 0"):
        Sampling(temperature=1e-5)
    with pytest.raises(ValueError, match=r"a number or a rule \(fastchat\)"):
        Sampling(temperature="fastchta")
    with pytest.raises(RegistryError, match="did you mean 'mt-bench'"):
        generate(_cfg(prompts="mt-bnech"), Store(str(tmp_path / "s.duckdb")), progress=False)
    assert not (tmp_path / "s.duckdb").exists()


def test_greedy_stores_log_probs_at_temperature_one_and_the_reference_scores_them_there(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    generate(_cfg(sampling=Sampling(temperature=0, max_new_tokens=12), n=2), store, progress=False)
    rows = _rows(store, "sample_index, text, temperature, policy_logp, reference_logp, sampling, prompt_id")
    assert {r[2] for r in rows} == {1.0}  # the column says which temperature the log-probs are at
    assert {json.loads(r[5])["temperature"] for r in rows} == {0}  # the sampling record says greedy
    # The plain model is its own reference: scored at temperature 1 it gives back the sampler's log-probs. Before
    # greedy existed the column would have held 0 and the reference pass divided the logits by it.
    assert max(abs(r[3] - r[4]) for r in rows) < 1e-4
    by_prompt = {}
    for r in rows:
        by_prompt.setdefault(r[6], set()).add(r[1])
    assert all(len(texts) == 1 for texts in by_prompt.values())  # both samples of a prompt: the same argmax


def test_the_fastchat_rule_samples_each_category_at_its_temperature(tmp_path):
    data = tmp_path / "cats.jsonl"
    cats = ["math", "writing", "stem", None]
    data.write_text("\n".join(json.dumps({"id": f"q{i}", "prompt": f"Question {i}?", "category": c})
                              for i, c in enumerate(cats)) + "\n")
    store = Store(str(tmp_path / "s.duckdb"))
    cfg = _cfg(prompts="jsonl", path=str(data), limit=None, n=2, sampling=Sampling("fastchat", max_new_tokens=8),
               columns={"category": "category"})
    [r] = generate(cfg, store, progress=False)
    assert r.generated == 8
    with store.connect() as con:
        rows = con.execute("SELECT p.source_id, g.temperature, g.sampling, g.text, g.policy_logp, g.reference_logp "
                           "FROM generations g JOIN prompts p USING (prompt_id)").fetchall()
    temps = {r[0]: r[1] for r in rows}
    # FastChat: math greedy (log-probs at 1), writing 0.7, stem 0.1, no category 0.7 (its default).
    assert temps == {"q0": 1.0, "q1": 0.7, "q2": 0.1, "q3": 0.7}
    assert {json.loads(r[2])["temperature"] for r in rows} == {"fastchat"}  # the rule is in the key and the record
    texts = {}
    for row in rows:
        texts.setdefault(row[0], set()).add(row[3])
    assert len(texts["q0"]) == 1  # greedy: both samples alike
    assert max(abs(r[4] - r[5]) for r in rows) < 1e-4  # each row scored at its own temperature
    [again] = generate(cfg, store, progress=False)
    assert again.generated == 0  # the same rule is the same key

"""MT-Bench as FastChat defines it, end to end against a loopback judge: turn 2 judged with the multi-turn templates
(each model's own turn-1 answer shown, reference answers for math), single-answer grades, and both on the board.

The prompt set is a small FastChat-layout question file the test writes; the judge prompts are FastChat's file from
../shared/data, loaded by path.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evalharness.cli import app
from evalharness.generation.base import Sampling
from evalharness.hashing import content_hash
from evalharness.judging import JudgeConfig, judge
from evalharness.store import Store
from evalharness.store_rows import GenerationRecord, PromptRecord
from tests.judges.loopback import completion, loopback_fixture  # noqa: F401

FASTCHAT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "judge-prompts" / "fastchat" / \
    "judge_prompts.jsonl"
pytestmark = pytest.mark.skipif(not FASTCHAT.exists(), reason=f"FastChat judge prompts not at {FASTCHAT}")

QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["Describe your town.", "Now in one sentence."]},
    {"question_id": 2, "category": "math", "turns": ["What is 2 + 3?", "And that times 4?"]},
    {"question_id": 3, "category": "roleplay", "turns": ["Greet me as a pirate.", "Now say goodbye."]},
]
REFERENCES = {2: ["It is 5.", "It is 20."]}
ANSWERS = {  # model -> (question, turn) -> text; "long" writes more words, the length-biased judge prefers it
    "long": {(q["question_id"], t): f"long answer {q['question_id']}.{t} with many more words in it"
             for q in QUESTIONS for t in (1, 2)},
    "short": {(q["question_id"], t): f"short {q['question_id']}.{t}" for q in QUESTIONS for t in (1, 2)},
}


def _seed(tmp_path, changed: dict | None = None) -> Store:
    """The question file and GPT-4-style reference file in FastChat's layout, loaded by the mt-bench preset, and
    both models' answers to both turns stored as sampled with FastChat's per-category temperatures."""
    from evalharness.data.prompts import PromptSetSpec, load_prompts

    qfile = tmp_path / "question.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    (tmp_path / "reference_answer_gpt-4.jsonl").write_text("".join(
        json.dumps({"question_id": q, "model_id": "gpt-4", "choices": [{"index": 0, "turns": turns}]}) + "\n"
        for q, turns in REFERENCES.items()))
    prompts = load_prompts(PromptSetSpec(name="mt-bench", path=str(qfile))).prompts
    store = Store(str(tmp_path / "s.duckdb"))
    store.insert_prompts([PromptRecord(p.id, "mt-bench", str(p.meta["source_id"]),
                                       json.dumps([m._asdict() for m in p.messages]), p.reference,
                                       json.dumps(p.meta)) for p in prompts])
    sampling = json.dumps(dataclasses.asdict(Sampling("fastchat")))
    rows = []
    for model, answers in ANSWERS.items():
        for p in prompts:
            for turn in (1, 2):
                text = (changed or {}).get((model, int(p.meta["source_id"]), turn)) or answers[
                    (int(p.meta["source_id"]), turn)]
                rows.append(GenerationRecord(content_hash([model, p.id, turn]), f"ck-{model}", model, None, p.id, turn,
                                             0, sampling, 1.0, "hf", None, None, text, None, len(text.split()), "stop",
                                             False, None, None))
    store.insert_generations(rows)
    return store


_PAIR = re.compile(r"\[The Start of Assistant (A|B)'s Answer\]\n(.*?)\n\[The End of Assistant \1's Answer\]", re.S)
_CONV = re.compile(r"<\|The Start of Assistant (A|B)'s Conversation with User\|>(.*?)"
                   r"<\|The End of Assistant \1's Conversation with User\|>", re.S)
_SINGLE = re.compile(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", re.S)


def _last_answer(conversation: str) -> str:
    return re.findall(r"### Assistant [AB]:\n(.*?)\n\n", conversation, re.S)[-1]


def fastchat_judge(req):
    """Reads FastChat's templates as they are filled: prefers the longer answer (to the last turn) and grades an
    answer by its length in words (1-10); "unparsed" for an answer that says so."""
    prompt = req.prompt
    if "[[rating]]" in prompt:
        single = _SINGLE.findall(prompt)
        answer = single[0] if single else _last_answer(_CONV.findall(prompt)[0][1])
        if "unparsed" in answer:
            return completion("I cannot grade this.")
        return completion(f"Fine. Rating: [[{min(10, len(answer.split()))}]]")
    shown = dict(_PAIR.findall(prompt)) or {who: _last_answer(conv) for who, conv in _CONV.findall(prompt)}
    a, b = len(shown["A"]), len(shown["B"])
    return completion("Compared. " + ("[[A]]" if a > b else "[[B]]" if b > a else "[[C]]"))


def _judge(store, loopback, **kw):
    spec = f"llm:model=loop,base_url={loopback.url},template={FASTCHAT},max_retries=0"
    return judge(JudgeConfig(spec, ["long"], prompts="mt-bench", **kw), store, progress=False)


def _board(store, *args):
    out = CliRunner().invoke(app, ["leaderboard", "--store", str(store.path), "--format", "json", "--bootstrap",
                                   "50", *args], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_turn_two_is_judged_with_the_multi_turn_templates_and_each_models_own_history(tmp_path, loopback):
    store = _seed(tmp_path)
    loopback.behaviour = fastchat_judge
    report = _judge(store, loopback, baseline="short")
    # 3 questions x 2 turns x 2 orders; before, only turn 1 was judged (6 judgments).
    assert (report.pairs, report.judgments, report.called, report.unparsed) == (6, 12, 12, 0)
    with store.connect() as con:
        turns = con.execute("SELECT turn, count(*) FROM judgments GROUP BY 1 ORDER BY 1").fetchall()
    assert turns == [(1, 6), (2, 6)]
    turn2 = [r.prompt for r in loopback.completions if "<|The Start of Assistant A's Conversation" in r.prompt]
    assert len(turn2) == 6
    math = [p for p in turn2 if "And that times 4?" in p]
    # FastChat's pair-math-v1-multi-turn for the math question: both reference turns, and each model after its own
    # turn-1 answer.
    assert len(math) == 2 and all("It is 5." in p and "It is 20." in p for p in math)
    for p in math:
        conv = dict(_CONV.findall(p))
        for side in conv.values():
            own = "long" if "long answer 2.2" in side else "short"
            assert ANSWERS[own][(2, 1)] in side
    assert not any("Reference" in p for p in turn2 if "Now in one sentence." in p)  # writing: no reference
    # The board per turn and overall (FastChat's overall pools both turns).
    for args, n in ((["--turn", "1"], 3), (["--turn", "2"], 3), (["--turn", "all"], 6)):
        [row] = [r for r in _board(store, *args)["rows"] if r["label"] == "long"]
        assert (row["n"], row["wins"], row["win_rate"]) == (n, n, 100.0), args
    again = _judge(store, loopback, baseline="short")
    assert (again.called, again.stored) == (0, 12)


def test_single_answer_grades_are_stored_and_shown_as_the_mt_bench_score(tmp_path, loopback):
    store = _seed(tmp_path, {("short", 3, 2): "unparsed"})  # an answer the judge gives no grade
    loopback.behaviour = fastchat_judge
    report = _judge(store, loopback, baseline="short", mode="single")
    assert (report.answers, report.called, report.unparsed, report.failed) == (12, 12, 1, 0)
    prompts = [r.prompt for r in loopback.completions]
    # single-math-v1 with the reference for the math question at turn 1, single-v1-multi-turn for writing turn 2.
    assert any("What is 2 + 3?" in p and "It is 5." in p and "[The Start of Reference Answer]" in p for p in prompts)
    assert any("Now in one sentence." in p and "### Assistant A:" in p and "Reference" not in p for p in prompts)
    with store.connect() as con:
        graded = con.execute("SELECT model, turn, rating, status FROM ratings ORDER BY model, turn, prompt_id").fetchall()
    assert len(graded) == 12 and ("ck-short", 2, None, "unparsed") in graded
    # long answers have 9 words (grade 9), short ones 2 (grade 2); the unparsed grade is left out, not guessed.
    board = _board(store, "--turn", "all")
    score = {r["label"]: (r["score"], r["score_n"]) for r in board["rows"]}
    assert score == {"long": (9.0, 6), "short": (2.0, 5)}
    assert [r["label"] for r in board["rows"]] == ["long", "short"]
    assert any("MT-Bench score" in n and "1 unparsed or failed" in n for n in board["notes"])
    turn2 = {r["label"]: r["score_n"] for r in _board(store, "--turn", "2")["rows"]}
    assert turn2 == {"long": 3, "short": 2}
    # Graded beside pairwise verdicts of the same judge, the score is a column of the pairwise board.
    _judge(store, loopback, baseline="short")
    [row] = [r for r in _board(store, "--turn", "1")["rows"] if r["label"] == "long"]
    assert (row["win_rate"], row["score"], row["score_n"]) == (100.0, 9.0, 3)
    assert row["score_ci_low"] == row["score_ci_high"] == 9.0  # every grade 9: a CI of one point
    again = _judge(store, loopback, baseline="short", mode="single")
    assert (again.called, again.stored) == (0, 12)  # the unparsed grade is kept: nothing is asked again


def test_greedy_and_the_fastchat_rule_on_the_command_line(tmp_path):
    out = CliRunner().invoke(app, ["generate", "-c", "tiny-llama", "--store", str(tmp_path / "s.duckdb"),
                                   "--temperature", "fastchta"])
    assert out.exit_code == 2 and "temperature must be a number or a rule (fastchat)" in out.output
    assert not (tmp_path / "s.duckdb").exists()


def test_forward_kl_scores_each_reference_sample_at_its_own_temperature(tmp_path):
    """Under the fastchat rule one sampling setting holds several temperatures (math greedy, log-probs at 1; writing
    0.7): the policy scores each of the reference's samples at that sample's own temperature. Before, every sample
    of the setting was scored at the first one's."""
    import numpy as np
    import torch

    from evalharness.evaluation import EvalConfig, evaluate
    from evalharness.models import load_causal_lm, model_fingerprint, resolve_model
    from evalharness.scoring import Seq, sequence_logps
    from evalharness.store import now

    path = resolve_model("tiny-llama")
    key = "model:" + model_fingerprint(path)
    sampling = json.dumps(dataclasses.asdict(Sampling("fastchat", max_new_tokens=3)))
    temps = {"p1": 1.0, "p2": 0.7}
    seq = Seq((1, 5, 6), (7, 8, 9))
    store = Store(str(tmp_path / "s.duckdb"))
    store.insert_prompts([PromptRecord(p, "set", p, "[]", None, "{}") for p in temps])
    rows = []
    for ck, lp in ((key, -4.0), ("model:ref", -3.0)):
        for p, t in temps.items():
            rows.append(GenerationRecord(f"{ck}-{p}", ck, ck, None, p, 1, 0, sampling, t, "hf", "", list(seq.prompt),
                                         "", list(seq.response), 3, "stop", False, lp, [lp / 3] * 3, "model:ref",
                                         lp - 1.0, now()))
    store.insert_generations(rows)
    [report] = evaluate(EvalConfig([str(path)], metrics=("forward_kl",), bootstrap=0, score_missing=False), store,
                        progress=False)
    model = load_causal_lm(path).eval()
    with torch.no_grad():
        own = {p: sequence_logps(model, [seq], 0, temperature=t).summed.item() for p, t in temps.items()}
    expected = np.mean([-3.0 - own[p] for p in temps])  # per prompt: lpref - lpπ at the sample's temperature
    [row] = [r for r in report.rows if r.metric == "forward_kl"]
    assert own["p1"] != pytest.approx(own["p2"], abs=1e-3)  # the temperatures do give different log-probs
    assert row.value == pytest.approx(expected, abs=1e-4)
    assert any("greedy samples" in n for n in report.notes)


@pytest.mark.parametrize("args,message", [
    (["--judge", "oracle", "--mode", "single", "--baseline", "b"], "judge 'oracle' does not take --mode"),
    (["--judge", f"llm:model=x,base_url=http://127.0.0.1:9/v1,template={FASTCHAT}", "--mode", "single",
      "--vs-reference"], "single-answer grading has no opponent"),
    (["--judge", "llm:model=x,base_url=http://127.0.0.1:9/v1", "--mode", "single"], "has no single template"),
    (["--judge", "oracle", "--mode", "both", "--baseline", "b"], "--mode must be pairwise or single"),
])
def test_single_mode_refusals_are_one_line_and_write_nothing(tmp_path, args, message):
    out = CliRunner().invoke(app, ["judge", "--models", "a", "--prompts", "mt-bench", "--store",
                                   str(tmp_path / "s.duckdb"), *args])
    assert out.exit_code == 2 and message in out.output and out.output.count("\n") == 1, out.output
    assert not (tmp_path / "s.duckdb").exists()

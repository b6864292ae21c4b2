"""Judge templates: the project's own files, and FastChat / AlpacaEval files loaded by path from ../shared/data.

Third-party prompts are checked against a peer rendering: the same file filled in by ``str.format`` (FastChat's own
rule) or by plain replacement of its three names (AlpacaEval's files have bare braces), so a test compares what the
judge sends with what the source project would have sent, without copying a word of it here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evalharness.data.types import Message
from judges.base import Comparison
from judges.templates import TEMPLATE_DIR, TemplateError, builtin_names, load_template

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "judge-prompts"
FASTCHAT = DATA / "fastchat" / "judge_prompts.jsonl"
ALPACA = DATA / "alpaca-eval"
needs_fastchat = pytest.mark.skipif(not FASTCHAT.exists(), reason=f"FastChat judge prompts not at {FASTCHAT}")
needs_alpaca = pytest.mark.skipif(not ALPACA.exists(), reason=f"AlpacaEval annotator configs not at {ALPACA}")

SINGLE = Comparison((Message("user", "Name a prime number."),), "7", "9 {second}", reference="2, 3, 5 or 7")
MULTI = Comparison((Message("system", "Be brief."), Message("user", "Hi!"), Message("assistant", "Hello."),
                    Message("user", "Name a prime number.")), "Seven.", "Nine.", reference="7")


def _user(messages):
    return next(m["content"] for m in messages if m["role"] == "user")


def test_builtins_load_with_their_parsers():
    assert builtin_names() == ["arena-hard", "dialogue", "human-preference", "mt-bench", "mt-bench-reference",
                               "summary"]
    parsers = {name: load_template(name).parser for name in builtin_names()}
    assert parsers == {"arena-hard": "arena-hard", "dialogue": "more-helpful", "human-preference": "response-number",
                       "mt-bench": "mt-bench", "mt-bench-reference": "mt-bench", "summary": "preferred"}
    for name in builtin_names():
        assert re.fullmatch(rf"{name}@[0-9a-f]{{12}}", load_template(name).key)


@pytest.mark.parametrize("name", ["arena-hard", "dialogue", "human-preference", "mt-bench", "mt-bench-reference",
                                  "summary"])
def test_builtin_render_shows_both_responses_in_order_and_the_whole_conversation(name):
    t = load_template(name)
    text = "\n".join(m["content"] for m in t.render(MULTI))
    for turn in ("Be brief.", "Hi!", "Hello.", "Name a prime number."):
        assert turn in text
    assert text.index("Seven.") < text.index("Nine.")
    swapped = "\n".join(m["content"] for m in t.render(Comparison(MULTI.messages, "Nine.", "Seven.", "7")))
    assert swapped.index("Nine.") < swapped.index("Seven.")
    assert "{" not in text.replace("{second}", "")  # every placeholder was filled


def test_a_response_is_shown_as_written_even_when_it_looks_like_a_placeholder():
    user = _user(load_template("mt-bench").render(SINGLE))
    assert "9 {second}" in user and user.count("9 {second}") == 1


def test_reference_template_needs_a_reference():
    user = _user(load_template("mt-bench-reference").render(SINGLE))
    assert "2, 3, 5 or 7" in user
    with pytest.raises(TemplateError, match="reference answer and a comparison has none"):
        load_template("mt-bench-reference").render(Comparison(SINGLE.messages, "7", "9"))


def test_summary_shows_the_post_alone_when_the_conversation_is_one_turn():
    user = _user(load_template("summary").render(SINGLE))
    assert "Post:\nName a prime number.\n" in user  # no "User:" label: the post is the prompt's text


def test_hash_follows_content_not_path(tmp_path):
    own = TEMPLATE_DIR / "mt-bench.toml"
    copy = tmp_path / "mt-bench.toml"
    copy.write_text(own.read_text())
    assert load_template(str(copy)).key == load_template("mt-bench").key
    copy.write_text(own.read_text().replace("impartial", "neutral"))
    assert load_template(str(copy)).key != load_template("mt-bench").key


@pytest.mark.parametrize("body,message", [
    ('parser = "mt-bench"\nuser = "{first} {second}"\ncolour = "red"', "unknown field"),
    ('parser = "mt-bench"\nuser = "{first} {colour}"', "unknown placeholder"),
    ('parser = "mt-bench"\nuser = "{first} only"', "must show {first} and {second}"),
    ('parser = "stars"\nuser = "{first} {second}"', "unknown parser 'stars'"),
    ('user = "{first} {second}"', "'parser' is missing"),
    ('parser = "mt-bench"\nuser = "{first', "Unterminated string"),  # TOML syntax error, with the file named
])
def test_own_toml_errors_name_the_file_and_the_problem(tmp_path, body, message):
    path = tmp_path / "mine.toml"
    path.write_text(body)
    with pytest.raises(TemplateError, match=re.escape(message)) as e:
        load_template(str(path))
    assert "mine.toml" in str(e.value)


def test_own_toml_literal_braces(tmp_path):
    path = tmp_path / "json.toml"
    path.write_text('parser = "mt-bench"\nuser = "{{\\"a\\": \\"{first}\\", \\"b\\": \\"{second}\\"}}"')
    assert _user(load_template(str(path)).render(SINGLE)) == '{"a": "7", "b": "9 {second}"}'


def test_unknown_template_has_a_hint():
    with pytest.raises(TemplateError, match="did you mean 'mt-bench'"):
        load_template("mt-bnch")


# --- FastChat ----------------------------------------------------------------------------------------------------

def _fastchat(name):
    for line in FASTCHAT.read_text().splitlines():
        row = json.loads(line)
        if row["name"] == name:
            return row
    raise KeyError(name)


@needs_fastchat
def test_fastchat_pair_v2_matches_str_format():
    row = _fastchat("pair-v2")
    t = load_template(f"{FASTCHAT}#pair-v2")
    assert t.name == "fastchat:pair-v2" and t.parser == "mt-bench"
    messages = t.render(SINGLE)
    assert messages[0] == {"role": "system", "content": row["system_prompt"]}
    assert messages[1]["content"] == row["prompt_template"].format(question="Name a prime number.", answer_a="7",
                                                                  answer_b="9 {second}")
    assert t.parse("... [[B]]") == "second"


@needs_fastchat
def test_fastchat_single_turn_template_shows_a_multi_turn_conversation_fully():
    user = _user(load_template(f"{FASTCHAT}#pair-v2").render(MULTI))
    assert user.startswith(_fastchat("pair-v2")["prompt_template"].split("{question}")[0] + MULTI.conversation())


@needs_fastchat
def test_fastchat_math_uses_the_reference():
    row = _fastchat("pair-math-v1")
    user = _user(load_template(f"{FASTCHAT}#pair-math-v1").render(SINGLE))
    assert user == row["prompt_template"].format(question="Name a prime number.", ref_answer_1="2, 3, 5 or 7",
                                                 answer_a="7", answer_b="9 {second}")


@needs_fastchat
def test_fastchat_multi_turn_fills_both_turns():
    row = _fastchat("pair-v2-multi-turn")
    user = _user(load_template(f"{FASTCHAT}#pair-v2-multi-turn").render(MULTI))
    assert user == row["prompt_template"].format(question_1="Hi!", answer_a_1="Hello.", question_2="Name a prime number.",
                                                 answer_a_2="Seven.", answer_b_1="Hello.", answer_b_2="Nine.")
    with pytest.raises(TemplateError, match="shows two turns"):
        load_template(f"{FASTCHAT}#pair-v2-multi-turn").render(SINGLE)
    with pytest.raises(TemplateError, match="reference answer for each of two turns"):
        load_template(f"{FASTCHAT}#pair-math-v1-multi-turn").render(MULTI)


@needs_fastchat
@pytest.mark.parametrize("entry,message", [("", "name an entry after '#'"),
                                           ("pair-v3", "did you mean 'pair-v2'")])
def test_fastchat_unsupported_or_missing_entries(entry, message):
    with pytest.raises(TemplateError, match=re.escape(message)):
        load_template(f"{FASTCHAT}#{entry}" if entry else str(FASTCHAT))


@needs_fastchat
def test_fastchat_multi_turn_shows_each_models_own_first_answer():
    # Turn 2 of MT-Bench: each model answered turn 1 itself, so A's conversation and B's differ in their turn-1 answer.
    b_history = MULTI.messages[:2] + (Message("assistant", "Hey there."), MULTI.messages[3])
    c = Comparison(MULTI.messages, "Seven.", "Nine.", turn=2, second_messages=b_history, references=("Hi.", "7"))
    user = _user(load_template(f"{FASTCHAT}#pair-math-v1-multi-turn").render(c))
    assert user == _fastchat("pair-math-v1-multi-turn")["prompt_template"].format(
        question_1="Hi!", ref_answer_1="Hi.", question_2="Name a prime number.", ref_answer_2="7",
        answer_a_1="Hello.", answer_a_2="Seven.", answer_b_1="Hey there.", answer_b_2="Nine.")


@needs_fastchat
def test_fastchat_single_answer_entries_grade_one_answer():
    from judges.base import Answer

    t = load_template(f"{FASTCHAT}#single-math-v1")
    assert (t.kind, t.parser) == ("single", "rating")
    messages = t.render(Answer(SINGLE.messages, "7", reference="2, 3, 5 or 7"))
    assert messages[1]["content"] == _fastchat("single-math-v1")["prompt_template"].format(
        question="Name a prime number.", ref_answer_1="2, 3, 5 or 7", answer="7")
    assert t.rate("Correct. Rating: [[9]]") == 9.0 and t.rate("no grade") is None
    multi = load_template(f"{FASTCHAT}#single-v1-multi-turn").render(Answer(MULTI.messages, "Seven.", turn=2))
    assert _user(multi) == _fastchat("single-v1-multi-turn")["prompt_template"].format(
        question_1="Hi!", answer_1="Hello.", question_2="Name a prime number.", answer_2="Seven.")


@needs_fastchat
def test_the_fastchat_file_alone_is_mt_benchs_set_chosen_by_kind_turn_and_category():
    from judges.templates import load_templates

    s = load_templates(str(FASTCHAT))
    assert re.fullmatch(r"fastchat:mt-bench@[0-9a-f]{12}", s.key)
    assert s.kinds() == {"pairwise", "single"} and s.turns("pairwise") == s.turns("single") == {1, 2}
    picked = {(kind, turn, cat): s.pick(kind, turn, cat).name for kind in ("pairwise", "single") for turn in (1, 2)
              for cat in ("writing", "math", "reasoning", "coding", None)}
    # FastChat's gen_judgment: math, reasoning and coding against the reference, the rest general.
    assert picked[("pairwise", 1, "writing")] == picked[("pairwise", 1, None)] == "fastchat:pair-v2"
    assert {picked[("pairwise", 1, c)] for c in ("math", "reasoning", "coding")} == {"fastchat:pair-math-v1"}
    assert picked[("pairwise", 2, "math")] == "fastchat:pair-math-v1-multi-turn"
    assert picked[("pairwise", 2, "writing")] == "fastchat:pair-v2-multi-turn"
    assert picked[("single", 1, "writing")] == "fastchat:single-v1"
    assert picked[("single", 1, "coding")] == "fastchat:single-math-v1"
    assert picked[("single", 2, "reasoning")] == "fastchat:single-math-v1-multi-turn"
    assert picked[("single", 2, None)] == "fastchat:single-v1-multi-turn"
    # One template is a set of one with the template's own key, and no turn 2.
    one = load_templates("mt-bench")
    assert one.key == load_template("mt-bench").key and one.turns("pairwise") == {1}
    with pytest.raises(TemplateError, match="no pairwise template for turn 2"):
        one.pick("pairwise", 2, None)


# --- AlpacaEval --------------------------------------------------------------------------------------------------

def _alpaca_peer(prompt_file: Path, c: Comparison) -> list[dict[str, str]]:
    text = prompt_file.read_text()
    for name, value in (("{instruction}", c.question), ("{output_1}", c.first), ("{output_2}", c.second)):
        text = text.replace(name, value)
    return [{"role": role, "content": body.strip("\n")}
            for role, body in re.findall(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>", text, re.S)]


@needs_alpaca
@pytest.mark.parametrize("name,prompt,parser,answer,verdict", [
    ("alpaca_eval_gpt4", "alpaca_eval_gpt4/alpaca_eval.txt", "alpaca-ranking",
     "[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]", "second"),
    ("chatgpt", "chatgpt/basic_prompt.txt", "regex", "Output (a)", "first"),
    ("alpaca_eval_clf_gpt4_turbo", "alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt", "model-identifier", "M", "second"),
    ("weighted_alpaca_eval_gpt4_turbo", "alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt", "model-identifier", "m",
     "first"),
])
def test_alpaca_eval_supported_annotators(name, prompt, parser, answer, verdict):
    t = load_template(str(ALPACA / name))
    assert t.name == f"alpaca_eval:{name}" and t.parser == parser
    one_turn = Comparison((Message("user", "Name a prime number."),), "7", "9")
    assert t.render(one_turn) == _alpaca_peer(ALPACA / prompt, one_turn)
    assert [m["role"] for m in t.render(one_turn)] == ["system", "user"]
    assert t.parse(answer) == verdict
    assert load_template(str(ALPACA / name / "configs.yaml")).key == t.key


@needs_alpaca
def test_alpaca_eval_chatgpt_regex_refuses_two_answers():
    t = load_template(str(ALPACA / "chatgpt"))
    assert t.parse("Output (b)") == "second"
    assert t.parse("Output (a)\nOutput (b)") == "unparsed"
    assert t.parse("I like (b)") == "unparsed"


@needs_alpaca
def test_alpaca_eval_function_calling_is_refused_with_the_reason():
    with pytest.raises(TemplateError, match="function-calling annotators are not supported"):
        load_template(str(ALPACA / "alpaca_eval_gpt4_turbo_fn"))


def test_alpaca_eval_unknown_parser_is_named(tmp_path):
    root = tmp_path / "annotators"
    (root / "mine").mkdir(parents=True)
    (root / "mine" / "p.txt").write_text("{instruction} {output_1} {output_2}")
    (root / "mine" / "configs.yaml").write_text(
        "mine:\n  prompt_template: mine/p.txt\n  fn_completion_parser: json_parser\n")
    with pytest.raises(TemplateError, match="parser 'json_parser'.*is not supported"):
        load_template(str(root / "mine"))

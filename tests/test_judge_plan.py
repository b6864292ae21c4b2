"""A bare `evalharness judge`: each choice made from the store by its rule, printed, and overridden by its flag."""

import json
import os

import duckdb
import pytest
from typer.testing import CliRunner

from evalharness import judge_plan
from evalharness.cli import app
from evalharness.store import Store

runner = CliRunner()
TRAIN = ["--limit", "8", "--max-steps", "1", "--batch-size", "2", "--max-length", "64", "--max-prompt-length", "32",
         "--no-progress"]


def _run(args, cwd):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, args, catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture(autouse=True)
def no_outside_judge(monkeypatch):
    """Each rule is tested on its own: no PairRM in the cache, no LLM endpoint, unless a test says so."""
    monkeypatch.setattr(judge_plan, "pairrm_offline", lambda: None)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def _train(cwd, *args):
    result = _run(["train", *TRAIN, *args], cwd)  # a flag given twice: the last one holds
    assert result.exit_code == 0, result.output
    return result


def _count(cwd, sql):
    with duckdb.connect(str(cwd / "evalharness.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def _hh(path, n):
    rows = [{"chosen": f"\n\nHuman: question {path.stem} {i}?\n\nAssistant: a kind answer {i}",
             "rejected": f"\n\nHuman: question {path.stem} {i}?\n\nAssistant: a rude answer {i}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_train_names_the_next_command_and_a_bare_judge_boards_the_run_against_its_model(tmp_path):
    trained = _train(tmp_path, "--loss", "dpo", "--model", "tiny-llama")
    assert trained.stdout.strip().splitlines()[-1].startswith("next: evalharness judge --models ")
    first = _run(["judge", "--limit", "2", "--no-progress"], tmp_path)
    assert first.exit_code == 0, first.output
    out = first.stdout
    assert "baseline: tiny-llama (its reference" in out
    assert "judge: oracle (the synthetic task's gold reward" in out and "prompts: synthetic (" in out
    assert out.index("judge: oracle") < out.index("oracle: 2 pairs")  # the choices come before the work
    assert "Leaderboard: judge oracle" in out and "tiny-llama (baseline)" in out
    assert "dpo-" in out.split("Leaderboard:")[1]
    again = _run(["judge", "--limit", "2", "--no-progress"], tmp_path)
    assert again.exit_code == 0 and "0 judged now" in again.stdout and "Leaderboard: judge oracle" in again.stdout
    assert _count(tmp_path, "SELECT count(*) FROM judgments") == 4  # the re-run added nothing


def test_the_newest_reward_model_of_the_store_is_the_judge_and_is_not_judged(tmp_path):
    _train(tmp_path, "--loss", "dpo")
    _train(tmp_path, "--loss", "bradley-terry")
    store = Store(str(tmp_path / "evalharness.duckdb"))
    rm = next(r for r in store.runs() if r["loss"] == "bradley-terry")
    (board,) = judge_plan.plan(store, limit=2)
    final = [c for c in store.checkpoints(rm["run_id"]) if c["is_final"]][-1]
    assert board.judge == f"reward-model:path={final['path']}"
    assert [label.split("-")[0] for label in board.labels] == ["dpo"]
    result = _run(["judge", "--limit", "2", "--no-progress", "--no-leaderboard"], tmp_path)
    assert result.exit_code == 0, result.output
    assert f"the newest bradley-terry run of this store, {rm['name']}" in result.stdout
    assert "reward-model:" in result.stdout.splitlines()[-1] and "2 pairs" in result.stdout
    flag = judge_plan.plan(store, judge="oracle", limit=2)  # an explicit flag overrides the rule
    assert flag[0].judge == "oracle" and "judge: oracle (given)" in flag[0].choices


def test_pairrm_then_the_oracle_then_an_llm_judge_then_exit_2(tmp_path, monkeypatch):
    store = Store(str(tmp_path / "none.duckdb"))
    synthetic, local = {"name": "synthetic"}, {"name": "jsonl", "path": "pairs.jsonl"}
    monkeypatch.setattr(judge_plan, "pairrm_offline", lambda: "/models/pairrm")
    assert judge_plan.choose_judge(store, synthetic)[0] == "pairrm:path=/models/pairrm"
    monkeypatch.setattr(judge_plan, "pairrm_offline", lambda: None)
    assert judge_plan.choose_judge(store, synthetic)[0] == "oracle"
    assert judge_plan.choose_judge(store, {"name": "synthetic-scored"})[0] == "oracle"
    assert judge_plan.held_out_prompts({"name": "synthetic-scored"})[0] == "synthetic"
    with pytest.raises(judge_plan.ConfigError, match="no judge for runs trained on 'jsonl'"):
        judge_plan.choose_judge(store, local)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    assert judge_plan.choose_judge(store, local)[0] == judge_plan.LLM_JUDGE


def test_no_judge_for_a_local_file_is_one_line_with_exit_2_and_writes_nothing(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"say {i}", "chosen": "yes", "rejected": "no"}) + "\n"
                            for i in range(40)))
    _train(tmp_path, "--loss", "dpo", "--data", "jsonl", "--path", str(data))
    result = _run(["judge", "--no-progress"], tmp_path)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: no judge for runs trained on 'jsonl'") and "\n" not in err
    assert "OPENAI_API_KEY" in err and "--judge" in err
    assert _count(tmp_path, "SELECT count(*) FROM generations") == 0
    (tmp_path / "empty").mkdir()
    empty = _run(["judge"], tmp_path / "empty")
    assert empty.exit_code == 2 and "no finished run" in empty.stderr
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_local_file_is_judged_on_its_eval_split_never_on_a_training_prompt(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"say {i}", "chosen": "yes", "rejected": "no"}) + "\n"
                            for i in range(200)))
    cfg = {"name": "jsonl", "path": str(data), "eval_fraction": 0.1}
    name, path, prompts, why = judge_plan.held_out_prompts(cfg)
    from evalharness.data.split import is_eval

    held = {f"say {i}" for i in range(200) if is_eval(_pair_id(data, i), 0.1)}
    assert name.startswith("held-out:jsonl@") and path is None and "eval split" in why
    assert {p.messages[0].content for p in prompts} == held and 0 < len(held) < 200
    assert judge_plan.held_out_prompts(cfg)[0] == name  # the set's name is its content hash: stable
    _train(tmp_path, "--loss", "dpo", "--data", "jsonl", "--path", str(data), "--set", "data.eval_fraction=0.1",
           "--limit", "200")
    result = _run(["judge", "--judge", "oracle", "--limit", "2", "--no-progress", "--no-leaderboard"], tmp_path)
    assert result.exit_code == 0, result.output
    sampled = _count(tmp_path, "SELECT list(DISTINCT p.messages) FROM generations g JOIN prompts p USING "
                               f"(prompt_id) WHERE p.prompt_set = '{name}'")
    assert len(sampled) == 2 and all(json.loads(m)[0]["content"] in held for m in sampled)


def _pair_id(path, i):
    from evalharness.data.loaders import DatasetSpec, load

    return load(DatasetSpec(name="jsonl", path=str(path))).examples[i].id


def test_hh_rlhf_runs_sample_the_test_split_beside_their_training_file(tmp_path):
    train, test = tmp_path / "mini-train.jsonl", tmp_path / "mini-test.jsonl"
    _hh(train, 16)
    _hh(test, 3)
    _train(tmp_path, "--loss", "dpo", "--data", "hh-rlhf", "--path", str(train))
    store = Store(str(tmp_path / "evalharness.duckdb"))
    (board,) = judge_plan.plan(store, judge="oracle", limit=2)
    assert (board.prompts, board.path) == ("hh-rlhf", str(test))
    result = _run(["judge", "--judge", "oracle", "--limit", "2", "--no-progress", "--no-leaderboard"], tmp_path)
    assert result.exit_code == 0, result.output
    assert "HH-RLHF's test split beside the training file" in result.stdout
    contents = _count(tmp_path, "SELECT list(DISTINCT p.messages) FROM generations g JOIN prompts p USING "
                                "(prompt_id) WHERE p.prompt_set = 'hh-rlhf'")
    assert len(contents) == 2 and all("mini-test" in json.loads(m)[0]["content"] for m in contents)


def test_stage_runs_get_a_board_against_the_run_they_started_from_and_dry_run_runs_nothing(tmp_path):
    _train(tmp_path, "--loss", "sft->dpo")
    _train(tmp_path, "--loss", "ipo", "--limit", "12")  # other training data, the same held-out prompts: one board
    result = _run(["judge", "--dry-run", "--limit", "2"], tmp_path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "group 1 of 2: the runs differ in baseline, so" in out and "group 2 of 2" in out and "group 3" not in out
    assert any(line.startswith("board: run-stage1-sft:1, ipo-") and line.endswith(" vs tiny-llama")
               for line in out.splitlines()), out
    assert "baseline: run-stage1-sft:1 (the run it was initialised from)" in out
    assert "at most 4 judge calls" in out and "at most 8 judge calls" in out and "cost: none" in out and "dry run: nothing sampled or judged" in out
    assert _count(tmp_path, "SELECT count(*) FROM generations") == 0
    paid = _run(["judge", "--dry-run", "--limit", "2", "--judge", "llm:model=m,price_in=2,price_out=10"], tmp_path)
    assert paid.exit_code == 0, paid.output
    assert "cost: at most 0.11 (8 calls of about 1500+1024 tokens)" in paid.stdout, paid.stdout
    assert _count(tmp_path, "SELECT count(*) FROM generations") == 0


def test_pairing_flags_without_judge_and_models_are_refused(tmp_path):
    result = _run(["judge", "--all-pairs"], tmp_path)
    assert result.exit_code == 2 and "need both --judge and --models" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_cost_of_a_paid_judge_is_bounded_from_its_prices():
    assert judge_plan.judge_cost("oracle", 10) == "none (a local judge)"
    assert judge_plan.judge_cost("llm:model=m,price_in=2,price_out=10", 100).startswith("at most 1.32 (100 calls")
    assert "price_in and price_out" in judge_plan.judge_cost("gpt-4o", 100)

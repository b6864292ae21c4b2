"""Honest exits: a command whose every unit of work failed exits non-zero with the reason."""

from typer.testing import CliRunner

from evalharness.cli import app
from tests.judges.loopback import error, loopback_fixture  # noqa: F401 - the fixture `loopback`
from tests.test_judging import seed_store

runner = CliRunner()


def _judge(store, loopback):
    return runner.invoke(app, ["judge", "--judge", "llm:model=loop,max_retries=0", "--base-url", loopback.url,
                               "--models", "a", "--baseline", "b", "--prompts", "set", "--no-progress",
                               "--no-leaderboard", "--store", str(store.path)], catch_exceptions=False)


def test_judge_exits_1_with_the_reason_when_every_call_failed(tmp_path, loopback, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    store = seed_store(tmp_path / "s.duckdb", {"a": ["x"] * 4, "b": ["yy"] * 4})
    loopback.behaviour = lambda req: error(401, "invalid api key")
    done = _judge(store, loopback)
    assert done.exit_code == 1, done.output
    assert "error: every one of the 8 judge calls failed; the first: " in done.output and "401" in done.output


def test_judge_exits_0_when_some_calls_gave_verdicts(tmp_path, loopback, monkeypatch):
    from tests.judges.loopback import completion

    monkeypatch.setenv("OPENAI_API_KEY", "sk-right")
    store = seed_store(tmp_path / "s.duckdb", {"a": ["x"] * 4, "b": ["yy"] * 4})
    loopback.script = [error(401, "flaky")]
    loopback.behaviour = lambda req: completion("[[A]]")
    done = _judge(store, loopback)
    assert done.exit_code == 0, done.output
    assert "1 failed" in done.output


def test_generate_with_a_backend_that_cannot_run_here_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    from evalharness.generation.vllm import VLLMGenerator

    monkeypatch.setattr(VLLMGenerator, "availability", classmethod(lambda cls: (False, "vLLM is not installed")))
    store = tmp_path / "s.duckdb"
    done = runner.invoke(app, ["generate", "-c", "tiny-llama", "--limit", "2", "--backend", "vllm", "--no-progress",
                               "--store", str(store)], catch_exceptions=False)
    assert done.exit_code == 2, done.output
    assert done.output.strip() == "error: backend 'vllm' can't run here: vLLM is not installed"
    assert not store.exists()


def test_a_k_sample_loss_on_pair_data_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    from evalharness.cli import app as cli

    monkeypatch.chdir(tmp_path)
    done = runner.invoke(cli, ["train", "--loss", "exo-rw", "--model", "tiny-llama", "--data", "synthetic",
                               "--max-steps", "1", "--no-progress", "--store", "s.duckdb"], catch_exceptions=False)
    assert done.exit_code == 2, done.output
    assert done.output.strip() == ("error: loss 'exo-rw' trains on K scored completions per prompt; dataset "
                                   "'synthetic' holds the other kind (one of K scored completions per prompt: "
                                   "--data synthetic-scored)")
    assert list(tmp_path.iterdir()) == []


def test_a_bare_judge_whose_every_call_failed_exits_1_without_a_board(tmp_path, loopback, monkeypatch):
    from types import SimpleNamespace

    import evalharness.judge_plan as judge_plan

    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    store = seed_store(tmp_path / "s.duckdb", {"a": ["x"] * 4, "b": ["yy"] * 4})
    loopback.behaviour = lambda req: error(401, "invalid api key")
    board = SimpleNamespace(judge="llm:model=loop,max_retries=0", models=["a"], baseline="b", prompts="set", path=None,
                            limit=None, prompt_list=None, baseline_label="b", lines=lambda samples: ["board: a vs b"])
    monkeypatch.setattr(judge_plan, "plan", lambda *args, **kwargs: [board])  # the planner's choice, fixed here
    done = runner.invoke(app, ["judge", "--base-url", loopback.url, "--no-progress", "--store", str(store.path)],
                         catch_exceptions=False)
    assert done.exit_code == 1, done.output
    assert "error: every one of the 8 judge calls failed; the first: " in done.output and "401" in done.output
    assert "Leaderboard" not in done.output


def test_a_run_that_diverges_exits_1_with_one_line_and_keeps_its_earlier_checkpoint(tmp_path):
    from tests.reliability.helpers import invoke

    # step 1's loss is that of the initial weights; its update at this rate leaves none finite for step 2
    done = invoke(["train", "--loss", "sft", "--limit", "8", "--batch-size", "2", "--max-length", "64",
                   "--max-prompt-length", "32", "--no-progress", "--store", "s.duckdb", "--save-every", "1",
                   "--max-steps", "3", "--lr", "1e30", "--name", "d"], tmp_path)
    assert done.exit_code == 1, done.output
    lines = [ln for ln in done.output.splitlines() if ln.startswith("error: ")]
    assert lines == [lines[0]] and "Traceback" not in done.output, done.output
    assert lines[0].startswith("error: training diverged at step 2: non-finite loss") and "learning rate" in lines[0]
    assert sorted(p.name for p in (tmp_path / "runs").rglob("checkpoint-*")) == ["checkpoint-000001"]

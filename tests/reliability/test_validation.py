"""Every value checked up front: each setting that used to crash late, train for minutes first, or pass silently is
refused when the config is bound, with one line on stderr, exit 2 and nothing written (issue #14, items 5-7 and 10).

The fuzzed counterpart over every command's numeric flags and every experiment field is test_fuzz_flags.py.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.judges.loopback import Loopback, mt_bench_judge, prefer_longer
from tests.reliability.helpers import cli_env, invoke, snapshot
from tests.reliability.test_kill_resume import seed_pairs

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared" / "data"
TABLES = ("prompts", "generations", "judgments", "runs", "checkpoints", "metrics", "train_metrics", "scores")


def tree(root: Path) -> list[str]:
    """Every file and directory under ``root``: a run directory left empty still counts as written."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def one_line_exit_2(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    return err


def refused(args: list[str], cwd: Path, *words: str, env: dict[str, str] | None = None) -> str:
    """Runs the command in ``cwd``; it must stop with one line naming ``words`` and leave ``cwd`` as it was (the
    store, if there is one, holds the same rows)."""
    before = tree(cwd)
    store = cwd / "s.duckdb"
    rows = snapshot(store, _tables(store)) if store.exists() else None
    err = one_line_exit_2(invoke(args + ["--store", "s.duckdb"], cwd, env), *words)
    assert tree(cwd) == before, err
    if rows is not None:
        assert snapshot(store, _tables(store)) == rows, err
    return err


def _tables(store: Path) -> list[str]:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    finally:
        con.close()
    return [t for t in TABLES if t in names]


@pytest.fixture
def judged(tmp_path):
    """A store with two sampled models on prompt set 'set' and the oracle's verdicts on them."""
    seed_pairs(tmp_path / "s.duckdb", 6)
    result = invoke(["judge", "--judge", "oracle", "--models", "a", "--baseline", "b", "--prompts", "set",
                     "--no-progress", "--no-leaderboard", "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 0, result.output
    return tmp_path


# ------------------------------------------------------------------------------------- 5. limits on input sizes


def _prompts(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    return path


def test_a_runaway_prompt_is_refused_by_the_default_limit_before_anything_is_written(tmp_path):
    # Over the default 1,000,000 characters: before, it was tokenised whole (a 50 MB line took 147 s and 10 GB).
    _prompts(tmp_path / "p.jsonl", ["Name a colour.", "x" * 1_000_001])
    refused(["generate", "-c", "tiny-llama", "--prompts", "jsonl", "--path", "p.jsonl", "--no-progress"], tmp_path,
            "p.jsonl:2 field 'prompt'", "1,000,001 characters", "EVALHARNESS_MAX_TEXT_CHARS")


def test_the_text_limit_names_row_and_field_and_is_raised_through_the_environment(tmp_path):
    from evalharness.data.loaders import DatasetSpec, load
    from evalharness.data.types import DataError

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}", "chosen": "good", "rejected": "bad " * (30 if i == 2
                                                                                                  else 1)}) + "\n"
                            for i in range(4)))
    spec = DatasetSpec("jsonl", path=str(data))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVALHARNESS_MAX_TEXT_CHARS", "100")
        with pytest.raises(DataError, match=r"pairs\.jsonl:3 field 'rejected': text of 120 characters is over"):
            load(spec)
        mp.setenv("EVALHARNESS_MAX_TEXT_CHARS", "120")
        assert len(load(spec).examples) == 4


def test_the_file_limit_counts_decompressed_bytes(tmp_path):
    from evalharness.data.loaders import DatasetSpec, load
    from evalharness.data.types import DataError

    rows = "".join(json.dumps({"prompt": f"Q{i}", "chosen": "good " * 50, "rejected": "bad"}) + "\n"
                   for i in range(40))  # about 11 kB that gzip packs into a few hundred bytes
    plain, packed = tmp_path / "d.jsonl", tmp_path / "d.jsonl.gz"
    plain.write_text(rows)
    packed.write_bytes(gzip.compress(rows.encode()))
    packed_json = tmp_path / "d.json.gz"
    packed_json.write_bytes(gzip.compress(json.dumps([json.loads(r) for r in rows.splitlines()]).encode()))
    assert packed.stat().st_size < 2000 < len(rows)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVALHARNESS_MAX_FILE_BYTES", "2000")
        with pytest.raises(DataError, match=r"d\.jsonl: file of [\d,]+ bytes is over the limit of 2,000 bytes"):
            load(DatasetSpec("jsonl", path=str(plain)))
        with pytest.raises(DataError, match=r"d\.jsonl\.gz:\d+: file holds more bytes \(decompressed\) than"):
            load(DatasetSpec("jsonl", path=str(packed)))
        with pytest.raises(DataError, match=r"d\.json\.gz: file holds more bytes \(decompressed\) than"):
            load(DatasetSpec("json", path=str(packed_json)))
        mp.setenv("EVALHARNESS_MAX_FILE_BYTES", str(len(rows) + 100))
        assert len(load(DatasetSpec("jsonl", path=str(packed))).examples) == 40


def test_a_limit_that_is_not_a_number_is_one_line(tmp_path):
    _prompts(tmp_path / "p.jsonl", ["Name a colour."])
    refused(["generate", "-c", "tiny-llama", "--prompts", "jsonl", "--path", "p.jsonl", "--no-progress"], tmp_path,
            "EVALHARNESS_MAX_FILE_BYTES='lots' is not a whole number", env={"EVALHARNESS_MAX_FILE_BYTES": "lots"})


@pytest.mark.skipif(not SHARED.is_dir(), reason="the third-party data in ../shared/data is absent here")
def test_the_default_limits_pass_real_data():
    from evalharness.data.loaders import DatasetSpec, load
    from evalharness.data.prompts import PromptSetSpec, load_prompts

    assert len(load(DatasetSpec("hh-rlhf", path=str(SHARED / "hh-rlhf" / "harmless-base-test.jsonl.gz"))).examples) > 2000
    for name, path in (("mt-bench", "mt-bench/question.jsonl"), ("vicuna-bench", "vicuna-bench/question.jsonl"),
                       ("alpaca-eval", "alpaca-eval/gpt4_1106_preview/model_outputs.json"),
                       ("arena-hard", "arena-hard-v0.1/question.jsonl")):
        assert len(load_prompts(PromptSetSpec(name, path=str(SHARED / path))).prompts) >= 80, name


# --------------------------------------------------------------- 6. experiment settings checked by --dry-run

EXPERIMENT = """
name = "checks"
[defaults]
model = "tiny-llama"
max_steps = 1
[[runs]]
name = "dpo"
loss = "dpo"
"""


@pytest.mark.parametrize("table, words", [
    ("[generate]\nmax_new_tokens = 0", ("[generate]", "max_new_tokens must be an integer >= 1")),
    ("[generate]\ntemperature = -2", ("[generate]", "temperature must be > 0")),
    ("[generate]\nn = -3", ("[generate]", "n (samples per prompt) must be an integer >= 1")),
    ("[generate]\nbatch_size = 0", ("[generate]", "batch_size")),
    ("[eval]\nbootstrap = -1", ("[eval]", "bootstrap")),
    ("[judge]\njudges = [\"llm:model=x,timeout=nan\"]", ("[judge]", "timeout must be a finite number > 0")),
    ("[judge]\nsamples = 0", ("[judge]", "samples must be an integer >= 1")),
    ("[leaderboard]\nformat = \"pdf\"", ("[leaderboard]", "format must be one of")),
])
def test_an_experiment_setting_out_of_range_fails_the_dry_run(tmp_path, table, words):
    (tmp_path / "e.toml").write_text(EXPERIMENT + table + "\n")
    refused(["run", "e.toml", "--dry-run"], tmp_path, "e.toml", *words)


def test_an_experiment_whose_runs_are_not_tables_is_one_line(tmp_path):
    (tmp_path / "e.toml").write_text('name = "x"\nruns = 5\n')
    refused(["run", "e.toml", "--dry-run"], tmp_path, "runs must be a list of tables")


def test_a_loss_parameter_set_to_infinity_in_an_experiment_fails_the_dry_run(tmp_path):
    (tmp_path / "e.toml").write_text(EXPERIMENT)
    refused(["run", "e.toml", "--dry-run", "--set", "runs.dpo.params.beta=inf"], tmp_path,
            "parameter 'beta' must be a finite number")


# ------------------------------------------------------------------------------- 7. flags: one line, exit 2

@pytest.mark.parametrize("flags, words", [
    (["--limit", "0"], ("limit must be an integer >= 1",)),
    (["--batch-size", "0"], ("batch_size must be an integer >= 1",)),
    (["--batch-size", "-1"], ("batch_size",)),
    (["--n", "0"], ("n (samples per prompt)",)),
    (["--n", "-1"], ("n (samples per prompt)",)),
    (["--temperature", "inf"], ("temperature must be > 0 and finite",)),
    (["--max-prompt-length", "0"], ("max_prompt_length must be an integer >= 1",)),
    (["--max-prompt-length", "-1"], ("max_prompt_length",)),
])
def test_generate_flags_out_of_range(tmp_path, flags, words):
    refused(["generate", "-c", "tiny-llama", "--max-new-tokens", "2", "--no-progress", *flags], tmp_path, *words)


@pytest.mark.parametrize("flags, words", [
    (["--max-prompt-length", "0"], ("max_prompt_length must be >= 1",)),
    (["--max-prompt-length", "-1"], ("max_prompt_length must be >= 1",)),
    (["--set", "beta=inf"], ("parameter 'beta' must be a finite number",)),
    (["--set", "beta=1e400"], ("parameter 'beta' must be a finite number",)),
    (["--loss", "1e400*dpo"], ("the weight must be a finite number",)),
    (["--seed", "-1"], ("seed must be in [0, 2**63 - 1]",)),
])
def test_train_flags_out_of_range_write_no_store_and_no_run_directory(tmp_path, flags, words):
    refused(["train", "--max-steps", "1", "--no-progress", *flags], tmp_path, *words)


def test_a_run_name_with_a_nul_reaches_the_name_check(tmp_path):
    refused(["train", "--max-steps", "1", "--name", "a\x00b", "--no-progress"], tmp_path, "run name")


def test_a_run_name_of_undecodable_bytes_reaches_the_name_check(tmp_path):
    """Through a real process: argv bytes that are not UTF-8 arrive as lone surrogates."""
    run = subprocess.run([sys.executable.encode(), b"-m", b"evalharness", b"train", b"--max-steps", b"1",
                          b"--name", b"caf\xe9", b"--no-progress", b"--store", b"s.duckdb"],
                         cwd=tmp_path, env=cli_env(), capture_output=True, timeout=300)
    err = run.stderr.decode("utf-8", "replace").strip()
    assert run.returncode == 2 and err.startswith("error: ") and "\n" not in err, err
    assert "run name" in err and tree(tmp_path) == []


def test_leaderboard_output_that_is_a_directory(judged):
    (judged / "boards").mkdir()
    refused(["leaderboard", "--output", "boards"], judged, "--output boards: is a directory")


def test_leaderboard_plot_that_is_a_file(judged):
    (judged / "plots.png").write_bytes(b"not a directory")
    refused(["leaderboard", "--plot", "plots.png"], judged, "--plot plots.png: is a file")


@pytest.mark.parametrize("spec, words", [
    ("llm:model=loop,timeout=nan", ("timeout must be a finite number > 0",)),
    ("llm:model=loop,backoff=-5", ("backoff must be a finite number >= 0",)),
    ("llm:model=loop,price_in=nan", ("price_in must be a finite number >= 0",)),
])
def test_llm_judge_settings_out_of_range(judged, spec, words):
    with Loopback(behaviour=mt_bench_judge(prefer_longer)) as server:
        refused(["judge", "--judge", spec, "--base-url", server.url, "--models", "a", "--baseline", "b",
                 "--prompts", "set", "--no-progress"], judged, *words)
        assert server.completions == []


def test_a_base_url_that_is_not_a_url(judged):
    # before: every verdict failed with "missing an 'http://' or 'https://' protocol", and the command exited 0
    refused(["judge", "--judge", "llm:model=loop", "--base-url", "not a url", "--models", "a", "--baseline", "b",
             "--prompts", "set", "--no-progress"], judged, "base_url 'not a url' is not a URL")


def test_judge_limit_below_one(judged):
    refused(["judge", "--judge", "oracle", "--models", "a", "--baseline", "b", "--prompts", "set", "--limit", "-1",
             "--no-progress"], judged, "--limit must be an integer >= 1")


# -------------------------------------------------------------------------------- 10. credentials in a URL

@pytest.mark.parametrize("where", ["flag", "spec", "environment"])
def test_credentials_in_a_base_url_are_refused_and_never_sent_or_shown(judged, where):
    with Loopback(behaviour=mt_bench_judge(prefer_longer)) as server:
        url = server.url.replace("http://", "http://alice:hunter2-secret@")
        spec, flags, env = "llm:model=loop", ["--base-url", url], {"OPENAI_API_KEY": "sk-x"}
        if where == "spec":
            spec, flags = f"llm:model=loop,base_url={url}", []
        elif where == "environment":
            flags, env = [], {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": url}
        err = refused(["judge", "--judge", spec, *flags, "--models", "a", "--baseline", "b", "--prompts", "set",
                       "--no-progress"], judged, "carries credentials", "OPENAI_API_KEY", env=env)
        assert "hunter2" not in err
        assert server.requests == []  # not even a request with the Bearer key replaced by Basic auth

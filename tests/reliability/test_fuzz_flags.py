"""Fuzzed values for every command's numeric flags and every experiment field: each run exits 0 or exits 2 with one
line, never a traceback, and an exit 2 writes nothing (no store created or changed, no run directory).

Commands stop before heavy work: values that pass every check reach the command's first write or model load, which
is replaced by a stub that raises ``Reached`` (nothing may be written before it either); ``run`` and ``quickstart``
go through ``--dry-run``, and ``leaderboard`` runs for real on a small store. A value typer itself cannot parse as the
flag's type (``--n x``) is typer's usage error, exit 2, which names the flag; every other refusal is our one line.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.reliability.helpers import invoke, snapshot
from tests.reliability.test_kill_resume import seed_pairs

FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
TABLES = ("prompts", "generations", "judgments", "runs", "checkpoints", "metrics", "train_metrics", "scores")

# what a person types: counts that pass (half the draws, so that whole commands get through), signed ones, the float
# edge cases, overflow, and text
FLAG_VALUES = st.one_of(st.integers(1, 3).map(str), st.integers(-3, 0).map(str), st.sampled_from(
    ["1e309", "1e400", "nan", "inf", "-inf", "1e-300", "0.5", "1.5", "99999999999999999999", "x", ""]))


class Reached(Exception):
    """Every check passed: the command got to its first write or model load."""


def _reached(*args, **kwargs):
    raise Reached


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _rows(store: Path):
    if not store.exists():
        return None
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    finally:
        con.close()
    return snapshot(store, [t for t in TABLES if t in names])


def check(args: list[str], cwd: Path, stops: tuple[str, ...] = ()) -> str:
    """Run ``evalharness ARGS`` in ``cwd`` with ``stops`` stubbed; assert the contract; 'accepted' or 'refused'."""
    before, rows = tree(cwd), _rows(cwd / "s.duckdb")
    with pytest.MonkeyPatch.context() as mp:
        for target in stops:
            mp.setattr(target, _reached)
        try:
            result = invoke(args + ["--store", "s.duckdb"], cwd)
        except Reached:
            result = None
    event("accepted" if result is None or result.exit_code == 0 else "refused")
    if result is None or result.exit_code == 0:
        if result is None:  # nothing may be written before the first write
            assert tree(cwd) == before and _rows(cwd / "s.duckdb") == rows, args
        return "accepted"
    assert result.exit_code == 2, (args, result.output)
    err = result.stderr.strip()
    if err.startswith("Usage:"):
        assert "Invalid value for" in err and "Traceback" not in err, (args, err)
    else:
        assert err.startswith("error: ") and "\n" not in err, (args, err)
    assert tree(cwd) == before, (args, err)
    assert _rows(cwd / "s.duckdb") == rows, (args, err)
    return "refused"


def _flags(data, names: list[str], values=FLAG_VALUES) -> list[str]:
    chosen = data.draw(st.dictionaries(st.sampled_from(names), values, min_size=1, max_size=3))
    return [x for k, v in chosen.items() for x in (k, v)]


# ------------------------------------------------------------------------------------------------ commands

TRAIN_FLAGS = ["--max-steps", "--batch-size", "--grad-accum", "--lr", "--max-length", "--max-prompt-length",
               "--warmup-steps", "--logit-temperature", "--limit", "--seed", "--lora-r", "--save-every"]


@FUZZ
@given(st.data())
def test_train_flags(data):
    args = ["train", "--no-progress", *_flags(data, TRAIN_FLAGS)]
    if data.draw(st.booleans()):
        args += ["--set", "beta=" + data.draw(FLAG_VALUES)]
    with tempfile.TemporaryDirectory() as d:
        check(args, Path(d), stops=("trainers.loop.train",))


GENERATE_FLAGS = ["--n", "--temperature", "--top-p", "--max-new-tokens", "--seed", "--max-prompt-length",
                  "--batch-size", "--limit"]


@settings(FUZZ, max_examples=30)
@given(st.data())
def test_generate_flags(data):
    """For real: the tiny settings first, the drawn flags after them (the last of a flag wins), so whatever passes the
    checks samples at most 3 prompts x 3 samples x 3 tokens."""
    tiny = ["--limit", "2", "--n", "1", "--max-new-tokens", "2", "--batch-size", "2", "--backend", "hf"]
    with tempfile.TemporaryDirectory() as d:
        check(["generate", "-c", "tiny-llama", "--no-progress", *tiny, *_flags(data, GENERATE_FLAGS)], Path(d))


EVAL_FLAGS = ["--limit", "--eval-fraction", "--batch-size", "--max-length", "--max-prompt-length", "--bootstrap",
              "--seed"]


@FUZZ
@given(st.data())
def test_eval_flags(data):
    """For real, on at most 40 pairs of the synthetic task and 3 bootstrap resamples (a drawn --limit of 1e20 is
    refused: the synthetic task is generated in memory, and it once grew the process past 15 GB)."""
    tiny = ["--limit", "40", "--eval-fraction", "0.5", "--bootstrap", "3", "--max-length", "48",
            "--max-prompt-length", "24"]
    with tempfile.TemporaryDirectory() as d:
        check(["eval", "-c", "tiny-llama", "--no-progress", *tiny, *_flags(data, EVAL_FLAGS)], Path(d))


@FUZZ
@given(st.data())
def test_diagnose_flags(data):
    with tempfile.TemporaryDirectory() as d:
        check(["diagnose", "information", "-c", "tiny-llama", *_flags(data, ["--limit", "--batch-size"])], Path(d),
              stops=("evalharness.diagnose.run",))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Two sampled models on prompt set 'set', judged once by the oracle (the leaderboard needs verdicts)."""
    root = tmp_path_factory.mktemp("seeded")
    seed_pairs(root / "s.duckdb", 6)
    result = invoke(["judge", "--judge", "oracle", "--models", "a", "--baseline", "b", "--prompts", "set",
                     "--no-progress", "--no-leaderboard", "--store", "s.duckdb"], root)
    assert result.exit_code == 0, result.output
    return root / "s.duckdb"


def _judging() -> str:
    """The module of the judging runner (it moved from judges/ to evalharness/)."""
    import importlib.util

    return "evalharness.judging" if importlib.util.find_spec("evalharness.judging") else "judges.runner"


LLM_SETTINGS = ["timeout", "backoff", "max_backoff", "max_retries", "price_in", "price_out", "temperature",
                "max_tokens", "requests_per_minute", "top_logprobs", "seed", "concurrency"]


@FUZZ
@given(st.data())
def test_judge_flags_and_llm_judge_settings(seeded, data):
    spec = "llm:model=loop" + "".join(
        f",{k}={v}" for k, v in data.draw(st.dictionaries(st.sampled_from(LLM_SETTINGS), FLAG_VALUES,
                                                          max_size=3)).items())
    args = ["judge", "--judge", spec, "--base-url", "http://127.0.0.1:9/v1", "--models", "a", "--baseline", "b",
            "--prompts", "set", "--no-progress", "--no-leaderboard",
            *_flags(data, ["--samples", "--limit", "--concurrency"])]
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(seeded, Path(d) / "s.duckdb")
        check(args, Path(d), stops=(f"{_judging()}._judge_tasks",))


@FUZZ
@given(st.data())
def test_leaderboard_flags(seeded, data):
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(seeded, Path(d) / "s.duckdb")
        check(["leaderboard", *_flags(data, ["--bootstrap", "--seed"], st.one_of(
            st.integers(-2, 4).map(str), st.sampled_from(["99999999999999999999", "1e3", "nan", "x"])))], Path(d))


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(FLAG_VALUES)
def test_quickstart_max_steps(value):
    with tempfile.TemporaryDirectory() as d:
        check(["quickstart", "--dry-run", "--model", "tiny-llama", "--max-steps", value], Path(d))


# ---------------------------------------------------------------------------------------- experiment fields

FIELDS = {
    "defaults": ["max_steps", "batch_size", "grad_accum", "lr", "weight_decay", "warmup_steps", "max_grad_norm",
                 "seed", "max_length", "max_prompt_length", "logit_temperature", "lora_r", "lora_alpha",
                 "lora_dropout", "save_every", "log_every", "data.limit", "data.eval_fraction", "params.beta"],
    "generate": ["limit", "n", "temperature", "top_p", "max_new_tokens", "max_prompt_length", "seed", "batch_size",
                 "backend", "base"],
    "eval": ["batch_size", "bootstrap", "seed", "data.limit", "data.eval_fraction"],
    "judge": ["samples", "judges"],
    "pairs": ["limit", "n", "temperature", "max_new_tokens", "max_prompt_length", "seed", "kind"],
    "leaderboard": ["format", "judge"],
    "top": ["runs", "pairs", "generate", "judge", "name"],
}
TOML_VALUES = st.one_of(st.integers(1, 3), st.integers(1, 3), st.integers(-3, 0), st.sampled_from([2**63 - 1, -(2**63), 0.5, 1e-300, 1e300]),
                        st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                        st.sampled_from(["", "x", "all", "hf", "auto", "scored", "md", "oracle",
                                         "llm:model=x,timeout=nan", "llm:model=x,base_url=not a url"]),
                        st.lists(st.integers(-1, 2), max_size=2),
                        st.fixed_dictionaries({"spec": st.sampled_from(["oracle", "nope"]),
                                               "limit": st.integers(-1, 2)}))


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, (int, str)):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"


def _experiment(chosen: dict[tuple[str, str], object]) -> str:
    tables: dict[str, dict[str, object]] = {s: {} for s in FIELDS}
    for (section, key), value in chosen.items():
        tables[section][key] = value
    top = "".join(f"{k} = {_toml(v)}\n" for k, v in tables.pop("top").items())
    text = top or 'name = "fuzz"\n'
    text += "[defaults]\nmodel = \"tiny-llama\"\nmax_steps = 1\n"
    text += "".join(f"{k} = {_toml(v)}\n" for k, v in tables.pop("defaults").items() if k != "max_steps")
    if "runs" not in top:
        text += '[[runs]]\nname = "dpo"\nloss = "dpo"\n'
    pairs = tables.pop("pairs")
    if pairs and "pairs" not in top:
        text += '[[pairs]]\nname = "onpolicy"\npolicy = "dpo"\n' + "".join(f"{k} = {_toml(v)}\n"
                                                                         for k, v in pairs.items())
    for section, values in tables.items():
        if values and section not in top:
            text += f"[{section}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
    return text


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([(s, k) for s, keys in FIELDS.items() for k in keys]), TOML_VALUES,
                       min_size=1, max_size=4))
def test_experiment_fields(chosen):
    text = _experiment(chosen)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "e.toml").write_text(text)
        check(["run", "e.toml", "--dry-run"], Path(d))

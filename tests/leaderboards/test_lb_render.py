"""Renderers: CSV/JSON round trips, Markdown/HTML escaping, and the HTML page in a real headless browser."""

import json
import os
import re
import shutil
import struct
import subprocess

import pytest
from lbstore import add_metric, make_store

from leaderboards.board import FIELDS, TEXT_FIELDS, LeaderboardConfig, build_leaderboard, leaderboard_table
from leaderboards.query import LeaderboardError
from leaderboards.render import read_csv, render

EVIL = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned2\'"> | *bold* [x](y)'
SPEC = [("p1", "m1", "base", "first", "second"), ("p2", "m1", "base", "tie", "tie"),
        ("p1", "m2", "base", "second", "first"), ("p2", "m2", "base", "first", "second")]


@pytest.fixture
def board(tmp_path):
    store = make_store(tmp_path / "s.duckdb", SPEC, labels={"m1": EVIL, "zeta": "z"})
    add_metric(store, "m1", "perplexity", 7.25, ci=(6.5, 8.0))
    return build_leaderboard(store.path, LeaderboardConfig(n_resamples=50))


def test_csv_and_json_round_trip(board):
    table = leaderboard_table(board)
    from_json = json.loads(render(table, "json"))
    from_csv = read_csv(render(table, "csv"), TEXT_FIELDS)
    assert [list(r) for r in from_json["rows"]] == [FIELDS] * len(board.rows)
    assert from_json["rows"] == board.rows  # every value, at full precision
    assert from_csv == board.rows
    assert from_json["meta"]["judge"] == "j" and from_json["notes"] == board.meta["notes"]
    m1 = next(r for r in from_csv if r["model"] == "m1")
    assert m1["label"] == EVIL and m1["perplexity"] == 7.25 and m1["baseline"] is False


def test_markdown_escapes_labels(board):
    md = render(leaderboard_table(board), "md")
    assert "<script>" not in md and "<img" not in md
    assert "&lt;script&gt;" in md and r"\| \*bold\* \[x\](y)" in md
    # Every table line has the same number of unescaped cell separators.
    lines = [line for line in md.splitlines() if line.startswith("|")]
    counts = {line.replace("\\|", "").count("|") for line in lines}
    assert len(counts) == 1


def test_terminal_table_aligns_columns(board):
    text = render(leaderboard_table(board), "table").splitlines()
    header, rule = text[1], text[2]
    assert header.split()[:3] == ["#", "model", "n"]
    assert len(rule) >= len(header.rstrip())
    assert "perplexity" in header and "7.25 [6.5, 8]" in "\n".join(text)
    with pytest.raises(LeaderboardError, match="--format must be one of"):
        render(leaderboard_table(board), "xml")


def test_html_escapes_and_is_self_contained(board):
    page = render(leaderboard_table(board), "html")
    assert page.count("<script>") == 1  # only the page's own script
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;&lt;img" in page
    for external in ("http://", "https://", "<link", "src="):
        assert external not in page.replace("src=x", "")  # the escaped label holds "src=x" as text only
    assert "Content-Security-Policy" in page


def _chromium():
    return os.environ.get("EVALHARNESS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.skipif(_chromium() is None, reason="no chromium here: apt-get install chromium (or set EVALHARNESS_CHROMIUM)")
def test_html_in_headless_chromium(board, tmp_path):
    page = tmp_path / "board.html"
    page.write_text(render(leaderboard_table(board), "html"), encoding="utf-8")
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--dump-dom", f"{page.as_uri()}#sort=-win_rate"], capture_output=True, text=True,
                         timeout=90).stdout
    assert 'data-sortable="ready"' in dom  # the page's script ran
    assert re.search(r"<title>Leaderboard: judge j@1 vs base[^<]*</title>", dom)  # the injected scripts did not (the evaluation key follows the baseline)
    assert "pwned" not in dom.split("<body>")[0] and dom.count("<script") == 1 and "<img" not in dom
    # #sort=-win_rate sorted the rows: m1 (75%) before m2 (50%), the baseline (no win rate) last.
    body_rows = dom.split("<tbody>")[1].split("</tbody>")[0].split("<tr")[1:]
    firsts = [row.split('data-v="')[2].split('"')[0] for row in body_rows]
    assert firsts[0].startswith("&lt;script") and firsts[1:] == ["m2", "base"]
    assert 'aria-sort="descending"' in dom

    shot = tmp_path / "board.png"
    subprocess.run(base + [f"--screenshot={shot}", "--window-size=1280,720", "--hide-scrollbars", page.as_uri()],
                   capture_output=True, timeout=90)
    assert shot.exists() and shot.stat().st_size > 5000
    assert _png_size(shot) == (1280, 720)
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    dark = (pixels.mean(axis=2) < 0.5).mean()
    assert 0.002 < dark < 0.5  # text was drawn: neither a blank page nor an all-dark one

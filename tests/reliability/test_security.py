"""Secrets never leave the process; model code never runs unasked; model text is escaped; a broken plugin breaks
only itself."""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from evalharness import plugins
from evalharness.hashing import content_hash
from evalharness.store import Store, bulk_insert, now
from tests.judges.loopback import Loopback, completion, error, mt_bench_judge, prefer_longer
from tests.reliability.helpers import cli, cli_env, invoke
from tests.reliability.test_kill_resume import seed_pairs

MARKER = "sk-SECRET-evalharness-7f3a9c1e5b"


# ------------------------------------------------------------------------------------------------------- secrets


def _echoing_endpoint():
    """Answers most requests; some echo the Authorization header back, as careless servers and proxies do."""
    judge = mt_bench_judge(prefer_longer)

    def behaviour(req):
        key = req.headers.get("authorization", "")
        n = int(re.search(r"review of item (\d+)", req.prompt).group(1))
        if n % 5 == 1:
            return error(401, f"Incorrect API key provided: {key}")  # not retried: a failed verdict with the reason
        if n % 5 == 2:
            return error(500, f"upstream failed for request with {key}")
        if n % 5 == 3:
            return completion(f"You sent {key}. [[A]]")  # the answer itself quotes the key
        return judge(req)

    return behaviour


def _grep_store(path: Path, marker: str) -> list[str]:
    """Every text cell of every table that holds the marker (the file's bytes may be compressed)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        hits = []
        cols = con.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall()
        for table, column in cols:
            n = con.execute(f'SELECT count(*) FROM {table} WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                            [f"%{marker}%"]).fetchone()[0]
            if n:
                hits.append(f"{table}.{column}")
        return hits
    finally:
        con.close()


def _grep_files(root: Path, marker: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]


def test_the_api_key_reaches_no_store_log_export_or_error_message(tmp_path):
    seed_pairs(tmp_path / "s.duckdb", 10)
    env = cli_env({"OPENAI_API_KEY": MARKER, "OPENAI_LOG": "debug"})  # the openai client's own logging, at its loudest
    outputs = []
    with Loopback(behaviour=_echoing_endpoint()) as server:
        judged = cli(["judge", "--judge", "llm:model=loop,backoff=0.01,max_retries=1", "--base-url", server.url,
                      "--models", "a", "--baseline", "b", "--prompts", "set", "--no-progress", "--store", "s.duckdb"],
                     tmp_path, env)
        outputs += [judged.stdout, judged.stderr]
        assert judged.returncode == 0, judged.stderr
        assert "Sending HTTP Request" in judged.stderr  # the debug log is really on
        assert "Incorrect API key provided: Bearer [redacted]" in judged.stderr  # the echo, scrubbed in the log line
        # the key was really sent, so the test would see it if it leaked
        assert all(r.headers["authorization"] == f"Bearer {MARKER}" for r in server.completions)
        # a key given where it does not belong is refused without repeating it
        bad = cli(["judge", "--judge", f"llm:model=loop,api_key={MARKER}", "--base-url", server.url, "--models", "a",
                   "--baseline", "b", "--prompts", "set", "--store", "s.duckdb"], tmp_path, env)
        outputs += [bad.stdout, bad.stderr]
        assert bad.returncode == 2 and "has no argument 'api_key'" in bad.stderr
    with Store(str(tmp_path / "s.duckdb")).connect() as con:
        verdicts = dict(con.execute("SELECT verdict, count(*) FROM judgments GROUP BY 1").fetchall())
        errors = [e for (e,) in con.execute("SELECT error FROM judgments WHERE error IS NOT NULL").fetchall()]
    # items 1 and 6 (401) and 2 and 7 (500, retried once) fail in both orders; 3 and 8 answer quoting the key
    assert verdicts["failed"] == 8 and len(errors) == 8 and all("[redacted]" in e for e in errors), errors
    for fmt in ("html", "md", "csv", "json"):
        board = invoke(["leaderboard", "--format", fmt, "--output", f"board.{fmt}", "--plot", "plots", "--bootstrap",
                        "100", "--store", "s.duckdb"], tmp_path)
        outputs += [board.stdout, board.stderr]
        assert board.exit_code == 0, board.output
    report = invoke(["judges", "report", "--format", "md", "--store", "s.duckdb"], tmp_path)
    outputs.append(report.stdout)
    assert report.exit_code == 0, report.output

    assert [o for o in outputs if MARKER in o] == []
    assert _grep_store(tmp_path / "s.duckdb", MARKER) == []
    assert _grep_files(tmp_path, MARKER) == []
    assert (tmp_path / "board.html").exists() and (tmp_path / "board.md").exists()


# ----------------------------------------------------------------------------------------------- remote code

EVIL = '''
from pathlib import Path
Path(__file__).with_name("EXECUTED").write_text("model code ran")
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
class EvilConfig(LlamaConfig):
    model_type = "evil-llama"
class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
class EvilTokenizer(PreTrainedTokenizerFast):
    pass
'''


def _checkpoint_with_code(tmp_path: Path, model_type: str | None) -> Path:
    """The tiny model's directory plus an ``auto_map`` to code of its own that writes EXECUTED when imported."""
    from evalharness.models import resolve_model

    ckpt = tmp_path / f"remote-{model_type or 'llama'}"
    shutil.copytree(resolve_model("tiny-llama"), ckpt)
    (ckpt / "evil.py").write_text(EVIL)
    config = json.loads((ckpt / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    if model_type:
        config["model_type"] = model_type
    (ckpt / "config.json").write_text(json.dumps(config))
    tok = json.loads((ckpt / "tokenizer_config.json").read_text())
    tok["auto_map"] = {"AutoTokenizer": [None, "evil.EvilTokenizer"]}
    (ckpt / "tokenizer_config.json").write_text(json.dumps(tok))
    return ckpt


@pytest.mark.parametrize("model_type", [None, "evil-llama"])
def test_code_shipped_with_a_checkpoint_never_runs_unless_asked(tmp_path, model_type):
    ckpt = _checkpoint_with_code(tmp_path, model_type)
    args = ["generate", "-c", str(ckpt), "--limit", "1", "--n", "1", "--max-new-tokens", "2", "--backend", "hf",
            "--no-progress", "--store", "s.duckdb"]
    run = cli(args, tmp_path, cli_env({"HF_MODULES_CACHE": str(tmp_path / "modules")}), stdin=subprocess_devnull())
    assert not (ckpt / "EXECUTED").exists()
    assert not any((tmp_path / "modules").rglob("evil.py"))  # not even copied where transformers imports from
    if model_type is None:  # a known architecture: loaded with the library's own code
        assert run.returncode == 0, run.stderr
    else:  # only the checkpoint's code could load it: refused
        assert run.returncode != 0 and "trust_remote_code" in run.stderr, run.stderr


def subprocess_devnull():
    import subprocess

    return subprocess.DEVNULL  # no terminal: transformers must not wait for a "run this code?" answer


# -------------------------------------------------------------------------------------------------- escaping

PAYLOAD = "<script>alert('xss')</script><img src=x onerror=alert(1)>"


def test_model_names_and_texts_are_escaped_in_html_and_markdown(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    with store.transaction() as con:
        prompts, gens = [], []
        for i in range(4):
            pid = f"p{i}"
            prompts.append((pid, "set", pid, json.dumps([{"role": "user", "content": f"{PAYLOAD} {i}"}]), None, "{}"))
            for label, text in ((f"evil{PAYLOAD}", f"{PAYLOAD} a long answer {i}"), ("base", "short")):
                gens.append((content_hash([label, pid]), f"ck-{label}", label, None, pid, 1, 0, "{}", 1.0, "hf", None,
                             None, text, None, 3, "stop", False, None, None, None, None, now()))
        bulk_insert(con, "INSERT INTO prompts", prompts)
        bulk_insert(con, "INSERT INTO generations", gens)
    with Loopback(behaviour=mt_bench_judge(prefer_longer, explanation=f"I liked {PAYLOAD}")) as server:
        judged = invoke(["judge", "--judge", "llm:model=loop", "--base-url", server.url, "--models",
                         f"evil{PAYLOAD}", "--baseline", "base", "--prompts", "set", "--no-progress",
                         "--no-leaderboard", "--store", "s.duckdb"], tmp_path, {"OPENAI_API_KEY": "sk-x"})
    assert judged.exit_code == 0, judged.output
    for fmt in ("html", "md"):
        result = invoke(["leaderboard", "--format", fmt, "--output", f"board.{fmt}", "--bootstrap", "0", "--store",
                         "s.duckdb"], tmp_path)
        assert result.exit_code == 0, result.output
        page = (tmp_path / f"board.{fmt}").read_text()
        assert "evil" in page and "&lt;script&gt;alert(" in page  # the label is shown, as text
        assert "<script>alert(" not in page and "<img" not in page
    report = invoke(["judges", "report", "--format", "md", "--store", "s.duckdb"], tmp_path)
    assert report.exit_code == 0 and "<script>alert(" not in report.stdout and "<img" not in report.stdout


# -------------------------------------------------------------------------------------------------- plugins

BROKEN_IMPORT = "import this_module_does_not_exist_anywhere\n"
BROKEN_SYNTAX = "def register(registry)\n    pass\n"
LAZY_BROKEN = '''
def register(registry):
    registry.add("lazy-broken", "lazy_broken_target:Judge", "a judge whose module fails to import when used")
'''
LAZY_TARGET = "raise RuntimeError('the judge module is broken')\n"


@pytest.fixture
def broken_plugins(tmp_path, monkeypatch):
    """Installed distributions (dist-info with entry points) whose code fails in different ways, on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    dists = {"import_broken": ("losses", BROKEN_IMPORT), "syntax_broken": ("datasets", BROKEN_SYNTAX),
             "lazy_broken": ("judges", LAZY_BROKEN)}
    for name, (group, code) in dists.items():
        (site / f"{name}.py").write_text(textwrap.dedent(code))
        info = site / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[evalharness.{group}]\n{name} = {name}:register\n")
    (site / "lazy_broken_target.py").write_text(LAZY_TARGET)
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    yield site
    plugins.reset()
    for name in [*dists, "lazy_broken_target"]:
        sys.modules.pop(name, None)


def test_a_broken_plugin_is_named_and_skipped_and_the_cli_keeps_working(tmp_path, broken_plugins):
    losses = invoke(["ls", "losses"], tmp_path)
    assert losses.exit_code == 0 and "dpo " in losses.stdout
    assert "plugin 'import_broken'" in losses.stderr and "this_module_does_not_exist_anywhere" in losses.stderr
    datasets = invoke(["ls", "datasets"], tmp_path)
    assert datasets.exit_code == 0 and "synthetic" in datasets.stdout
    assert "plugin 'syntax_broken'" in datasets.stderr and "SyntaxError" in datasets.stderr
    judges = invoke(["ls", "judges"], tmp_path)
    assert judges.exit_code == 0 and "lazy-broken" in judges.stdout and "oracle" in judges.stdout
    # using the broken entry is one line naming the plugin; the built-ins next to it still work
    seed_pairs(tmp_path / "s.duckdb", 2)
    use = invoke(["judge", "--judge", "lazy-broken", "--models", "a", "--baseline", "b", "--prompts", "set",
                  "--store", "s.duckdb"], tmp_path)
    assert use.exit_code == 2
    err = use.stderr.strip().splitlines()[-1]
    assert err.startswith("error: 'lazy-broken' from plugin 'lazy_broken' failed to load") and "is broken" in err
    fine = invoke(["judge", "--judge", "oracle", "--models", "a", "--baseline", "b", "--prompts", "set",
                   "--no-progress", "--no-leaderboard", "--store", "s.duckdb"], tmp_path)
    assert fine.exit_code == 0 and "oracle: 2 pairs, 4 judgments" in fine.stdout, fine.output
    assert invoke(["--help"], tmp_path).exit_code == 0


def test_a_plugin_that_exits_while_registering_does_not_end_the_cli(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "exiting_plugin.py").write_text("import sys\n\ndef register(registry):\n    sys.exit('plugin gave up')\n")
    info = site / "exiting_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exiting_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[evalharness.losses]\nexiting_plugin = exiting_plugin:register\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    try:
        listed = invoke(["ls", "losses"], tmp_path)
    finally:
        plugins.reset()
        sys.modules.pop("exiting_plugin", None)
    assert listed.exit_code == 0 and "dpo " in listed.stdout
    assert "plugin 'exiting_plugin'" in listed.stderr

"""A judge plugin written outside the project, installed as a real distribution with an entry point (README example)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.test_judging import seed_store

PLUGIN = '''
"""A judge that prefers the shorter response: the README's plugin example."""


class ShorterJudge:
    id = "shorter"
    version = "1"
    template = ""

    def __init__(self, margin: int = 0):
        self.margin = margin
        self.id = f"shorter@{margin}"

    def compare(self, items):
        from judges.base import Verdict

        out = []
        for c in items:
            d = len(c.second) - len(c.first)
            out.append(Verdict("tie" if abs(d) <= self.margin else "first" if d > 0 else "second"))
        return out


def register(registry):
    registry.add("shorter", ShorterJudge, "prefers the shorter response")
'''

BROKEN = '''
def register(registry):
    raise RuntimeError("this plugin is broken")
'''


def _install(root: Path) -> None:
    """What `pip install` of a package with `[project.entry-points."evalharness.judges"]` leaves on sys.path."""
    (root / "shorter_judge.py").write_text(textwrap.dedent(PLUGIN))
    (root / "broken_judge.py").write_text(textwrap.dedent(BROKEN))
    for name, module in (("shorter_judge", "shorter_judge"), ("broken_judge", "broken_judge")):
        info = root / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[evalharness.judges]\n{name} = {module}:register\n")


def _cli(args, root: Path, cwd: Path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(Path(__file__).resolve().parents[2])]))
    return subprocess.run([sys.executable, "-m", "evalharness", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_an_installed_judge_plugin_lists_judges_and_a_broken_one_is_isolated(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    _install(root)
    seed_store(tmp_path / "s.duckdb", {"a": ["aaaa", "bb", "c", "ddd"], "b": ["x", "yyy", "zz", "w"]})
    listing = _cli(["ls", "judges"], root, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "shorter" in listing.stdout and "[shorter_judge]" in listing.stdout and "oracle" in listing.stdout
    assert "plugin 'broken_judge'" in listing.stderr and "this plugin is broken" in listing.stderr
    run = _cli(["judge", "--judge", "shorter:margin=0", "--models", "a", "--baseline", "b", "--prompts", "set",
                "--store", str(tmp_path / "s.duckdb"), "--no-progress", "--no-leaderboard"], root, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "shorter@0: 4 pairs, 8 judgments" in run.stdout
    import duckdb

    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    got = con.execute("SELECT prompt_id, swapped, verdict FROM judgments ORDER BY prompt_id, swapped").fetchall()
    con.close()
    # a is shorter than b on p3 ("c" vs "zz") and p2 ("bb" vs "yyy"); longer on p1 and p4.
    assert got == [("p1", False, "second"), ("p1", True, "first"), ("p2", False, "first"), ("p2", True, "second"),
                   ("p3", False, "first"), ("p3", True, "second"), ("p4", False, "second"), ("p4", True, "first")]
    bad = _cli(["judge", "--judge", "shorter:margn=1", "--models", "a", "--baseline", "b", "--prompts", "set",
                "--store", str(tmp_path / "s.duckdb")], root, tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == "error: judge 'shorter' has no argument 'margn' (did you mean 'margin'?)"

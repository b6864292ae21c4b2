"""Helpers for the reliability tests: the CLI as a real subprocess, SIGKILL at observable points, store snapshots.

Subprocesses run ``sys.executable -m evalharness`` with the repository on PYTHONPATH and the session's model cache.
``invoke`` runs the same CLI in this process (no interpreter start-up): the uninterrupted runs that killed ones are
compared with use it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli_env(extra: dict[str, str] | None = None, pythonpath: Iterable[str] = ()) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), str(REPO)])
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.pop("EVALHARNESS_STORE", None)
    env.update(extra or {})
    return env


def cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
        **kwargs) -> subprocess.CompletedProcess:
    """Run ``evalharness ARGS`` to completion in ``cwd``; stdout and stderr as text."""
    return subprocess.run([sys.executable, "-m", "evalharness", *args], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def invoke(args: list[str], cwd: Path, env: dict[str, str] | None = None):
    """The CLI in this process (typer's runner) with ``cwd`` as working directory and ``env`` added to os.environ."""
    from typer.testing import CliRunner

    from evalharness.cli import app

    old_cwd, old_env = os.getcwd(), dict(os.environ)
    os.chdir(cwd)
    os.environ.update(env or {})
    try:
        return CliRunner().invoke(app, args, catch_exceptions=False)
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


class Started:
    """A CLI subprocess whose output goes to files (a pipe nobody reads could fill up and stall it)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None, tag: str = "run"):
        self.out, self.err = cwd / f".{tag}.stdout", cwd / f".{tag}.stderr"
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.proc = subprocess.Popen([sys.executable, "-m", "evalharness", *args], cwd=cwd,
                                         env=env or cli_env(), stdout=o, stderr=e)

    def kill_when(self, ready: Callable[[], bool], what: str, timeout: float = 240, poll: float = 0.01) -> float:
        """SIGKILL the process as soon as ``ready()`` holds; fails if it ends first. Returns seconds waited."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if ready():
                os.kill(self.proc.pid, signal.SIGKILL)
                assert self.proc.wait(30) == -signal.SIGKILL, "the process had already ended"
                self.cleanup()
                return time.monotonic() - start
            if self.proc.poll() is not None:
                raise AssertionError(f"the process ended (exit {self.proc.returncode}) before {what}:\n"
                                     f"{self.err.read_text()[-3000:]}")
            time.sleep(poll)
        self.proc.kill()
        raise AssertionError(f"timed out waiting for {what}")

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        code = self.proc.wait(timeout)
        out, err = self.out.read_text(), self.err.read_text()
        self.cleanup()
        return code, out, err

    def cleanup(self) -> None:
        for f in (self.out, self.err):
            f.unlink(missing_ok=True)


def query(store: Path, sql: str, params: list | None = None):
    """Rows of a read-only query, or None while a writer holds the file (the caller polls again)."""
    import duckdb

    if not store.exists():
        return None
    try:
        con = duckdb.connect(str(store), read_only=True)
    except (duckdb.IOException, duckdb.CatalogException):
        return None
    try:
        return con.execute(sql, params or []).fetchall()
    except duckdb.CatalogException:  # the table is not there yet (migrations not run)
        return None
    finally:
        con.close()


def count(store: Path, sql: str) -> int:
    rows = query(store, sql)
    return rows[0][0] if rows else -1


# Columns that differ between two correct runs: clocks, and the code version (the git commit, which moves if someone
# commits while a test runs).
VOLATILE = {"created_at", "updated_at", "applied_at", "latency", "code_version"}


def snapshot(store: Path, tables: Iterable[str], drop: Iterable[str] = (), root: Path | None = None
             ) -> dict[str, list[tuple]]:
    """Every row of each table, sorted, without the columns that legitimately differ between runs (timestamps,
    latencies and ``drop``): two stores built by the same commands must give equal snapshots. ``root``: a directory
    whose absolute path is written as ``<root>`` in every text (runs write absolute checkpoint paths)."""
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        out = {}
        for table in tables:
            cols = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [table]).fetchall()]
            keep = [c for c in cols if c not in VOLATILE and c not in set(drop)]
            rows = con.execute(f"SELECT {', '.join(keep)} FROM {table}").fetchall()
            out[table] = sorted((tuple(_plain(v, root) for v in r) for r in rows), key=repr)
        return out
    finally:
        con.close()


def _plain(v, root: Path | None = None):
    if isinstance(v, list):
        return tuple(_plain(x, root) for x in v)
    if isinstance(v, dict):
        v = json.dumps(v, sort_keys=True)
    if isinstance(v, str) and root is not None:
        return v.replace(str(root.resolve()), "<root>")
    return v


def assert_same_rows(got: list[tuple], want: list[tuple], table: str, rel: float = 0.0, abs_: float = 0.0) -> None:
    """Equal row sets; floats (and float arrays) may differ by ``abs_ + rel*|want|`` (batching moves the last bits)."""
    assert len(got) == len(want), f"{table}: {len(got)} rows, uninterrupted run has {len(want)}"
    for g, w in zip(got, want):
        if not _close(g, w, rel, abs_):
            cells = [f"column {i}: {a!r:.300} != {b!r:.300}" for i, (a, b) in enumerate(zip(g, w))
                     if not _close(a, b, rel, abs_)]
            raise AssertionError(f"{table}: row {g[0]!r} differs from the uninterrupted run's\n  " + "\n  ".join(cells))


def _close(a, b, rel, abs_) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= abs_ + rel * abs(b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y, rel, abs_) for x, y in zip(a, b))
    return a == b


def weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(checkpoint.glob("*.safetensors")):
        out.update(load_file(str(f)))
    assert out, f"no safetensors in {checkpoint}"
    return out


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".run"))

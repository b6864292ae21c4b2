"""Build the stores that earlier releases wrote, with those releases' own code, for the migration tests.

    .venv/bin/python -m tests.reliability.old_stores      # rewrites tests/reliability/data/store-v*.duckdb.gz

For each earlier schema version, the last commit that had it is exported from git into a temporary directory and its
own ``evalharness`` command line trains a tiny run (and, where that version could, samples it and judges it) into a
fresh store. The stores are committed gzipped; the tests migrate copies of them with the current code. Re-run this only
to add a version: a new migration makes the current schema the next "earlier" one.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"

# schema version -> (the last commit with that schema, the commands that version had)
VERSIONS = {
    2: ("66b33bd", ["train"]),
    3: ("4c0f018", ["train", "generate"]),
    4: ("3ff67ee", ["train", "generate", "judge"]),
    5: ("fb207b3", ["train", "generate", "judge"]),
    6: ("7933855", ["train", "generate", "judge"]),
    8: ("81b8f36", ["train", "generate", "judge"]),
    9: ("424cf7d", ["train", "generate", "judge"]),
}
# Schemas no commit had on their own: 1 (the first commit with a store had 2) and 7 (7 and 8 came in one commit).
UNRELEASED = {1, 7}

CONFIG = """
loss = "dpo"
model = "tiny-llama"
name = "old"
[data]
name = "synthetic"
limit = 8
[train]
max_steps = 2
batch_size = 2
lr = 1e-3
max_length = 64
max_prompt_length = 32
save_every = 1
"""

COMMANDS = {
    "train": ["train", "run.toml", "--no-progress"],
    "generate": ["generate", "-c", "old", "-c", "tiny-llama", "--limit", "3", "--n", "2", "--max-new-tokens", "4",
                 "--backend", "hf", "--no-progress"],
    "judge": ["judge", "--judge", "oracle", "--models", "old", "--baseline", "tiny-llama", "--samples", "2",
              "--no-progress", "--no-leaderboard"],
}


def build(version: int, dest: Path) -> None:
    commit, commands = VERSIONS[version]
    with tempfile.TemporaryDirectory() as tmp:
        tree, work = Path(tmp) / "tree", Path(tmp) / "work"
        tree.mkdir(), work.mkdir()
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        (work / "run.toml").write_text(CONFIG)
        env = dict(os.environ, PYTHONPATH=str(tree), EVALHARNESS_CACHE=str(Path(tmp) / "cache"), HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1")
        for name in commands:
            args = [sys.executable, "-m", "evalharness", *COMMANDS[name], "--store", "old.duckdb"]
            done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"schema {version} ({commit}) {name} failed:\n{done.stderr[-3000:]}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(work / "old.duckdb", "rb") as src, gzip.open(dest, "wb", compresslevel=9) as out:
            shutil.copyfileobj(src, out)


def fixture(version: int) -> Path:
    return DATA / f"store-v{version}.duckdb.gz"


if __name__ == "__main__":
    for v in VERSIONS:
        build(v, fixture(v))
        print(f"schema {v}: {fixture(v)} ({fixture(v).stat().st_size} bytes)")

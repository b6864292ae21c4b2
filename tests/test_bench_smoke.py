"""The benches that need no third-party peer still run against today's code, at their smallest sizes: a bench that
rots silently (a store schema that grew, a function that moved) reports nothing the next time BENCHMARKS.md is
re-run. Their figures are not checked here; their own correctness checks are."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_leaderboard_1m_at_a_few_thousand_orders_gives_the_peers_cis():
    out = _bench("leaderboard_1m.py", "--orders", "4000", "--models", "4", "--prompts", "200", "--resamples", "20",
                 "--peer-resamples", "5", "--repeats", "1")
    assert "store: 4,000 orders, 4 models, 200 prompts" in out
    assert re.search(r"max CI difference 0\.0e\+00", out), out


def test_prefix_sharing_on_the_tiny_model_packs_and_agrees():
    out = _bench("prefix_sharing.py", "--model", "tiny-llama", "--prompt", "16", "--responses", "9,3", "--repeats", "1")
    assert "rows 8 x 9 = 72, packed" in out, out
    deltas = [float(x) for x in re.findall(r"vs concatenated ([0-9.e+-]+)", out)]
    assert len(deltas) == 3 and max(deltas) < 1e-4, out

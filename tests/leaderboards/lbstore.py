"""Build a store with generations and judgments straight from a compact spec, for the leaderboard tests.

A pair is ``(prompt, A, B, shown_a_first, shown_b_first)``: the raw verdicts of the two orders as stored, in positions
as shown ("first" / "second" / "tie" / "unparsed" / "failed"), or None for an order that was not stored. A verdict
may be ``(verdict, probability)`` with the judge's P(first shown preferred).

    make_store(tmp_path / "s.duckdb", [("p1", "m1", "base", "first", "second")])

means: on prompt p1, m1 shown first won ("first") and m1 shown second won ("second"): both orders prefer m1.
"""

from __future__ import annotations

import json
from pathlib import Path

from evalharness.hashing import content_hash
from evalharness.store import Store, bulk_insert, now


def make_store(path: Path | str, pairs, judge: str = "j", version: str = "1", template: str = "",
               texts: dict[tuple[str, str], str] | None = None, labels: dict[str, str] | None = None,
               prompt_set: str = "set", store: Store | None = None, turn: int = 1,
               sampling: dict[str, str] | None = None) -> Store:
    """``sampling``: a model's stored sampling JSON (default ``{}``, none recorded); ``turn``: of every pair."""
    store = store or Store(str(path))
    texts = dict(texts or {})
    labels = dict(labels or {})
    prompts = sorted({p[0] for p in pairs})
    models = sorted({m for p in pairs for m in (p[1], p[2])})
    prompt_rows = [(pid, prompt_set, pid, json.dumps([{"role": "user", "content": f"question {pid}"}]), None, "{}")
                   for pid in prompts]
    gen_rows, gen_id = [], {}
    for m in models:
        for pid in prompts:
            text = texts.get((m, pid), f"answer of {m} to {pid}")
            setting = (sampling or {}).get(m, "{}")
            gid = content_hash(["test-generation", m, pid, text] + ([turn, setting] if (turn, setting) != (1, "{}")
                                                                    else []))
            gen_id[(m, pid)] = gid
            gen_rows.append((gid, m, labels.get(m, m), None, pid, turn, 0, setting, 1.0, "test", None, None, text,
                             None, len(text.split()), "stop", False, None, None, None, None, now()))
    rows = []
    for pid, a, b, *orders in pairs:
        pair_id = content_hash(["pair", judge, version, template, pid, turn, 0, a, b])
        for swapped, spec in zip((False, True), orders):
            if spec is None:
                continue
            verdict, prob = spec if isinstance(spec, tuple) else (spec, None)
            first, second = (gen_id[(b, pid)], gen_id[(a, pid)]) if swapped else (gen_id[(a, pid)], gen_id[(b, pid)])
            cache = content_hash(["judgment", judge, version, template, pid, first, second, len(rows)])
            rows.append((content_hash(["row", cache]), cache, judge, version, template, pid, turn, 0, pair_id, a, b,
                         swapped, first, second, verdict, prob, verdict, None, None, None, None, None, now(), None))
    with store.transaction() as con:
        if prompt_rows:
            bulk_insert(con, "INSERT OR IGNORE INTO prompts", prompt_rows)
            bulk_insert(con, "INSERT OR IGNORE INTO generations", gen_rows)
        if rows:
            bulk_insert(con, "INSERT INTO judgments", rows)
    return store


def add_metric(store: Store, checkpoint: str, metric: str, value: float, ci: tuple[float, float] | None = None,
               n: int = 10, label: str | None = None, dataset: str | None = None,
               settings: dict | None = None) -> None:
    """A metric row; KL by default of make_store's samples (prompt set "set", sampling not recorded), the others of
    one held-out set "heldout"."""
    lo, hi = ci or (None, None)
    dataset = dataset or ("set@samples" if metric == "kl" else "heldout")
    with store.transaction() as con:
        con.execute("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, 'test', ?)",
                    [content_hash(["metric", checkpoint, metric, dataset, settings]), checkpoint, label or checkpoint,
                     dataset, metric, value, n, lo, hi, json.dumps(settings or {}), now()])


def add_run(store: Store, checkpoint: str, run_id: str, name: str, step: int, loss: str, params: dict,
            base_model: str = "tiny-llama") -> None:
    store.upsert_run(dict(run_id=run_id, name=name, loss=loss, params=params, base_model=base_model, init_from=None,
                          data={}, config={}, code_version="0.1.0+gtest", status="finished", out_dir="runs/x",
                          final_step=step))
    store.add_checkpoint(checkpoint, run_id, step, f"runs/{name}/step-{step}", True)


def add_seeded_runs(store: Store, sides=(("a", "dpo"), ("b", "ipo")), seeds: int = 3, step: int = 10) -> None:
    """Runs ``<loss>-s<k>`` (config equal apart from seed) whose checkpoints are make_store's models ``<side><k>``."""
    for side, loss in sides:
        for s in range(seeds):
            run, name = f"run-{side}{s}", f"{loss}-s{s}"
            store.upsert_run(dict(run_id=run, name=name, loss=loss, params={}, base_model="tiny-llama",
                                  init_from=None, data={}, code_version="0.1.0+gtest", status="finished",
                                  out_dir=f"runs/{name}", final_step=step,
                                  config={"loss": loss, "lr": 1e-6, "seed": s, "name": name, "out": f"runs/{name}"}))
            store.add_checkpoint(f"{side}{s}", run, step, f"runs/{name}/step-{step}", True)

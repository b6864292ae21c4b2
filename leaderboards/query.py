"""SQL over the store for leaderboards: the judged pairs with their combined verdicts, and what stands beside them.

Nothing here judges anything: combined verdicts come from the raw verdicts stored per order. A *judge variant* is a
(judge id, version, template) triple; pairs of different variants are never pooled (``pair_id`` leaves the version
out, so the version is part of every selection here).
"""

from __future__ import annotations

import contextlib
import difflib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalharness.config import ConfigError
from evalharness.store import Store, StoreError

METRIC_NAMES = ("perplexity", "agility", "kl", "margin", "accuracy")
NEEDED_TABLES = ("judgments", "generations", "prompts", "metrics", "runs", "checkpoints")


class LeaderboardError(ConfigError):
    """A leaderboard request the store can't answer: no such judge or baseline, an ambiguous judge, no pairs."""


@contextlib.contextmanager
def read_store(path: str | Path) -> Iterator[Any]:
    """A read-only connection to an existing store that has the judging tables (schema 4 or later)."""
    store = Store(str(path))
    with store.connect(read_only=True) as con:
        have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        missing = [t for t in NEEDED_TABLES if t not in have]
        if missing:
            raise StoreError(f"{path}: the store predates judging (no {', '.join(missing)} table); "
                             "run any writing command (e.g. `evalharness runs`) to upgrade it")
        yield con


# ---------------------------------------------------------------------------------------------------- judges


@dataclass(frozen=True)
class JudgeVariant:
    judge: str
    version: str
    template: str
    orders: int = 0  # stored orders (judgment rows)

    @property
    def name(self) -> str:
        return f"{self.judge}@{self.version}" + (f" [{self.template}]" if self.template else "")


def judge_variants(con, prompt_set: str | None = None) -> list[JudgeVariant]:
    """Every (judge, version, template) in the store with its number of stored orders, by judge id."""
    where, params = _prompt_filter(prompt_set)
    rows = con.execute(
        f"SELECT j.judge, j.judge_version, j.template, count(*) FROM judgments j {where} "
        "GROUP BY ALL ORDER BY 1, 2, 3", params).fetchall()
    return [JudgeVariant(*r) for r in rows]


def select_judge(variants: list[JudgeVariant], spec: str | None, prompt_set: str | None = None,
                 template: str | None = None) -> JudgeVariant:
    """The variant named by ``spec`` (``JUDGE`` or ``JUDGE@VERSION``) and ``template`` (its name, ``NAME@HASH`` or a
    prefix of that); with neither, the only one in the store."""
    if not variants:
        raise LeaderboardError("no judgments in the store" + (f" on prompt set {prompt_set!r}" if prompt_set else "")
                               + " (run `evalharness judge` or `evalharness import` first)")
    if template is not None:
        templates = sorted({v.template for v in variants if v.template})
        variants = [v for v in variants if template_matches(v.template, template)]
        if not variants:
            raise LeaderboardError(f"no judgments with template {template!r} (templates here: "
                                   f"{', '.join(templates) or 'none'})")
    if spec is None:
        if len(variants) == 1:
            return variants[0]
        flag = "--template" if len({(v.judge, v.version) for v in variants}) == 1 else "--judge"
        raise LeaderboardError(f"the store holds {len(variants)} judges; choose one with {flag}: "
                               + ", ".join(v.name for v in variants))
    matches = [v for v in variants if v.judge == spec]
    if not matches and "@" in spec:
        judge, _, version = spec.rpartition("@")
        matches = [v for v in variants if v.judge == judge and v.version == version]
    if not matches:
        names = sorted({v.judge for v in variants})
        close = difflib.get_close_matches(spec, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (judges here: {', '.join(names)})"
        raise LeaderboardError(f"no judgments by judge {spec!r}{hint}")
    if len(matches) > 1:
        if len({v.version for v in matches}) == 1:
            raise LeaderboardError(f"judge {spec!r} used {len(matches)} templates here; choose one with --template: "
                                   + ", ".join(v.template or "(none)" for v in matches))
        raise LeaderboardError(f"judge {spec!r} has {len(matches)} versions or templates here; name one as "
                               "JUDGE@VERSION (and --template): " + ", ".join(v.name for v in matches))
    return matches[0]


def template_matches(stored: str, spec: str) -> bool:
    """``--template`` names a stored template (``NAME@HASH``) by itself, its name or a prefix."""
    return bool(stored) and (stored == spec or stored.split("@")[0] == spec or stored.startswith(spec))


def _prompt_filter(prompt_set: str | None, alias: str = "j") -> tuple[str, list[Any]]:
    if prompt_set is None:
        return "", []
    return (f"JOIN prompts p ON p.prompt_id = {alias}.prompt_id WHERE p.prompt_set = ?", [prompt_set])


@dataclass(frozen=True)
class EvalKey:
    """The evaluation a board shows, beside its judge variant (``leaderboards.selection`` chooses it): one prompt set,
    its turns, and one sampling setting (``evalharness.evalkey`` canonical form). ``raw`` are the stored ``sampling``
    texts of that setting and ``unrecorded`` those of texts with none (reference answers, imported outputs), which
    meet samples of any setting. ``mixed_pairs``: pairs of the same judge, set and turns whose two sides were
    sampled at different settings (left out)."""

    prompt_set: str
    turns: tuple[int, ...]
    sampling: str
    raw: tuple[str, ...] = ()
    unrecorded: tuple[str, ...] = ("",)
    mixed_pairs: int = 0


SIDE_SAMPLING = "coalesce(CAST({g}.sampling AS VARCHAR), '')"
KEYED_JUDGMENTS = ("FROM judgments j LEFT JOIN prompts p ON p.prompt_id = j.prompt_id "
                   "LEFT JOIN generations ga ON ga.generation_id = j.generation_first "
                   "LEFT JOIN generations gb ON gb.generation_id = j.generation_second")


def _selection(variant: JudgeVariant, prompt_set: str | None, key: EvalKey | None = None) -> tuple[str, list[Any]]:
    """SQL (a subquery over ``judgments``) and its parameters for one variant's orders on one prompt set; with
    ``key``, only the orders of that evaluation (its set, turns and sampling setting)."""
    cond = "j.judge = ? AND j.judge_version = ? AND j.template = ?"
    ident = [variant.judge, variant.version, variant.template]
    if key is None:
        where, params = _prompt_filter(prompt_set)
        sql = f"SELECT j.* FROM judgments j {where} {'AND' if where else 'WHERE'} {cond}"
        return sql, params + ident
    ka, kb = SIDE_SAMPLING.format(g="ga"), SIDE_SAMPLING.format(g="gb")
    allowed = list(key.raw) + list(key.unrecorded)
    sql = (f"SELECT j.* {KEYED_JUDGMENTS} WHERE {cond} AND coalesce(p.prompt_set, '?') = ? "
           f"AND list_contains(?, j.turn) AND list_contains(?, {ka}) AND list_contains(?, {kb})")
    params = ident + [key.prompt_set, list(key.turns), allowed, allowed]
    if key.sampling:  # two texts of no recorded setting are not samples of this one
        sql += f" AND NOT (list_contains(?, {ka}) AND list_contains(?, {kb}))"
        params += [list(key.unrecorded), list(key.unrecorded)]
    return sql, params


# Per order, A's score: 1 A preferred, 0 B preferred, 0.5 tie, NULL unparsed/failed; and P(A) from the probability.
ORDER_SCORES = """
    SELECT pair_id, prompt_id, model_a, model_b, swapped, verdict, generation_first, generation_second,
           CASE WHEN swapped THEN generation_second ELSE generation_first END AS gen_a,
           CASE WHEN swapped THEN generation_first ELSE generation_second END AS gen_b,
           CASE verdict WHEN 'tie' THEN 0.5
                        WHEN 'first' THEN CASE WHEN swapped THEN 0.0 ELSE 1.0 END
                        WHEN 'second' THEN CASE WHEN swapped THEN 1.0 ELSE 0.0 END END AS a_score,
           CASE WHEN swapped THEN 1.0 - probability ELSE probability END AS p_a
    FROM ({selection})
"""

# The combining rule of LOSSES.md "Pairwise judging", in SQL: all valid orders for A -> +1, all for B -> -1, else 0.
COMBINED_PAIRS = """
    WITH o AS ({orders}),
    pairs AS (
        SELECT pair_id, any_value(prompt_id) AS prompt_id, any_value(model_a) AS model_a,
               any_value(model_b) AS model_b, any_value(gen_a) AS gen_a, any_value(gen_b) AS gen_b,
               count(a_score) AS n_valid, count(*) - count(a_score) AS n_invalid,
               count(*) FILTER (WHERE a_score = 1.0) AS n_a, count(*) FILTER (WHERE a_score = 0.0) AS n_b,
               avg(CASE WHEN a_score IS NOT NULL THEN coalesce(p_a, a_score) END) AS p_a, avg(a_score) AS a_mean
        FROM o GROUP BY pair_id
    )
    SELECT *, CASE WHEN n_valid = 0 THEN NULL WHEN n_a = n_valid THEN 1 WHEN n_b = n_valid THEN -1 ELSE 0 END
              AS verdict
    FROM pairs
"""


@dataclass
class PairTable:
    """One judge variant's pairs, orders combined (n pairs with at least one valid order).

    ``models`` maps index -> checkpoint key; ``a``, ``b`` (n,) model indices; ``prompt`` (n,) prompt index in
    ``0..n_prompts-1``; ``verdict`` (n,) +1/0/-1 from A's side; ``p_a`` (n,) mean P(A preferred) (NaN: none);
    ``len_a``, ``len_b`` (n,) response lengths in characters (NaN when the generation row is missing).
    ``invalid_orders`` counts unparsed/failed orders left out, ``unusable_pairs`` pairs with no valid order (dropped),
    ``single_order_pairs`` pairs decided by one order. Per pair, for the order rules (``stats.apply_order_rule``):
    ``n_valid``, ``n_invalid``, ``n_a``, ``n_b`` (orders valid, unparsed/failed, for A, for B) and ``a_mean`` the
    mean valid order score; ``verdict`` is the default ``agree`` rule's. ``n_strong_a`` / ``n_strong_b``: the orders
    that preferred A / B strongly (Arena-Hard's ``[[A>>B]]``), for ``stats.arena_hard_games``."""

    models: list[str]
    n_prompts: int
    a: np.ndarray
    b: np.ndarray
    prompt: np.ndarray
    verdict: np.ndarray
    p_a: np.ndarray
    len_a: np.ndarray
    len_b: np.ndarray
    orders: int = 0
    invalid_orders: int = 0
    unusable_pairs: int = 0
    single_order_pairs: int = 0
    prompt_ids: list[str] = field(default_factory=list)  # index -> prompt id
    n_valid: np.ndarray | None = None
    n_invalid: np.ndarray | None = None
    n_a: np.ndarray | None = None
    n_b: np.ndarray | None = None
    a_mean: np.ndarray | None = None
    n_strong_a: np.ndarray | None = None
    n_strong_b: np.ndarray | None = None


def combined_pairs_sql(variant: JudgeVariant, prompt_set: str | None,
                       key: EvalKey | None = None) -> tuple[str, list[Any]]:
    selection, params = _selection(variant, prompt_set, key)
    return COMBINED_PAIRS.format(orders=ORDER_SCORES.format(selection=selection)), params


def load_pairs(con, variant: JudgeVariant, prompt_set: str | None = None, key: EvalKey | None = None,
               only: Sequence[str] | None = None) -> PairTable:
    """The variant's combined pairs as arrays (of one evaluation, with ``key``; with ``only``, the pairs between
    those models alone); model and prompt indices are assigned in SQL (dense ranks)."""
    pairs_sql, params = combined_pairs_sql(variant, prompt_set, key)
    if only is not None:
        pairs_sql = (f"SELECT * FROM ({pairs_sql}) WHERE list_contains(?, model_a) AND list_contains(?, model_b)")
        params = [*params, list(only), list(only)]
    con.execute(f"CREATE OR REPLACE TEMP TABLE lb_pairs AS {pairs_sql}", params)
    orders, invalid, unusable, single = con.execute(
        "SELECT coalesce(sum(n_valid + n_invalid), 0), coalesce(sum(n_invalid), 0), "
        "count(*) FILTER (WHERE n_valid = 0), count(*) FILTER (WHERE n_valid = 1) FROM lb_pairs").fetchone()
    models = [m for (m,) in con.execute(
        "SELECT model_a FROM lb_pairs WHERE n_valid > 0 UNION SELECT model_b FROM lb_pairs WHERE n_valid > 0 "
        "ORDER BY 1").fetchall()]
    levels, level_params = _strong_orders(con, variant, prompt_set, key)
    data = con.execute(f"""
        WITH m AS (SELECT unnest(?) AS key, generate_subscripts(?, 1) - 1 AS i),
        pr AS (SELECT prompt_id, dense_rank() OVER (ORDER BY prompt_id) - 1 AS i
               FROM (SELECT DISTINCT prompt_id FROM lb_pairs WHERE n_valid > 0)),
        used AS (SELECT gen_a AS g FROM lb_pairs UNION SELECT gen_b FROM lb_pairs),
        glen AS (SELECT generation_id, length(text) AS len FROM generations JOIN used ON g = generation_id)
        SELECT ma.i AS a, mb.i AS b, pr.i AS prompt, x.verdict, x.p_a, ga.len AS len_a, gb.len AS len_b,
               x.n_valid, x.n_invalid, x.n_a, x.n_b, x.a_mean, {levels[0]}
        FROM lb_pairs x JOIN m ma ON ma.key = x.model_a JOIN m mb ON mb.key = x.model_b
        JOIN pr USING (prompt_id)
        LEFT JOIN glen ga ON ga.generation_id = x.gen_a LEFT JOIN glen gb ON gb.generation_id = x.gen_b {levels[1]}
        WHERE x.n_valid > 0
    """, [models, models] + level_params).fetchnumpy()
    prompt_ids = [p for (p,) in con.execute(
        "SELECT DISTINCT prompt_id FROM lb_pairs WHERE n_valid > 0 ORDER BY 1").fetchall()]
    con.execute("DROP TABLE lb_pairs")
    as_float = lambda k: np.ma.filled(np.ma.asarray(data[k]).astype(np.float64), np.nan)  # noqa: E731
    as_int = lambda k: np.asarray(data[k], dtype=np.int64)  # noqa: E731
    return PairTable(models, len(prompt_ids), as_int("a"), as_int("b"), as_int("prompt"),
                     np.asarray(data["verdict"], dtype=np.int8), as_float("p_a"), as_float("len_a"),
                     as_float("len_b"), int(orders), int(invalid), int(unusable), int(single), prompt_ids,
                     as_int("n_valid"), as_int("n_invalid"), as_int("n_a"), as_int("n_b"), as_float("a_mean"),
                     as_int("n_strong_a"), as_int("n_strong_b"))


def _strong_orders(con, variant: JudgeVariant, prompt_set: str | None, key: EvalKey | None,
                   ) -> tuple[tuple[str, str], list[Any]]:
    """(select list, join) adding ``n_strong_a`` / ``n_strong_b`` per pair to the pairs query, and its parameters; a
    store older than ``judgments.strong`` (read without migrating) has none."""
    zero = "0 AS n_strong_a, 0 AS n_strong_b"
    if not con.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'judgments' "
                       "AND column_name = 'strong'").fetchone()[0]:
        return (zero, ""), []
    selection, params = _selection(variant, prompt_set, key)
    for_a = "(verdict = 'first') <> swapped"  # A was preferred: shown first and chosen, or shown second and chosen
    join = (f"LEFT JOIN (SELECT pair_id, count(*) FILTER (WHERE strong AND verdict IN ('first', 'second') AND "
            f"{for_a}) AS sa, count(*) FILTER (WHERE strong AND verdict IN ('first', 'second') AND NOT ({for_a})) "
            f"AS sb FROM ({selection}) GROUP BY pair_id) lv ON lv.pair_id = x.pair_id")
    return ("coalesce(lv.sa, 0) AS n_strong_a, coalesce(lv.sb, 0) AS n_strong_b", join), params


def prompt_keys(con, prompt_ids: list[str]) -> tuple[list[str | None], list[str | None]]:
    """Per prompt id: its source id (AlpacaEval's 1-based position for the alpaca-eval set) and its first user
    message, the two keys an instruction-difficulty file may use (``leaderboards.lc``)."""
    rows = dict((pid, (sid, text)) for pid, sid, text in con.execute(
        "SELECT p.prompt_id, p.source_id, p.messages->>'$[0].content' FROM prompts p "
        "JOIN (SELECT unnest(?) AS k) w ON w.k = p.prompt_id", [prompt_ids]).fetchall())
    found = [rows.get(pid, (None, None)) for pid in prompt_ids]
    return [f[0] for f in found], [f[1] for f in found]


# ------------------------------------------------------------------------------------------- beside the pairs


@dataclass
class ModelInfo:
    key: str
    label: str
    samples: int = 0  # distinct generations of this model the judge saw
    length: float | None = None  # mean characters
    tokens: float | None = None  # mean tokens (None for imported text)


def model_info(con, variant: JudgeVariant | None, prompt_set: str | None, keys: list[str],
               key: EvalKey | None = None) -> dict[str, ModelInfo]:
    """Labels and mean response lengths per model over the generations the judge saw (all of the model's
    generations on the prompt set when there is no judge)."""
    if variant is not None:
        selection, params = _selection(variant, prompt_set, key)
        used = (f"SELECT generation_first AS g FROM ({selection}) UNION SELECT generation_second FROM ({selection})")
        sql = (f"SELECT g.checkpoint, any_value(g.label), count(*), avg(length(g.text)), avg(g.n_tokens) "
               f"FROM generations g JOIN ({used}) u ON u.g = g.generation_id GROUP BY g.checkpoint")
        rows = con.execute(sql, params + params).fetchall()
    else:
        where, params = _prompt_filter(prompt_set, "g")
        rows = con.execute(f"SELECT g.checkpoint, any_value(g.label), count(*), avg(length(g.text)), "
                           f"avg(g.n_tokens) FROM generations g {where} GROUP BY g.checkpoint", params).fetchall()
    found = {r[0]: ModelInfo(r[0], r[1] or r[0], r[2], r[3], r[4]) for r in rows}
    return {k: found.get(k, ModelInfo(k, k)) for k in keys}


@dataclass
class MetricValue:
    value: float | None
    n: int | None = None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    dataset: str | None = None


@dataclass
class MetricRecord:
    """A stored row of a leaderboard metric, with what it was computed from."""

    checkpoint: str
    label: str | None
    metric: str
    value: MetricValue
    settings: dict[str, Any]


def metric_records(con, keys: list[str] | None = None) -> list[MetricRecord]:
    """Every stored row of a leaderboard metric (of these checkpoints), latest first."""
    rows = con.execute(f"""
        SELECT checkpoint, label, metric, value, n, se, ci_low, ci_high, dataset, CAST(settings AS VARCHAR)
        FROM metrics WHERE metric IN ({', '.join('?' * len(METRIC_NAMES))})
        ORDER BY created_at DESC, metric_id
    """, list(METRIC_NAMES)).fetchall()
    wanted = set(keys) if keys is not None else None
    out = []
    for key, label, metric, *values, settings in rows:
        if wanted is not None and key not in wanted:
            continue
        try:
            parsed = json.loads(settings) if settings else {}
        except ValueError:
            parsed = {}
        out.append(MetricRecord(key, label, metric, MetricValue(*values), parsed if isinstance(parsed, dict) else {}))
    return out


def load_metrics(con, keys: list[str] | None = None, accept=None, records: list[MetricRecord] | None = None,
                 ) -> tuple[dict[str, dict[str, MetricValue]], dict[str, str]]:
    """The latest stored value of each leaderboard metric per checkpoint among the rows ``accept`` takes (a
    ``MetricRecord -> bool``; None takes all), and the checkpoints' labels. ``records``: ``metric_records`` already
    read."""
    out: dict[str, dict[str, MetricValue]] = {}
    labels: dict[str, str] = {}
    for r in (records if records is not None else metric_records(con, keys)):
        labels.setdefault(r.checkpoint, r.label or r.checkpoint)
        if accept is None or accept(r):
            out.setdefault(r.checkpoint, {}).setdefault(r.metric, r.value)
    return out, labels


@dataclass
class Provenance:
    run_id: str | None = None
    run: str | None = None
    step: int | None = None
    loss: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    beta: float | None = None
    base_model: str | None = None
    init_from: str | None = None
    code_version: str | None = None


def load_provenance(con, keys: list[str]) -> dict[str, Provenance]:
    """Run provenance for checkpoint keys that are run checkpoint ids (others, e.g. ``model:…``, get none)."""
    if not keys:
        return {}
    rows = con.execute("""
        SELECT c.checkpoint_id, r.run_id, r.name, c.step, r.loss, r.params, r.base_model, r.init_from, r.code_version
        FROM checkpoints c JOIN runs r USING (run_id) JOIN (SELECT unnest(?) AS k) w ON w.k = c.checkpoint_id
    """, [keys]).fetchall()
    out = {}
    for key, run_id, name, step, loss, params, base, init_from, version in rows:
        params = json.loads(params) if isinstance(params, str) and params else (params or {})
        out[key] = Provenance(run_id, name, step, loss, params, _beta(params), base, init_from, version)
    return out


def _beta(params: dict[str, Any]) -> float | None:
    """β of a run: its own, or the first stage term's (``0.8*dpo + 1.0*sft`` stores params per term)."""
    if isinstance(params.get("beta"), (int, float)) and not isinstance(params.get("beta"), bool):
        return float(params["beta"])
    for part in params.values():
        if isinstance(part, dict) and isinstance(part.get("beta"), (int, float)):
            return float(part["beta"])
    return None


def resolve_label(name: str, keys: list[str], labels: dict[str, str]) -> str:
    """A checkpoint key from a key, a label or a unique key prefix (``--baseline``)."""
    if name in keys:
        return name
    by_label = [k for k in keys if labels.get(k) == name]
    if len(by_label) == 1:
        return by_label[0]
    by_prefix = [k for k in keys if k.startswith(name)] or [k for k in keys if k.split(":", 1)[-1] == name]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_label) > 1 or len(by_prefix) > 1:
        raise LeaderboardError(f"{name!r} names {max(len(by_label), len(by_prefix))} models; use a checkpoint key: "
                               + ", ".join(by_label or by_prefix))
    names = sorted(set(labels.get(k, k) for k in keys))
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (models here: {', '.join(names[:12])})"
    raise LeaderboardError(f"no model {name!r} among this judge's pairs{hint}")

"""Claims measured on a board: each claim's quantities read from the store under the board's evaluation, its verdict
(``leaderboards.claims``), and the verdicts stored and read back.

Names. A claim's ``a`` and ``b`` are configuration names: a checkpoint's label with its step (``:<step>``, the
last step of a run counting) and its seed suffix (``-seed<k>``) taken off names its configuration and ``k`` its seed
(no suffix: seed 0), so ``dpo`` is ``dpo`` or every ``dpo-seed<k>`` (the replicates a board shows as one row). The matched and frontier forms also read a name's grid: the configurations ``<name>-<param><value>…``
that an experiment's ``grid`` expands it into (``dpo-beta0.1``, ``dpo-beta0.5``), one frontier point each. A plain,
conditional or ratio claim compares one configuration a side.

Quantities, per configuration (the board's judge, baseline, prompt set and sampling setting):

- ``win_rate``: per (seed, prompt), the mean outcome against the board's baseline, in % (as the board shows it);
- ``gold_reward``: per (seed, prompt), the mean oracle score of the evaluation's samples;
- ``kl``, ``perplexity``, ``agility``, ``margin``, ``accuracy``: stored per checkpoint by ``eval``; with two or more
  seeds the seeds are resampled, with one the value is drawn from its stored standard error;
- ``train:NAME``: ``train_metrics`` NAME per (seed, logged step), e.g. ``train:grad_norm``.

Per-prompt quantities of a plain or conditional claim are paired over shared prompts (and seeds, where both sides hold
the same); every other comparison draws the two sides independently.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from evalharness.compare import ORACLE, Side, _gold, _matrices, _se, _win_rates
from leaderboards import claims as C
from leaderboards import frontier, query, selection

SEED = re.compile(r"^(?P<name>.+)-seed(?P<seed>\d+)$")
STEP = re.compile(r"^(?P<run>.+)[:@](?P<step>\d+)$")
GRID_POINT = r"(-[A-Za-z_][A-Za-z_.]*?-?\d[\d.eE+-]*)+"
PER_PROMPT = ("win_rate", "gold_reward")
TRAIN = "train:"


def groups(labels: dict[str, str]) -> dict[str, dict[int, str]]:
    """Configuration name -> seed -> checkpoint key, from the checkpoints' labels (``run`` or ``run:step``; of
    several steps of one run, the last).

    >>> groups({"k1": "dpo-seed0:2", "k2": "dpo-seed1:2", "k3": "sft:2", "k4": "sft:1"})
    {'dpo': {0: 'k1', 1: 'k2'}, 'sft': {0: 'k3'}}
    """
    out: dict[str, dict[int, tuple[int, str]]] = {}
    for key, label in sorted(labels.items(), key=lambda kv: kv[1]):
        at = STEP.match(label)
        run, step = (at["run"], int(at["step"])) if at else (label, -1)
        m = SEED.match(run)
        name, seed = (m["name"], int(m["seed"])) if m else (run, 0)
        held = out.setdefault(name, {}).get(seed)
        if held is None or step > held[0]:
            out[name][seed] = (step, key)
    return {name: {s: k for s, (_, k) in sorted(by_seed.items())} for name, by_seed in out.items()}


def grid(name: str, found: dict[str, dict[int, str]]) -> list[str]:
    """The configurations ``name`` covers on a frontier: itself, or its grid points.

    >>> grid("dpo", {"dpo-beta0.1": {}, "dpo-beta0.5": {}, "dpo-rw": {}, "e-dpo": {}})
    ['dpo-beta0.1', 'dpo-beta0.5']
    """
    if name in found:
        return [name]
    point = re.compile(re.escape(name) + GRID_POINT + "$")
    return sorted(g for g in found if point.match(g))


class _Board:
    """What one board's claims read: its pairs, configurations, metrics and training curves."""

    def __init__(self, con, meta: dict[str, Any], resamples: int, seed: int, level: float):
        turns = str(meta.get("turns") or "")
        variant = query.select_judge(query.judge_variants(con, meta.get("prompt_set")),
                                     f"{meta['judge']}@{meta['judge_version']}", meta.get("prompt_set"),
                                     meta.get("template") or None)
        self.key = selection.choose_key(con, variant, meta.get("prompt_set"),
                                        selection.parse_turn(turns if "," not in turns and turns else
                                                             ("all" if turns else None)),
                                        None, meta.get("sampling_id"))
        self.pairs = query.load_pairs(con, variant, key=self.key, only=meta.get("models"))
        labels = {k: i.label for k, i in query.model_info(con, variant, None, self.pairs.models, self.key).items()}
        self.base = meta.get("baseline")
        self.found = groups({k: v for k, v in labels.items() if k != self.base})
        keys = [k for k in self.pairs.models if k != self.base]
        # The baseline is a configuration too, for what is measured on it alone (perplexity, KL, gold reward,
        # training curves): "dpo's perplexity is higher than sft's" with sft the baseline. Its win rate against
        # itself is not measured. A policy configuration of the same name keeps the name.
        if self.base in labels:
            for name, members in groups({self.base: labels[self.base]}).items():
                self.found.setdefault(name, members)
            keys.append(self.base)
        records = query.metric_records(con, keys)
        spec = selection.HeldOutKey(meta["held_out"], meta.get("max_length"), meta.get("max_prompt_length"),
                                    meta.get("prompt_style")).name if meta.get("held_out") else None
        held = selection.choose_held_out(records, spec) if records else None  # the board's own held-out evaluation
        self.metrics, _ = query.load_metrics(con, keys, selection.accept((self.key.prompt_set, self.key.sampling),
                                                                         held), records)
        runs = dict(con.execute("SELECT c.checkpoint_id, c.run_id FROM checkpoints c JOIN (SELECT unnest(?) AS k) "
                                "ON c.checkpoint_id = k", [keys]).fetchall()) if keys else {}
        self.curves: dict[str, dict[str, dict[int, float]]] = {}  # checkpoint -> metric -> step -> value
        for ck, run in runs.items():
            for step, name, value in con.execute("SELECT step, name, value FROM train_metrics WHERE run_id = ?",
                                                 [run]).fetchall():
                self.curves.setdefault(ck, {}).setdefault(name, {})[int(step)] = float(value)
        self.con, self.resamples, self.seed, self.level = con, resamples, seed, level
        self._cache: dict[tuple[str, str], Any] = {}

    def per_unit(self, config: str, quantity: str) -> dict[int, Any] | None:
        """seed -> per-prompt values (an array, or prompt id -> value) or per-step values (step -> value)."""
        side = Side(config, self.found[config])
        if quantity == "win_rate":
            if self.base is None or self.base in side.members.values():
                return None
            return {s: 100.0 * v for s, v in _win_rates(self.pairs, side, self.base).items()}
        if quantity == "gold_reward":
            return _gold(self.con, self.key, side) or None
        if quantity.startswith(TRAIN):
            name = quantity[len(TRAIN):]
            out = {s: self.curves.get(ck, {}).get(name) for s, ck in side.members.items()}
            return out if all(out.values()) else None
        return None

    def estimate(self, config: str, quantity: str, salt: int) -> frontier.Estimate | str:
        """A configuration's quantity, resampled (module docstring), or why it has none."""
        cached = self._cache.get((config, quantity))
        if cached is not None:
            return cached
        members = self.found[config]
        seed = self.seed + salt
        if quantity in query.METRIC_NAMES:
            values = [self.metrics.get(ck, {}).get(quantity) for ck in members.values()]
            if any(v is None or v.value is None for v in values):
                out: Any = f"{quantity} of {config} not stored (run `evalharness eval`)"
            elif len(values) >= 2:
                out = frontier.mean_estimate(np.array([[v.value] for v in values]), self.resamples, seed)
            else:
                se = _se(values[0], self.level)
                out = (frontier.normal_estimate(values[0].value, se, self.resamples, seed) if math.isfinite(se)
                       else f"{quantity} of {config}: one seed and no standard error stored")
        else:
            per = self.per_unit(config, quantity)
            if per is None:
                out = f"{quantity} of {config} not measured on this board"
            else:
                out = frontier.mean_estimate(_rows(per), self.resamples, seed)
        self._cache[(config, quantity)] = out
        return out


def _rows(per: dict[int, Any]) -> np.ndarray:
    """seed -> values (an array over the board's prompts, or id -> value) as a seeds x units matrix."""
    first = next(iter(per.values()))
    if isinstance(first, dict):
        ids = sorted(set().union(*per.values()))
        return np.array([[v.get(i, np.nan) for i in ids] for _, v in sorted(per.items())])
    return np.stack([np.asarray(v, dtype=np.float64) for _, v in sorted(per.items())])


def measure(board: _Board, claim: C.Claim, index: int) -> C.Measurement:
    """The claim's measurement on ``board`` (``leaderboards.claims.evaluate_claims``), or why there is none."""
    sides = [grid(n, board.found) for n in (claim.a, claim.b)]
    for name, found in zip((claim.a, claim.b), sides):
        if not found:
            return f"no configuration named {name!r} on this board"
    if claim.form in ("matched", "frontier"):
        x, y = claim.frontier if claim.frontier else (claim.matched, claim.quantity)
        points = []
        for j, configs in enumerate(sides):
            side = []
            for k, config in enumerate(configs):
                ex, ey = (board.estimate(config, q, 1000 * index + 100 * j + 2 * k + i) for i, q in enumerate((x, y)))
                for e in (ex, ey):
                    if isinstance(e, str):
                        return e
                side.append(frontier.Point(config, ex, ey))
            points.append(side)
        return C.frontier_effect(claim, *points)
    for name, found in zip((claim.a, claim.b), sides):
        if found != [name]:
            return (f"{name!r} names a grid of {len(found)} configurations ({', '.join(found)}); a {claim.form} claim "
                    "compares one configuration a side")
    a, b = claim.a, claim.b
    est = [board.estimate(n, claim.quantity, 1000 * index + j) for j, n in enumerate((a, b))]
    if any(isinstance(e, str) for e in est):
        return next(e for e in est if isinstance(e, str))
    if claim.form == "ratio":
        return C.ratio_effect(*est)
    if claim.quantity in PER_PROMPT:
        ma, mb, paired = _matrices(board.per_unit(a, claim.quantity), board.per_unit(b, claim.quantity))
        if ma.shape[1] == 0:
            return "no prompt measured on both sides"
        out: C.Measured | C.Effect = C.Measured(ma, mb, paired)
    else:
        out = C.difference_effect(*est)
    if claim.given:
        cond = [board.estimate(n, claim.given, 1000 * index + 10 + j) for j, n in enumerate((a, b))]
        if any(isinstance(e, str) for e in cond):
            return next(e for e in cond if isinstance(e, str))
        out = dataclasses.replace(out, condition=C.difference_effect(*cond))
    return out


def evaluation(meta: dict[str, Any]) -> str:
    """The board a verdict was measured on, as stored with it."""
    return json.dumps({k: meta.get(k) for k in ("judge", "judge_version", "template", "prompt_set", "turns",
                                                 "sampling_id", "baseline")}, sort_keys=True)


def evaluate_on_board(store: str, meta: dict[str, Any], claims: Sequence[C.Claim], resamples: int = 2000,
                      seed: int = 0, level: float = 0.95, alpha: float = 0.05) -> list[C.Verdict]:
    """Every claim's verdict under the board whose meta is ``meta`` (Holm across them)."""
    if not claims:
        return []
    if not meta.get("judge") or meta.get("judge_version") is None:  # a board of metrics or grades alone
        return C.evaluate_claims(claims, lambda c: "the board has no pairwise judge to measure on")
    with query.read_store(store) as con:
        board = _Board(con, meta, resamples, seed, level)
        found = {i: measure(board, c, i) for i, c in enumerate(claims)}
    index = {id(c): i for i, c in enumerate(claims)}
    return C.evaluate_claims(claims, lambda c: found[index[id(c)]], alpha, resamples, seed, level)


def store_verdicts(store, experiment_id: str, meta: dict[str, Any], verdicts: Sequence[C.Verdict]) -> None:
    """The verdicts as the experiment's stored ones on this board (replacing earlier ones there)."""
    from evalharness.hashing import content_hash
    from evalharness.store import code_version
    from evalharness.store_rows import ClaimRecord

    ev = evaluation(meta)
    rows = []
    for i, v in enumerate(verdicts):
        d = v.as_dict()
        claim = {k: d[k] for k in ("form", "quantity", "a", "b", "relation", "margin", "matched", "given", "within",
                                   "frontier", "fraction")}
        result = {k: d[k] for k in ("mde", "prompts", "seeds", "note")}
        rows.append(ClaimRecord(content_hash(["claim", experiment_id, ev, i, d["text"], claim]), experiment_id, ev, i,
                                d["text"], json.dumps(claim, sort_keys=True), v.verdict, d["difference"], d["ci_low"],
                                d["ci_high"], d["p_value"], d["p_adjusted"], json.dumps(result, sort_keys=True),
                                code_version()))
    store.replace_claims(experiment_id, ev, rows)


def stored_for_board(store: str, board_meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored verdicts, on this board's evaluation, of every experiment one of whose runs is on the board
    (``rows``: its rows, a replicated row standing for its replicates), as ``Verdict.as_dict`` plus the experiment's
    name. Read-only."""
    from evalharness.store_rows import ClaimRecord, select_columns
    from leaderboards.plot_data import members

    keys = [k for r in rows for k in members(r)]
    if not keys:
        return []
    ev = evaluation(board_meta)
    with query.read_store(store) as con:
        tables = {t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "claims" not in tables:  # a store older than claims: none stored
            return []
        runs = {r for (r,) in con.execute("SELECT DISTINCT run_id FROM checkpoints JOIN (SELECT unnest(?) AS k) "
                                          "ON checkpoint_id = k", [list(keys)]).fetchall()}
        names = {eid: name for eid, name, rs in con.execute("SELECT experiment_id, name, CAST(runs AS VARCHAR) "
                                                             "FROM experiments").fetchall()
                 if runs & set(json.loads(rs or "{}").values())}
        rows = [ClaimRecord(*r) for r in con.execute(
            f"SELECT {select_columns(ClaimRecord)} FROM claims WHERE CAST(evaluation AS VARCHAR) = ? AND "
            "list_contains(?, experiment_id) ORDER BY created_at DESC, experiment_id, position",
            [ev, sorted(names)]).fetchall()]
    return [{"experiment": names[r.experiment_id], "text": r.text, **json.loads(r.claim), "verdict": r.verdict,
             "difference": r.effect, "ci_low": r.ci_low, "ci_high": r.ci_high, "p_value": r.p_value,
             "p_adjusted": r.p_adjusted, **json.loads(r.result)} for r in rows]


__all__ = ["ORACLE", "evaluate_on_board", "evaluation", "grid", "groups", "measure", "store_verdicts",
           "stored_for_board"]

"""Judge self-report and judge agreement: position bias, length bias, and Cohen's κ between judges on shared pairs.

Two judges share a pair when they judged the same two responses to the same prompt (the same two generation ids),
whichever models wrote them and in whichever order the pair was stored. Each judge's verdict on a shared pair is its
combined verdict (the leaderboard's rule), oriented to the generation with the smaller id: +1 / 0 / -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leaderboards.query import ORDER_SCORES, EvalKey, JudgeVariant, _selection

LABELS = (-1, 0, 1)


def cohen_kappa(x: np.ndarray, y: np.ndarray, labels=LABELS) -> tuple[float, float, np.ndarray]:
    """Observed agreement, Cohen's κ and the confusion matrix of two raters' labels ``x``, ``y`` (n,).

    κ = (p_o - p_e) / (1 - p_e), with p_o the share of items given the same label and p_e = Σ_k p_x(k) p_y(k) the
    agreement expected from the two raters' label frequencies alone. NaN when there are no items, or p_e = 1 (both
    raters always give the same single label: agreement is then certain and κ undefined).

    >>> cohen_kappa(np.array([1, 1, -1, -1]), np.array([1, -1, -1, -1]))[:2]
    (0.75, 0.5)
    """
    x, y = np.asarray(x), np.asarray(y)
    index = {v: i for i, v in enumerate(labels)}
    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    if x.size:
        xi = np.vectorize(index.__getitem__, otypes=[np.int64])(x)
        yi = np.vectorize(index.__getitem__, otypes=[np.int64])(y)
        np.add.at(confusion, (xi, yi), 1)
    n = confusion.sum()
    if n == 0:
        return float("nan"), float("nan"), confusion
    p_o = np.trace(confusion) / n
    p_e = float((confusion.sum(axis=1) / n) @ (confusion.sum(axis=0) / n))
    kappa = float("nan") if np.isclose(p_e, 1.0) else (p_o - p_e) / (1.0 - p_e)
    return float(p_o), float(kappa), confusion


# --------------------------------------------------------------------------------------------------- SQL


def _orders_with_lengths(variant: JudgeVariant, prompt_set: str | None, key: EvalKey | None) -> tuple[str, list]:
    selection, params = _selection(variant, prompt_set, key)
    sql = f"""
        SELECT o.*, length(gf.text) AS len_first, length(gs.text) AS len_second
        FROM ({ORDER_SCORES.format(selection=selection)}) o
        LEFT JOIN generations gf ON gf.generation_id = o.generation_first
        LEFT JOIN generations gs ON gs.generation_id = o.generation_second
    """
    return sql, params


def _shared_verdicts(variant: JudgeVariant, prompt_set: str | None, key: EvalKey | None) -> tuple[str, list]:
    """SQL: one row per (prompt, unordered generation pair) with the variant's combined verdict ``v`` (+1 when the
    generation with the smaller id is preferred; NULL when no order was valid) and ``flip``: whether that generation
    is the variant's B, so that ``-v`` is the verdict from its A's side."""
    selection, params = _selection(variant, prompt_set, key)
    sql = f"""
        SELECT prompt_id, least(gen_a, gen_b) AS g1, greatest(gen_a, gen_b) AS g2, bool_or(gen_a > gen_b) AS flip,
               CASE WHEN count(s) = 0 THEN NULL WHEN min(s) = 1 THEN 1 WHEN max(s) = 0 THEN -1 ELSE 0 END AS v
        FROM (SELECT *, CASE WHEN gen_a <= gen_b THEN a_score ELSE 1 - a_score END AS s
              FROM ({ORDER_SCORES.format(selection=selection)}))
        GROUP BY prompt_id, g1, g2
    """
    return sql, params


def shared_labels(con, x: JudgeVariant, y: JudgeVariant, prompt_set: str | None = None,
                  key: EvalKey | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The two judges' verdicts (n,) on the pairs both judged with at least one valid order each, both from the side
    of ``x``'s model A (win / tie / loss of the model ``x`` rated), whichever way ``y`` stored the pair."""
    sx, px = _shared_verdicts(x, prompt_set, key)
    sy, py = _shared_verdicts(y, prompt_set, key)
    rows = con.execute(f"""
        SELECT CASE WHEN a.flip THEN -a.v ELSE a.v END, CASE WHEN a.flip THEN -b.v ELSE b.v END
        FROM ({sx}) a JOIN ({sy}) b USING (prompt_id, g1, g2)
        WHERE a.v IS NOT NULL AND b.v IS NOT NULL
    """, px + py).fetchall()
    arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


@dataclass
class JudgeReport:
    """One judge's self-report (fractions in [0, 1]; None where undefined)."""

    judge: str
    version: str
    template: str
    orders: int
    pairs: int
    unparsed: int
    failed: int
    two_order_pairs: int  # pairs with two valid orders: the ones a position flip can be seen on
    flip_rate: float | None  # share of those whose two orders disagree once the swap is undone
    p_first: float | None  # P(first shown wins) over decisive orders (ties left out): 0.5 means no position bias
    tie_rate: float | None  # ties over valid orders
    p_longer: float | None  # P(longer response wins) over decisive orders whose two responses differ in length
    reference: str | None = None
    shared: int | None = None  # pairs shared with the reference
    agreement: float | None = None
    kappa: float | None = None


def judge_report(con, variant: JudgeVariant, reference: JudgeVariant | None = None,
                 prompt_set: str | None = None, key: EvalKey | None = None) -> JudgeReport:
    """With ``key``, only the orders of that evaluation (prompt set, turns, sampling setting)."""
    sql, params = _orders_with_lengths(variant, prompt_set, key)
    (orders, unparsed, failed, first, second, ties, longer_decisive, longer_wins) = con.execute(f"""
        SELECT count(*), count(*) FILTER (WHERE verdict = 'unparsed'), count(*) FILTER (WHERE verdict = 'failed'),
               count(*) FILTER (WHERE verdict = 'first'), count(*) FILTER (WHERE verdict = 'second'),
               count(*) FILTER (WHERE verdict = 'tie'),
               count(*) FILTER (WHERE verdict IN ('first', 'second') AND len_first <> len_second),
               count(*) FILTER (WHERE (verdict = 'first' AND len_first > len_second)
                                   OR (verdict = 'second' AND len_second > len_first))
        FROM ({sql})
    """, params).fetchone()
    pairs, two, flips = con.execute(f"""
        SELECT count(*), count(*) FILTER (WHERE n = 2), count(*) FILTER (WHERE n = 2 AND lo <> hi)
        FROM (SELECT pair_id, count(a_score) AS n, min(a_score) AS lo, max(a_score) AS hi FROM ({sql}) GROUP BY 1)
    """, params).fetchone()
    decisive, valid = first + second, first + second + ties
    report = JudgeReport(variant.judge, variant.version, variant.template, orders, pairs, unparsed, failed, two,
                         _ratio(flips, two), _ratio(first, decisive), _ratio(ties, valid),
                         _ratio(longer_wins, longer_decisive))
    if reference is not None:
        x, y = shared_labels(con, variant, reference, prompt_set, key)
        p_o, kappa, _ = cohen_kappa(x, y)
        report.reference, report.shared = reference.name, int(x.size)
        report.agreement, report.kappa = _finite(p_o), _finite(kappa)
    return report


@dataclass
class Agreement:
    judge_x: str
    judge_y: str
    shared: int
    agreement: float | None
    kappa: float | None


def agreement_table(con, variants: list[JudgeVariant], prompt_set: str | None = None,
                    key: EvalKey | None = None) -> list[Agreement]:
    """Pairwise agreement and κ between every two judge variants on the pairs they share."""
    out = []
    for i, x in enumerate(variants):
        for y in variants[i + 1 :]:
            a, b = shared_labels(con, x, y, prompt_set, key)
            p_o, kappa, _ = cohen_kappa(a, b)
            out.append(Agreement(x.name, y.name, int(a.size), _finite(p_o), _finite(kappa)))
    return out


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


# ------------------------------------------------------------------------------------------------- the report


def judges_report(store, judges: list[str] | None = None, reference: str | None = None,
                  prompt_set: str | None = None, turn: int | str | None = None,
                  temperature: float | str | None = None, sampling: str | None = None) -> list:
    """Two ``Table``s: one row per judge (self-report, and agreement with ``reference`` when given), and agreement
    between every two of the judges (with the reference among them).

    Every number comes from one evaluation, chosen as the leaderboard chooses its own (``leaderboards.selection``)
    over the pairs of all the report's judges: one prompt set, its turns, one sampling setting. Where the judges'
    pairs hold several, a LeaderboardError lists them and names the flag that picks one; the tables' titles and meta
    name the one used, with the prompts' source hash and split."""
    from dataclasses import asdict

    from evalharness import evalkey
    from leaderboards import selection
    from leaderboards.query import LeaderboardError, judge_variants, read_store, select_judge
    from leaderboards.render import num, text
    from leaderboards.table import Column, Table

    with read_store(store) as con:
        variants = judge_variants(con, prompt_set)
        if not variants:
            raise LeaderboardError("the store holds no judgments (run `evalharness judge` or `evalharness import`)")
        chosen = [select_judge(variants, j) for j in judges] if judges else list(variants)
        ref = select_judge(variants, reference) if reference is not None else None
        everyone = [v for v in chosen if v != ref] + ([ref] if ref is not None else [])  # the reference last
        found = [g for v in everyone for g in selection.groups(con, v, prompt_set)]
        key = selection.choose_among(found, "the report", "the judges'", prompt_set, selection.parse_turn(turn),
                                     selection.parse_temperature(temperature) if temperature is not None else None,
                                     sampling)
        reports = [judge_report(con, v, ref, prompt_set, key) for v in chosen if v != ref]
        agreements = agreement_table(con, everyone, prompt_set, key)
        prompt_ids: set[str] = set()
        for v in everyone:
            sql, params = _selection(v, prompt_set, key)
            prompt_ids |= {pid for (pid,) in con.execute(f"SELECT DISTINCT prompt_id FROM ({sql})", params).fetchall()}
        source = selection.prompt_source(con, sorted(prompt_ids))
    meta = {"prompt_set": key.prompt_set, "prompts_source": source, "turns": ",".join(map(str, key.turns)),
            "sampling": evalkey.describe(key.sampling), "sampling_id": evalkey.sampling_id(key.sampling),
            "temperature": evalkey.fields(key.sampling).get("temperature")}
    on = selection.title_suffix(meta)

    pct = lambda key: (lambda r: num(None if r[key] is None else 100 * r[key], 1))  # noqa: E731
    judge_rows = [asdict(r) for r in reports]
    for r in judge_rows:
        r["name"] = f"{r['judge']}@{r['version']}" + (f" [{r['template']}]" if r["template"] else "")
    columns = [
        Column("judge", lambda r: r["name"], "name", "left"),
        Column("orders", lambda r: text(r["orders"]), "orders"),
        Column("pairs", lambda r: text(r["pairs"]), "pairs"),
        Column("unparsed", lambda r: text(r["unparsed"]), "unparsed"),
        Column("failed", lambda r: text(r["failed"]), "failed"),
        Column("2-order pairs", lambda r: text(r["two_order_pairs"]), "two_order_pairs"),
        Column("flip %", pct("flip_rate"), "flip_rate"),
        Column("P(first) %", pct("p_first"), "p_first"),
        Column("tie %", pct("tie_rate"), "tie_rate"),
        Column("P(longer) %", pct("p_longer"), "p_longer"),
        Column("shared", lambda r: text(r["shared"]), "shared"),
        Column("agree %", pct("agreement"), "agreement"),
        Column("κ", lambda r: num(r["kappa"], 3), "kappa"),
    ]
    fields = ["name"] + [k for k in judge_rows[0] if k != "name"] if judge_rows else ["name"]
    notes = ["flip = share of two-order pairs whose orders disagree once the swap is undone; P(first) over decisive "
             "orders (ties left out); P(longer) over decisive orders whose responses differ in length (characters)"]
    if ref is not None:
        notes.append(f"agreement and Cohen's κ with {ref.name} on the pairs both judged (3 classes: win, tie, loss)")
    first = Table("Judges" + on + (f" (reference: {ref.name})" if ref else ""), fields, judge_rows, columns, meta,
                  notes)
    rows = [asdict(a) for a in agreements]
    second = Table("Judge agreement" + on, ["judge_x", "judge_y", "shared", "agreement", "kappa"], rows, [
        Column("judge", lambda r: r["judge_x"], "judge_x", "left"),
        Column("judge", lambda r: r["judge_y"], "judge_y", "left"),
        Column("shared", lambda r: text(r["shared"]), "shared"),
        Column("agree %", pct("agreement"), "agreement"),
        Column("κ", lambda r: num(r["kappa"], 3), "kappa"),
    ], meta, ["pairs are shared when both judges saw the same two responses to the same prompt"])
    return [first, second] if rows else [first]

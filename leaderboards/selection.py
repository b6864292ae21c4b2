"""Which evaluation a board shows. Every number on a board comes from rows of one evaluation:

- its pairs: one judge variant (id, version, template), one prompt set, its turns and one sampling setting
  (``evalharness.evalkey``: temperature, top_p, max_new_tokens, seed; not the backend);
- its KL: the rows computed from samples of that prompt set at that setting;
- its perplexity, agility, margin and accuracy: one held-out set (dataset name and the hash of its pair ids) tokenised
  at one pair of lengths and one prompt style.

Where the store holds several candidates for what was asked, the board is not built: the error lists them and names
the flag that picks one (``--prompts``, ``--turn``, ``--temperature``, ``--sampling``, ``--held-out``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evalharness import evalkey
from leaderboards.query import KEYED_JUDGMENTS, SIDE_SAMPLING, EvalKey, JudgeVariant, LeaderboardError, MetricRecord

HELD_OUT_METRICS = ("perplexity", "agility", "margin", "accuracy")
SAMPLE_METRICS = ("kl",)


@dataclass(frozen=True)
class Group:
    """Orders of one judge variant with one (prompt set, turn, pair of stored sampling texts)."""

    prompt_set: str
    turn: int
    raw: tuple[str, str]
    pairs: int
    orders: int

    @property
    def sides(self) -> tuple[str, str]:
        return evalkey.canonical(self.raw[0]), evalkey.canonical(self.raw[1])

    @property
    def mixed(self) -> bool:
        a, b = self.sides
        return bool(a and b and a != b)

    @property
    def key(self) -> str:
        a, b = self.sides
        return a or b


def groups(con, variant: JudgeVariant, prompt_set: str | None) -> list[Group]:
    ka, kb = SIDE_SAMPLING.format(g="ga"), SIDE_SAMPLING.format(g="gb")
    where = " AND coalesce(p.prompt_set, '?') = ?" if prompt_set is not None else ""
    rows = con.execute(
        f"SELECT coalesce(p.prompt_set, '?'), j.turn, least({ka}, {kb}), greatest({ka}, {kb}), "
        f"count(DISTINCT j.pair_id), count(*) {KEYED_JUDGMENTS} "
        f"WHERE j.judge = ? AND j.judge_version = ? AND j.template = ?{where} GROUP BY ALL ORDER BY 1, 2, 3, 4",
        [variant.judge, variant.version, variant.template] + ([prompt_set] if prompt_set is not None else []),
    ).fetchall()
    return [Group(ps, int(turn or 1), (lo, hi), n, orders) for ps, turn, lo, hi, n, orders in rows]


def parse_turn(turn: Any) -> int | str | None:
    """``--turn``: a turn number (1-based) or ``all`` (pool every turn); None: the only one there is."""
    if turn is None or turn == "all":
        return turn
    try:
        value = int(str(turn))
    except ValueError:
        value = 0
    if value < 1:
        raise LeaderboardError(f"--turn must be a turn number (1, 2, …) or all, got {turn!r}")
    return value


def parse_temperature(value: Any) -> float | str | None:
    """``--temperature``: a number >= 0 (0: greedy decoding) or the name of a per-category rule (``fastchat``)."""
    t = evalkey.parse_temperature(value)
    if isinstance(t, bool) or isinstance(t, float) and not 0 <= t < float("inf") or isinstance(t, str) and not t:
        raise LeaderboardError(f"--temperature must be a number >= 0 or a rule name, got {value!r}")
    return t


def choose_key(con, variant: JudgeVariant, prompt_set: str | None, turn: int | str | None = None,
               temperature: float | str | None = None, sampling: str | None = None) -> EvalKey:
    """The one evaluation of ``variant`` the request names, or a LeaderboardError listing the candidates."""
    return choose_among(groups(con, variant, prompt_set), f"judge {variant.name}", f"judge {variant.name}'s",
                        prompt_set, turn, temperature, sampling)


def choose_among(found: list[Group], who: str, whose: str, prompt_set: str | None, turn: int | str | None = None,
                 temperature: float | str | None = None, sampling: str | None = None) -> EvalKey:
    """``choose_key`` over the groups of one or several judge variants (``who`` has them, ``whose`` pairs)."""
    if not found:
        raise LeaderboardError(f"{who} has no pairs" + (f" on {prompt_set!r}" if prompt_set else ""))
    sets = _count(found, lambda g: g.prompt_set)
    if len(sets) > 1:
        raise LeaderboardError(f"{who} has pairs on {len(sets)} prompt sets: {_listing(sets)}; "
                               "choose one with --prompts")
    chosen_set = next(iter(sets))
    turns = _count(found, lambda g: g.turn)
    if turn == "all":
        chosen_turns = tuple(sorted(turns))
    elif turn is not None:
        if turn not in turns:
            raise LeaderboardError(f"{who} has no pairs at turn {turn} on {chosen_set!r} "
                                   f"(turns here: {_listing(turns)})")
        chosen_turns = (int(turn),)
    elif len(turns) > 1:
        raise LeaderboardError(f"{whose} pairs on {chosen_set!r} span {len(turns)} turns: "
                               f"{_listing({f'turn {t}': n for t, n in turns.items()})}; choose one with --turn N "
                               "(or --turn all to pool them)")
    else:
        chosen_turns = tuple(turns)
    found = [g for g in found if g.turn in chosen_turns]
    settings = _count([g for g in found if not g.mixed], lambda g: g.key)
    fits = {k: n for k, n in settings.items() if evalkey.matches(k, temperature, sampling)}
    where = f"{whose} pairs on {chosen_set!r}"
    if not fits:
        if not settings:
            a, b = found[0].sides
            raise LeaderboardError(f"{where} each compare samples drawn at two settings: {evalkey.describe(a)} "
                                   f"against {evalkey.describe(b)}; judge them again at one setting "
                                   "(`evalharness judge --temperature T`)")
        asked = " and ".join(p for p in (evalkey.show_temperature(temperature) if temperature is not None else "",
                                         f"sampling {sampling}" if sampling else "") if p)
        raise LeaderboardError(f"{where} have no samples at {asked}; settings here: "
                               + _listing({evalkey.describe_with_id(k): n for k, n in settings.items()}))
    if len(fits) > 1:
        temps = [evalkey.temperature(k) for k in fits]
        flag = "--temperature" if temperature is None and len(set(temps)) == len(temps) else "--sampling ID"
        raise LeaderboardError(f"{where} were sampled at {len(fits)} settings: "
                               + _listing({evalkey.describe_with_id(k): n for k, n in fits.items()}, "; ")
                               + f"; choose one with {flag}")
    key = next(iter(fits))
    raw = sorted({r for g in found for r in g.raw if r and evalkey.canonical(r) == key})
    unrecorded = sorted({""} | {r for g in found for r in g.raw if not evalkey.canonical(r)})
    mixed = sum(g.pairs for g in found if g.mixed and key in g.sides)
    return EvalKey(chosen_set, chosen_turns, key, tuple(raw), tuple(unrecorded), mixed)


def _count(items, by) -> dict:
    out: dict = {}
    for g in items:
        out[by(g)] = out.get(by(g), 0) + g.pairs
    return dict(sorted(out.items(), key=lambda kv: str(kv[0])))


def _listing(counts: dict, sep: str = ", ") -> str:
    return sep.join(f"{k} ({n} pairs)" for k, n in counts.items())


# ------------------------------------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class HeldOutKey:
    """What a held-out metric row was computed from: the held-out set and how it was tokenised."""

    dataset: str
    max_length: int | None = None
    max_prompt_length: int | None = None
    prompt_style: str | None = None

    @property
    def name(self) -> str:
        out = self.dataset
        if self.max_length is not None:
            out += f" at lengths {self.max_length}/{self.max_prompt_length}"
        if self.prompt_style:
            out += f", prompt style {self.prompt_style}"
        return out

    def matches(self, spec: str) -> bool:
        return spec in (self.dataset, self.dataset.split("@")[0], self.name) or self.name.startswith(spec)


def held_out_key(r: MetricRecord) -> HeldOutKey:
    s = r.settings
    return HeldOutKey(r.value.dataset or "?", _int(s.get("max_length")), _int(s.get("max_prompt_length")),
                      s.get("prompt_style") if isinstance(s.get("prompt_style"), str) else None)


def sample_key(r: MetricRecord) -> tuple[str, str]:
    """(prompt set, canonical sampling setting) of a KL row: its dataset is ``<prompt set>@<hash of samples>``."""
    return (r.value.dataset or "?").split("@")[0], evalkey.canonical(r.settings.get("sampling"))


def _int(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def choose_held_out(records: list[MetricRecord], spec: str | None) -> HeldOutKey | None:
    """The one held-out evaluation of the board's models (None: they have no held-out metric)."""
    counts: dict[HeldOutKey, set[str]] = {}
    for r in records:
        if r.metric in HELD_OUT_METRICS:
            counts.setdefault(held_out_key(r), set()).add(r.checkpoint)
    fits = [k for k in counts if spec is None or k.matches(spec)]
    if spec is not None and not fits:
        raise LeaderboardError(f"--held-out {spec!r} names no held-out evaluation of these models; here: "
                               + ("; ".join(k.name for k in counts) or "none (run `evalharness eval`)"))
    if len(fits) > 1:
        fits.sort(key=lambda k: k.name)
        raise LeaderboardError(f"the models' perplexity, agility and margins were computed on {len(fits)} held-out "
                               "evaluations: " + "; ".join(f"{k.name} ({len(counts[k])} models)" for k in fits)
                               + "; choose one with --held-out")
    return fits[0] if fits else None


def choose_samples(records: list[MetricRecord], prompt_set: str | None, temperature: float | str | None,
                   sampling: str | None) -> tuple[str, str] | None:
    """For a board without pairs: the one (prompt set, setting) its KL comes from (None: no KL row fits)."""
    keys: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if r.metric in SAMPLE_METRICS:
            k = sample_key(r)
            if (prompt_set is None or k[0] == prompt_set) and evalkey.matches(k[1], temperature, sampling):
                keys.setdefault(k, set()).add(r.checkpoint)
    if len(keys) > 1:
        sets = {k[0] for k in keys}
        flag = "--prompts" if len(sets) > 1 else "--temperature"
        raise LeaderboardError(f"the models' KL was computed from samples of {len(keys)} evaluations: "
                               + "; ".join(f"{ps} at {evalkey.describe_with_id(s)} ({len(m)} models)"
                                           for (ps, s), m in sorted(keys.items()))
                               + f"; choose one with {flag}")
    return next(iter(keys)) if keys else None


def accept(samples: tuple[str, str] | None, held_out: HeldOutKey | None):
    """The ``query.load_metrics`` filter: a KL row of the chosen samples, a held-out row of the chosen evaluation."""
    def take(r: MetricRecord) -> bool:
        if r.metric in SAMPLE_METRICS:
            return samples is not None and sample_key(r) == samples
        if r.metric in HELD_OUT_METRICS:
            return held_out is not None and held_out_key(r) == held_out
        return False
    return take


def metrics_meta(samples: tuple[str, str] | None, held_out: HeldOutKey | None) -> dict[str, Any]:
    """What the board's KL and held-out columns were computed from, for its meta and CSV rows."""
    meta: dict[str, Any] = {"kl_from": f"{samples[0]} at {evalkey.describe(samples[1])}" if samples else None}
    if held_out is not None:
        meta.update(held_out=held_out.dataset, max_length=held_out.max_length,
                    max_prompt_length=held_out.max_prompt_length, prompt_style=held_out.prompt_style)
    else:
        meta.update(held_out=None, max_length=None, max_prompt_length=None, prompt_style=None)
    return meta


# ------------------------------------------------------------------------------------------------------ the board

# The board-level fields every row repeats, so a CSV row alone says what it was computed from.
ROW_FIELDS = ("template", "prompt_set", "turns", "temperature", "sampling", "kl_from", "held_out", "max_length",
              "max_prompt_length")
TEXT_ROW_FIELDS = frozenset({"template", "prompt_set", "turns", "sampling", "kl_from", "held_out"})


def prompt_source(con, prompt_ids: list[str]) -> str | None:
    """What the board's prompts were read from: the content hash of the set's source (its file; for a generated set
    its generator's parameters) and its split, as loading stamped them (``evalharness.data.prompts.source_of``).
    Prompts stored before that, or imported, have none: None. Several sources are listed."""
    rows = con.execute(
        "SELECT DISTINCT json_extract_string(p.meta, '$.source_hash'), json_extract_string(p.meta, '$.split') "
        "FROM prompts p JOIN (SELECT unnest(?) AS k) w ON w.k = p.prompt_id ORDER BY 1, 2", [prompt_ids]).fetchall()
    shown = [h + (f" split {split}" if split else "") for h, split in rows if h]
    return " + ".join(shown) or None


def board_meta(key: EvalKey | None, prompt_ids: list[str], per_prompt: int | None,
               metrics: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """The evaluation a board shows, for its meta (``ROW_FIELDS`` of it for every row). ``source``: the prompts'
    (``prompt_source``)."""
    from evalharness.hashing import content_hash

    if key is None:
        return dict(metrics)
    f = evalkey.fields(key.sampling)
    return {"prompt_set": key.prompt_set, "prompts_source": source,
            "prompts_hash": content_hash(["prompts", sorted(prompt_ids)], 8),
            "turns": ",".join(map(str, key.turns)), "sampling": evalkey.describe(key.sampling),
            "sampling_id": evalkey.sampling_id(key.sampling), "temperature": f.get("temperature"),
            "top_p": f.get("top_p"), "max_new_tokens": f.get("max_new_tokens"), "sampling_seed": f.get("seed"),
            "samples_per_prompt": per_prompt, "mixed_sampling_pairs": key.mixed_pairs, **metrics}


def samples_per_prompt(con, selection_sql: str, params: list[Any]) -> int | None:
    (n,) = con.execute(f"SELECT count(DISTINCT sample_index) FROM ({selection_sql})", params).fetchone()
    return int(n) if n else None


def title_suffix(meta: dict[str, Any]) -> str:
    """`` on synthetic, turn 1, T=0.8, top_p 1, 256 new tokens, seed 0, prompts 1a2b3c4d`` (what the board's title
    adds; the last part the prompts' source hash and split, where loading recorded them)."""
    parts = [meta["prompt_set"]] if meta.get("prompt_set") else []
    if meta.get("turns"):
        parts.append(("turn " if "," not in meta["turns"] else "turns ") + meta["turns"])
    if meta.get("sampling"):
        parts.append(meta["sampling"])
    if meta.get("prompts_source"):
        parts.append(f"prompts {meta['prompts_source']}")
    return (" on " + ", ".join(parts)) if parts else ""


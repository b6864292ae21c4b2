"""`evalharness judge`: show every pair to a judge in both orders and store both raw verdicts, resumably.

Pairs come from the ``generations`` table: for each pair of models (A, B) — each model against a baseline, all pairs,
or each model against the prompt set's reference answers — and each prompt both answered, sample i of A meets sample i
of B. Each order is one row in ``judgments``. A row's cache key is hash(judge id, version, template, conversation,
reference, first text, second text): a verdict already stored under that key is reused without a call (the same two
texts in the same order, whichever models wrote them), so re-running a command makes zero new calls and an interrupted
run resumes after its last written chunk. Rows that failed (endpoint errors) are retried on the next run; unparsed
answers are kept as they are, never guessed.

A judge that scores responses on its own (reward model, oracle) scores each distinct response once into ``scores``;
its verdicts are score differences.

Two-turn sets (MT-Bench): turn 2 is judged too when the judge has a template for it (FastChat's multi-turn ones), each
response shown after its own model's turn-1 answer, as it was generated; its rows carry ``turn`` 2. A judge in
single-answer mode (``mode=single``) grades each model's answers alone instead (``evalharness.rating``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from evalharness import evalkey, pair_sampling
from evalharness.config import ConfigError
from evalharness.hashing import content_hash
from evalharness.judging_window import Writer, account, cached_verdicts, judge_window, row, submitter
from evalharness.rating import PromptInfo, earlier_answers
from evalharness.store import Store, now
from evalharness.store_rows import GenerationRecord, ScoreRecord, score_key
from judges.base import Comparison, Judge, Verdict, can_rate, can_score, verdict_from_scores

REFERENCE = "reference"


@dataclass
class JudgeConfig:
    judge: str  # NAME[:k=v,…]
    models: list[str]  # labels, checkpoint keys, run names or model paths
    baseline: str | None = None
    all_pairs: bool = False
    vs_reference: bool = False
    prompts: str = "synthetic"  # the prompt set the pairs are drawn from
    path: str | None = None  # its file, when generations must be sampled first
    limit: int | None = None
    samples: int = 1  # sample indices paired per prompt (sample i of A meets sample i of B)
    judge_options: dict[str, Any] = field(default_factory=dict)  # CLI flags for the judge (base_url, model, …)
    chunk: int = 64  # comparisons per write: an interruption loses at most this many verdicts
    generate: dict[str, Any] = field(default_factory=dict)  # GenerateConfig fields for models not yet sampled
    temperature: float | None = None  # pair samples drawn at this temperature (``evalharness.pair_sampling``)
    sampling: str | None = None  # a setting's short id, where two settings share a temperature
    mode: str | None = None  # "single": grade each answer alone (given to the judge as its ``mode``); None: its own
    prompt_list: list | None = None  # the prompts of ``prompts`` themselves, where no preset loads them

    def __post_init__(self):
        if self.mode not in (None, "pairwise", "single"):
            raise ConfigError(f"--mode must be pairwise or single, got {self.mode!r}")
        modes = sum([self.baseline is not None, self.all_pairs, self.vs_reference])
        if modes != 1 and not (self.mode == "single" and modes == 0):  # graded alone, a model needs no opponent
            raise ConfigError("choose exactly one of --baseline X, --all-pairs or --vs-reference")
        if not self.models:
            raise ConfigError("--models needs at least one model")
        if self.all_pairs and len(self.models) < 2:
            raise ConfigError("--all-pairs needs at least two models")
        if self.samples < 1 or self.chunk < 1:
            raise ConfigError("--samples and chunk must be at least 1")
        if self.temperature is not None:  # checked as generate checks it, before anything is sampled or judged
            from evalharness.generation.base import Sampling

            Sampling(temperature=evalkey.parse_temperature(self.temperature))


@dataclass
class Side:
    key: str  # checkpoint key in generations
    label: str


@dataclass
class Report:
    judge: str
    pairs: int = 0
    judgments: int = 0
    stored: int = 0  # already in the store for these very generations
    reused: int = 0  # same texts judged before for other generations: copied, no call
    called: int = 0
    scored: int = 0  # responses a pointwise judge scored in this run
    failed: int = 0
    unparsed: int = 0
    truncated: int = 0  # comparisons the judge had to cut to fit its context (its own stated rule)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    sampling: str = ""  # the one setting paired (``evalharness.evalkey`` canonical form)
    template: str = ""
    answers: int = 0  # answers graded alone (single-answer mode), in place of pairs and judgments
    calls_failed: int = 0  # of ``called``: calls that gave no verdict or grade (``failed`` counts the rows)
    first_error: str = ""

    def count_calls(self, answers) -> None:
        """Count this batch of fresh judge answers (verdicts or ratings) into ``called`` and ``calls_failed``."""
        self.called += len(answers)
        for a in answers:
            if getattr(a, "winner", getattr(a, "status", None)) == "failed":
                self.calls_failed += 1
                self.first_error = self.first_error or (a.error or "no reason given")

    def every_call_failed(self) -> str | None:
        """Why nothing was judged where every call made failed (a wrong key answers 401 to each), else None."""
        if self.called and self.calls_failed == self.called:
            return f"every one of the {self.called} judge calls failed; the first: {self.first_error}"
        return None

    def line(self) -> str:
        spend = f", {self.prompt_tokens}+{self.completion_tokens} tokens" if self.prompt_tokens else ""
        spend += f", cost {self.cost:.4f}" if self.cost else ""
        what = (f"{self.answers} answers graded" if self.answers else
                f"{self.pairs} pairs, {self.judgments} judgments")
        return (f"{self.judge}: {what} ({self.stored} already stored, "
                f"{self.reused} reused from the cache, {self.called} judged now"
                + (f", {self.scored} responses scored" if self.scored else "")
                + f"), {self.failed} failed, {self.unparsed} unparsed"
                + (f", {self.truncated} truncated to fit the judge" if self.truncated else "")
                + f"{spend}, {self.seconds:.1f}s")


@dataclass
class Task:
    judgment_id: str
    cache_key: str
    pair_id: str
    prompt_id: str
    turn: int
    sample_index: int
    a: Side
    b: Side
    swapped: bool
    gen_first: str
    gen_second: str
    comparison: Comparison
    failed_row: bool = False  # a row of this judgment is stored as failed: replaced when it is answered


def judge(cfg: JudgeConfig, store: Store, progress: bool = True) -> Report:
    from evalharness.checkpoints import with_run_checkpoints
    from judges.base import build_judge

    options = {**cfg.judge_options, **({"mode": cfg.mode} if cfg.mode else {})}
    # bad judge arguments fail before anything is written
    judge_obj = build_judge(with_run_checkpoints(cfg.judge, store), **options)
    if can_rate(judge_obj) and cfg.vs_reference:
        raise ConfigError("--vs-reference compares with the reference answers; single-answer grading has no "
                          "opponent (its reference-guided templates show the references themselves)")
    if callable(getattr(judge_obj, "prepare", None)):
        judge_obj.prepare()  # a client made while the store is read (the LLM judge's openai import and client)
    report = Report(judge_obj.id, template=judge_obj.template)
    start = time.perf_counter()
    # One connection held open around a run of short reads keeps DuckDB's database open in this process, so each read
    # reuses it instead of opening the file again (10-40 ms each). Never held while a model is sampled: another
    # process waits for the file as long as it is open here.
    with store.connect():
        known = {n: resolve_side(store, n, cfg, report, sample=False) for n in [*cfg.models, cfg.baseline] if n}
    sides = [known[m] or resolve_side(store, m, cfg, report) for m in cfg.models]
    if can_rate(judge_obj):
        from evalharness.rating import rate

        if cfg.baseline is not None:
            sides.append(known[cfg.baseline] or resolve_side(store, cfg.baseline, cfg, report))
        rate(store, judge_obj, cfg, sides, *paired_samples(store, cfg, sides, report), report, progress)
        report.seconds = time.perf_counter() - start
        return report
    if cfg.vs_reference:
        pairs = [(s, reference_side(store, cfg.prompts)) for s in sides]
    elif cfg.all_pairs:
        pairs = list(itertools.combinations(sides, 2))
    else:
        base = known[cfg.baseline] or resolve_side(store, cfg.baseline, cfg, report)
        pairs = [(s, base) for s in sides if s.key != base.key]
        if not pairs:
            raise ConfigError("every model given is the baseline itself: nothing to compare")
    with store.connect():  # held as above
        tasks = build_tasks(store, judge_obj, cfg, pairs, report)
        todo = _not_stored(store, tasks, report)
    report.pairs = len({t.pair_id for t in tasks})
    report.judgments = len(tasks)
    if not tasks:
        report.notes.append(f"no prompt of {cfg.prompts!r} has samples from both sides of any pair")
    _judge_tasks(store, judge_obj, todo, cfg.chunk, report, progress)
    report.seconds = time.perf_counter() - start
    return report


# ----------------------------------------------------------------------------------------------------- resolving


def resolve_side(store: Store, name: str, cfg: JudgeConfig, report: Report, sample: bool = True) -> Side | None:
    """A model name → its checkpoint key in ``generations`` on this prompt set, sampling it first when it has none
    (with ``sample=False``: None instead)."""
    store.get_run(name.partition(":")[0])  # a name of several runs is refused with the list, never picked by label
    found = _find_sampled(store, name, cfg.prompts)
    if found and (_asks_no_setting(cfg) or _has_samples(store, found.key, cfg)):  # found: it has samples of the set
        return found
    if not sample:
        return None
    from evalharness.generate import GenerateConfig, generate, resolve_target

    try:
        target = resolve_target(name, store, None)
    except Exception as e:  # not a run or model: say what exists instead
        if found:  # sampled, though not at the asked setting: choosing the setting says what each model holds
            return found
        labels = _labels(store, cfg.prompts)
        hint = f" (sampled on {cfg.prompts!r}: {', '.join(labels)})" if labels else ""
        raise ConfigError(f"{name!r} has no samples on prompt set {cfg.prompts!r} and is not a run or model to "
                          f"sample{hint}: {e}") from None
    if _has_samples(store, target.key, cfg):
        return Side(target.key, target.label)
    gen = dict(n=cfg.samples, **pair_sampling.sampling_for_missing(cfg))
    gen.update(cfg.generate)
    gen.setdefault("prompt_list", cfg.prompt_list)
    for r in generate(GenerateConfig([name], cfg.prompts, cfg.path, cfg.limit, **gen), store, progress=False):
        report.notes.append("sampled " + r.line())
    return Side(target.key, target.label)


def _find_sampled(store: Store, name: str, prompt_set: str) -> Side | None:
    with store.connect() as con:
        rows = con.execute(
            "SELECT DISTINCT g.checkpoint, g.label FROM generations g JOIN prompts p USING (prompt_id) "
            "WHERE p.prompt_set = ? AND (g.label = ? OR g.checkpoint = ? OR g.label LIKE ? || ':%')",
            [prompt_set, name, name, name]).fetchall()
    exact = [r for r in rows if r[0] == name or r[1] == name]
    rows = exact or rows
    if len({r[0] for r in rows}) > 1:
        if not exact:  # a run name with several sampled checkpoints: the latest step
            rows.sort(key=lambda r: _step(r[1]))
            return Side(*rows[-1])
        raise ConfigError(f"{name!r} names several sampled checkpoints ({', '.join(r[0] for r in rows)}): "
                          "pass one checkpoint key")
    return Side(*rows[0]) if rows else None


def _step(label: str) -> int:
    tail = label.rpartition(":")[2]
    return int(tail) if tail.isdigit() else -1


def _has_samples(store: Store, key: str, cfg: JudgeConfig) -> bool:
    """Whether the checkpoint holds samples of the prompt set at a setting the config asks for."""
    if _asks_no_setting(cfg):
        with store.connect() as con:  # asked nothing: any setting will do (one is chosen for every model later)
            return con.execute("SELECT count(*) FROM generations g JOIN prompts p USING (prompt_id) "
                               "WHERE g.checkpoint = ? AND p.prompt_set = ?", [key, cfg.prompts]).fetchone()[0] > 0
    if not pair_sampling.stated(cfg) and cfg.temperature is None:
        return True  # a --sampling id alone samples nothing: it only picks among what is stored
    with store.connect() as con:
        return any(pair_sampling.wanted(cfg, k) for k in pair_sampling.settings_of(con, key, cfg.prompts))


def _asks_no_setting(cfg: JudgeConfig) -> bool:
    return cfg.temperature is None and cfg.sampling is None and pair_sampling.stated(cfg) is None


def _labels(store: Store, prompt_set: str) -> list[str]:
    with store.connect() as con:
        return [r[0] for r in con.execute(
            "SELECT DISTINCT g.label FROM generations g JOIN prompts p USING (prompt_id) WHERE p.prompt_set = ? "
            "ORDER BY 1", [prompt_set]).fetchall()]


def reference_side(store: Store, prompt_set: str) -> Side:
    """The prompt set's reference answers as generations of a pseudo-model ``reference:<set>`` (stored once)."""
    key = f"{REFERENCE}:{prompt_set}"
    with store.connect() as con:
        rows = con.execute("SELECT prompt_id, reference FROM prompts WHERE prompt_set = ? AND reference IS NOT NULL "
                           "AND reference <> ''", [prompt_set]).fetchall()
    if not rows:
        raise ConfigError(f"prompt set {prompt_set!r} has no reference answers in the store: --vs-reference needs "
                          "a set that carries them (mt-bench, vicuna-bench, alpaca-eval, arena-hard)")
    store.insert_generations([
        GenerationRecord(content_hash(["reference-answer", key, pid, text]), key, REFERENCE, None, pid, 1, 0, "{}",
                         None, "reference", None, None, text, None, None, None, False, None, None, created_at=now())
        for pid, text in rows])
    return Side(key, REFERENCE)


# ------------------------------------------------------------------------------------------------------ tasks


def paired_samples(store: Store, cfg: JudgeConfig, sides: list[Side], report: Report | None = None,
                   ) -> tuple[dict[tuple[str, str, int, int], tuple], dict[str, PromptInfo]]:
    """The samples the models are judged on: (checkpoint, prompt, turn, sample index) -> (generation id, text), at
    the one sampling setting chosen for every model, and the prompts they answer."""
    keys = sorted({s.key for s in sides})
    with store.connect() as con:
        rows = con.execute(
            "SELECT g.checkpoint, g.prompt_id, g.sample_index, g.generation_id, g.text, g.sampling, g.created_at, "
            "p.messages, p.reference, g.turn, p.meta FROM generations g JOIN prompts p USING (prompt_id) "
            "WHERE p.prompt_set = ? AND g.sample_index < ? AND g.checkpoint IN "
            "(SELECT unnest(?)) ORDER BY g.created_at, g.generation_id",
            [cfg.prompts, cfg.samples, keys]).fetchall()
    # One sampling setting for every model (``pair_sampling``); reference answers have none and meet any.
    setting = {r[5]: evalkey.canonical(r[5]) for r in rows}
    models = {s.key: s.label for s in sides if not s.key.startswith(f"{REFERENCE}:")}
    held: dict[str, set[str]] = {k: set() for k in models}
    for r in rows:
        if r[0] in held:
            held[r[0]].add(setting[r[5]])
    key = pair_sampling.choose(held, models, cfg)
    if report is not None:
        report.sampling = key
    chosen: dict[str, list] = {}
    for r in rows:  # in created order: a setting drawn twice (two backends) pairs its latest samples
        if r[0] not in models or setting[r[5]] == key:
            chosen.setdefault(r[0], []).append(r)
    table: dict[tuple[str, str, int, int], tuple] = {}
    prompts: dict[str, PromptInfo] = {}
    for ck, rs in chosen.items():
        for r in rs:
            table[(ck, r[1], r[9] or 1, r[2])] = (r[3], r[4])
            if r[1] not in prompts:
                prompts[r[1]] = PromptInfo.from_row(r[1], r[7], r[8], r[10])
    return table, prompts


def build_tasks(store: Store, judge_obj: Judge, cfg: JudgeConfig, pairs: list[tuple[Side, Side]],
                report: Report | None = None) -> list[Task]:
    table, prompts = paired_samples(store, cfg, [s for pair in pairs for s in pair], report)
    tasks: list[Task] = []
    ident = [judge_obj.id, judge_obj.version, judge_obj.template]
    # A judge that picks its template by category (FastChat's set) keys each comparison by it too.
    by_category = bool(getattr(getattr(judge_obj, "prompts", None), "reference_categories", None))
    for turn in sorted(getattr(judge_obj, "turns", None) or {1}):
        for a, b in pairs:
            for _, info in sorted(prompts.items()):
                for i in range(cfg.samples):
                    tasks += _pair_tasks(ident, table, info, turn, i, a, b, by_category)
    return tasks


def _pair_tasks(ident: list, table: dict, info: PromptInfo, turn: int, i: int, a: Side, b: Side,
                by_category: bool) -> list[Task]:
    """Both orders of one pair at one turn; none when a side lacks the answer (or, at turn 2, its turn-1 answer)."""
    ga, gb = table.get((a.key, info.id, turn, i)), table.get((b.key, info.id, turn, i))
    earlier = [earlier_answers(table, s.key, info.id, turn, i) for s in (a, b)]
    if ga is None or gb is None or None in earlier:
        return []
    history = [info.history(e) for e in earlier]
    pair_id = content_hash(["pair", *ident, info.id, turn, i, a.key, b.key])
    out = []
    for swapped in (False, True):
        (first, hist_first), (second, hist_second) = ((gb, history[1]), (ga, history[0])) if swapped else (
            (ga, history[0]), (gb, history[1]))
        comp = Comparison(hist_first, first[1] or "", second[1] or "", info.reference_at(turn), turn,
                          hist_second if turn > 1 else None, info.references, info.category)
        if turn == 1:  # the key turn-1 judgments always had: the stored verdicts stay valid
            extra = [info.category] if by_category else []
            cache_key = content_hash(["judgment", *ident, info.messages_json, comp.reference, comp.first,
                                      comp.second, *extra])
        else:
            cache_key = content_hash(["judgment", *ident, turn, [list(m) for m in hist_first],
                                      [list(m) for m in hist_second], list(info.references), info.category,
                                      comp.first, comp.second])
        out.append(Task(content_hash(["judgment-row", cache_key, first[0], second[0]]), cache_key, pair_id, info.id,
                        turn, i, a, b, swapped, first[0], second[0], comp))
    return out


def _not_stored(store: Store, tasks: list[Task], report: Report) -> list[Task]:
    """The tasks without a usable stored verdict; ``Task.failed_row`` marks those whose earlier call failed."""
    if not tasks:
        return []
    with store.connect() as con:
        stored = dict(con.execute(
            "SELECT judgment_id, verdict = 'failed' FROM judgments JOIN (SELECT unnest(?) AS k) ON judgment_id = k",
            [[t.judgment_id for t in tasks]]).fetchall())
    report.stored = sum(not failed for failed in stored.values())
    todo = [t for t in tasks if stored.get(t.judgment_id) is not False]
    for t in todo:
        t.failed_row = t.judgment_id in stored
    return todo


# ------------------------------------------------------------------------------------------------------ judging


def _judge_tasks(store: Store, judge_obj: Judge, todo: list[Task], chunk: int, report: Report, progress: bool):
    from tqdm.auto import tqdm

    if not todo:
        return
    bar = tqdm(total=len(todo), desc=f"judging with {judge_obj.id}", unit="judgment", disable=not progress)
    # Verdicts of the same texts already stored (other pairs, other runs) are read once for the whole run, and what
    # this run answers joins them as it goes: each chunk then costs the store one write, not a read and a write.
    cached = cached_verdicts(store, list({t.cache_key: None for t in todo}))
    submit = None if can_score(judge_obj) else submitter(judge_obj)
    with Writer(store) as writer:
        if submit is not None:
            judge_window(submit, judge_obj, todo, chunk, cached, report, writer, bar)
        else:
            for part in _chunks(todo, chunk):
                writer.put(*_judge_chunk(store, judge_obj, part, cached, report))
                bar.update(len(part))
    bar.close()


def _judge_chunk(store: Store, judge_obj: Judge, part: list[Task], cached: dict[str, Verdict], report: Report):
    """(rows, judgment ids whose failed rows they replace) for one chunk; adds its fresh verdicts to ``cached``."""
    fresh = [t for t in part if t.cache_key not in cached]
    verdicts: dict[str, Verdict] = {}
    if fresh:
        unique = list({t.cache_key: t for t in fresh}.values())
        got = (_verdicts_from_scores(store, judge_obj, unique, report) if can_score(judge_obj)
               else judge_obj.compare([t.comparison for t in unique]))
        if len(got) != len(unique):
            raise RuntimeError(f"judge {judge_obj.id} returned {len(got)} verdicts for {len(unique)} comparisons")
        verdicts = {t.cache_key: v for t, v in zip(unique, got)}
        report.count_calls(got)
    rows, answered = [], set()
    for t in part:
        reused = t.cache_key in cached or t.cache_key in answered  # the same texts twice in a chunk: one call, one cost
        v = cached.get(t.cache_key) or verdicts[t.cache_key]
        answered.add(t.cache_key)
        rows.append(row(judge_obj, t, v, reused))
        account(report, v, reused)
    cached.update((k, v) for k, v in verdicts.items() if v.winner != "failed")
    # One transaction per chunk; a row whose earlier call failed is replaced, a stored verdict never is.
    return rows, [t.judgment_id for t in part if t.failed_row]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _verdicts_from_scores(store: Store, judge_obj: Judge, tasks: list[Task], report: Report) -> list[Verdict]:
    """Score each distinct (conversation, text) once — from the store where already scored — then compare scores."""
    items: dict[str, tuple] = {}  # score_id -> (messages, text, generation_id, prompt_id)
    per_task = []
    for t in tasks:
        ids = []
        for text, gen in ((t.comparison.first, t.gen_first), (t.comparison.second, t.gen_second)):
            sid = score_key(judge_obj, t.comparison.messages, text)
            items.setdefault(sid, (t.comparison.messages, text, gen, t.prompt_id))
            ids.append(sid)
        per_task.append(ids)
    known, scored = pointwise_scores(store, judge_obj, items)
    report.scored += scored
    margin = float(getattr(judge_obj, "tie_margin", 0.0) or 0.0)
    return [verdict_from_scores(known[a], known[b], margin) for a, b in per_task]


def pointwise_scores(store: Store, judge_obj: Judge, items: dict[str, tuple], write: bool = True,
                     ) -> tuple[dict[str, float], int]:
    """The scores cache that judging, the eval's reward metrics and on-policy pairs share. ``items`` maps
    ``score_key(judge, messages, text)`` to (messages, text, generation id, prompt id): scores stored under a key are
    read, the rest scored in one call and, with ``write``, stored. Returns (score by key, how many were scored now)."""
    known = store.get_scores(list(items))
    missing = [k for k in items if k not in known]
    if missing:
        values = [float(v) for v in judge_obj.score([(items[k][0], items[k][1]) for k in missing])]
        if write:
            store.insert_scores([ScoreRecord(k, judge_obj.id, judge_obj.version, items[k][2], items[k][3], v, now())
                                 for k, v in zip(missing, values)])
        known.update(zip(missing, values))
    return known, len(missing)

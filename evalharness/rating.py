"""Single-answer grading (MT-Bench's "single" mode): each model's answers graded alone, into ``ratings``, resumably.

The answers are those the pairwise runner would pair (``evalharness.judging``): one sampling setting for every model,
sample indices below ``--samples``, and each turn the judge has a template for; turn t is shown with the model's own
answers to the earlier turns, as it was generated. A row's cache key is hash(judge id, version, template, conversation,
reference answers, category, answer): the same answer in the same conversation is graded once, whichever model wrote
it, and a re-run makes no call for it. Failed rows are asked again on the next run; an answer with no readable grade
is stored ``unparsed`` with the raw text, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from evalharness.data.types import Message
from evalharness.hashing import content_hash
from evalharness.store import Store, now
from evalharness.store_rows import RatingRecord
from judges.base import Answer, Rating


@dataclass(frozen=True)
class PromptInfo:
    """A prompt as the runners show it: its first messages, its user turns, reference answers and category."""

    id: str
    messages_json: str
    reference: str | None  # turn 1's reference answer
    turns: tuple[str, ...] = ()  # every user turn of a multi-turn set (MT-Bench: two); () for one-turn sets
    references: tuple[str, ...] = ()  # a reference answer per turn, where the set has them
    category: str | None = None

    @classmethod
    def from_row(cls, pid: str, messages_json: str, reference: str | None, meta_json: Any) -> PromptInfo:
        meta = json.loads(meta_json) if isinstance(meta_json, str) and meta_json else (meta_json or {})
        turns = meta.get("turns") or ()
        refs = meta.get("reference_turns") or ()
        category = meta.get("category")
        return cls(pid, messages_json, reference, tuple(map(str, turns)), tuple(str(r or "") for r in refs),
                   category if isinstance(category, str) else None)

    @property
    def messages(self) -> tuple[Message, ...]:
        return tuple(Message(m["role"], m["content"]) for m in json.loads(self.messages_json))

    def history(self, earlier: list[str]) -> tuple[Message, ...]:
        """The conversation before the answer to turn len(earlier) + 1: the first messages, then each earlier answer
        (the same model's own, as ``evalharness.generate`` conditioned it) and the next user turn."""
        msgs = list(self.messages)
        for t, answer in enumerate(earlier, start=1):
            msgs += [Message("assistant", answer), Message("user", self.turns[t])]
        return tuple(msgs)

    def reference_at(self, turn: int) -> str | None:
        if turn == 1:
            return self.reference
        return (self.references[turn - 1] or None) if len(self.references) >= turn else None


def earlier_answers(table: dict, key: str, pid: str, turn: int, index: int) -> list[str] | None:
    """The texts of a model's answers to turns 1..turn-1 of a prompt (sample ``index``), or None if one is missing."""
    found = [table.get((key, pid, t, index)) for t in range(1, turn)]
    return None if any(g is None for g in found) else [g[1] or "" for g in found]


@dataclass
class RateTask:
    rating_id: str
    cache_key: str
    prompt_id: str
    turn: int
    sample_index: int
    model: str
    generation_id: str
    answer: Answer
    failed_row: bool = False


def rate(store: Store, judge_obj, cfg, sides: list, table: dict, prompts: dict[str, PromptInfo], report,
         progress: bool) -> None:
    """Grade every answer of ``sides`` (checkpoint keys in ``.key``) in ``table`` ((checkpoint, prompt, turn, sample)
    -> (generation id, text)), filling ``report`` as the pairwise runner does."""
    tasks = _tasks(judge_obj, cfg.samples, sides, table, prompts)
    report.answers = len(tasks)
    if not tasks:
        report.notes.append(f"no prompt of {cfg.prompts!r} has samples of the models at a turn the judge grades")
        return
    with store.connect() as con:
        stored = dict(con.execute("SELECT rating_id, status = 'failed' FROM ratings JOIN (SELECT unnest(?) AS k) "
                                  "ON rating_id = k", [[t.rating_id for t in tasks]]).fetchall())
    report.stored = sum(not failed for failed in stored.values())
    todo = [t for t in tasks if stored.get(t.rating_id) is not False]
    for t in todo:
        t.failed_row = t.rating_id in stored
    _rate_tasks(store, judge_obj, todo, cfg.chunk, report, progress)


def _tasks(judge_obj, samples: int, sides: list, table: dict, prompts: dict[str, PromptInfo]) -> list[RateTask]:
    ident = [judge_obj.id, judge_obj.version, judge_obj.template]
    tasks = []
    for side in sides:
        for turn in sorted(judge_obj.turns):
            for pid, info in sorted(prompts.items()):
                for i in range(samples):
                    g = table.get((side.key, pid, turn, i))
                    earlier = earlier_answers(table, side.key, pid, turn, i)
                    if g is None or earlier is None:
                        continue
                    answer = Answer(info.history(earlier), g[1] or "", info.reference_at(turn), turn,
                                    info.references, info.category)
                    key = content_hash(["rating", *ident, [list(m) for m in answer.messages], answer.reference,
                                        list(answer.references), answer.category, answer.text])
                    tasks.append(RateTask(content_hash(["rating-row", key, g[0]]), key, pid, turn, i, side.key,
                                          g[0], answer))
    return tasks


def _rate_tasks(store: Store, judge_obj, todo: list[RateTask], chunk: int, report, progress: bool) -> None:
    from tqdm.auto import tqdm

    if not todo:
        return
    bar = tqdm(total=len(todo), desc=f"grading with {judge_obj.id}", unit="answer", disable=not progress)
    cached = _cached_ratings(store, list({t.cache_key: None for t in todo}))
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        unique = list({t.cache_key: t for t in part if t.cache_key not in cached}.values())
        fresh: dict[str, Rating] = {}
        if unique:
            got = judge_obj.rate([t.answer for t in unique])
            if len(got) != len(unique):
                raise RuntimeError(f"judge {judge_obj.id} returned {len(got)} ratings for {len(unique)} answers")
            fresh = {t.cache_key: r for t, r in zip(unique, got)}
            report.count_calls(got)
        rows, answered = [], set()
        for t in part:
            reused = t.cache_key in cached or t.cache_key in answered  # one call, one cost per distinct answer
            r = cached.get(t.cache_key) or fresh[t.cache_key]
            answered.add(t.cache_key)
            report.reused += reused
            report.failed += r.status == "failed"
            report.unparsed += r.status == "unparsed"
            if not reused:
                report.prompt_tokens += r.prompt_tokens or 0
                report.completion_tokens += r.completion_tokens or 0
                report.cost += r.cost or 0.0
            rows.append(RatingRecord(
                t.rating_id, t.cache_key, judge_obj.id, judge_obj.version, judge_obj.template, t.prompt_id, t.turn,
                t.sample_index, t.model, t.generation_id, r.rating, r.status, r.raw, None if reused else r.latency,
                None if reused else r.prompt_tokens, None if reused else r.completion_tokens,
                0.0 if reused else r.cost, r.error, now()))
        store.insert_ratings(rows, replace_failed=[t.rating_id for t in part if t.failed_row])
        cached.update((k, r) for k, r in fresh.items() if r.status != "failed")
        bar.update(len(part))
    bar.close()


def _cached_ratings(store: Store, keys: list[str]) -> dict[str, Rating]:
    with store.connect() as con:
        rows = con.execute("SELECT cache_key, status, rating, raw FROM ratings JOIN (SELECT unnest(?) AS k) "
                           "ON cache_key = k WHERE status <> 'failed' ORDER BY rating_id", [keys]).fetchall()
    out: dict[str, Rating] = {}
    for k, status, value, raw in rows:  # rows of one key are copies of one answer: any of them will do
        out.setdefault(k, Rating(status, value, raw=raw))
    return out

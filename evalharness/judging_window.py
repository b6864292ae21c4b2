"""The judging runner's writes, and its sliding window for judges that answer as they go (``evalharness.judging``).

A judge with ``submit(items, on_verdict)`` (the LLM judge) is kept ``concurrency`` requests busy from the first request
to the last: the runner queues the next chunk of comparisons on it whenever no more than ``concurrency`` are
unanswered, so no chunk boundary waits for a chunk's slowest answer, and every ``chunk`` answers become one write on
the writer thread. A judge without it (PairRM, reward models, plugins, the Batch API) is called chunk by chunk, each chunk written
on the writer thread while the next is judged.

Either way the store sees whole transactions of at most ``chunk`` rows (a little more where the same texts came
twice), at most one write is pending, and an interruption (Ctrl-C, an error) stops the requests and waits for the
pending write: what a ``kill -9`` loses is the answers not yet handed to a write, at most one chunk, plus the write in
progress.
"""

from __future__ import annotations

import queue
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from evalharness.store import Store, now
from evalharness.store_rows import JudgmentRecord
from judges.base import Judge, Verdict


class Writer:
    """Rows handed to one writer thread, one transaction each; ``put`` waits for the write before it, so at most one
    is pending while the caller goes on judging."""

    def __init__(self, store: Store):
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judgments-writer")
        self._pending: Future | None = None

    def put(self, rows: list[JudgmentRecord], replace_failed: list[str]) -> None:
        if not rows:
            return
        self.wait()
        self._pending = self._pool.submit(self.store.insert_judgments, rows, replace_failed=replace_failed)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.wait()  # an interruption too waits for the rows already handed over
        finally:
            self._pool.shutdown()


def submitter(judge_obj: Judge):
    """The judge's ``submit``, where it answers each item as it comes (not a batch-mode judge), else None."""
    submit = getattr(judge_obj, "submit", None)
    return submit if callable(submit) and not getattr(judge_obj, "batch", False) else None


def judge_window(submit, judge_obj: Judge, todo: list, chunk: int, cached: dict[str, Verdict], report: Any,
                 writer: Writer, bar) -> None:
    """Judge ``todo`` (``judging.Task``s) through ``submit``, keeping the judge's ``concurrency`` requests in flight
    across chunk boundaries, and hand every ``chunk`` rows to ``writer``. Texts met twice are asked once: a task
    whose cache key is already asked waits for that answer. ``cached`` gains every answer that did not fail."""
    limit = max(1, int(getattr(judge_obj, "concurrency", 1) or 1))
    answers: queue.SimpleQueue = queue.SimpleQueue()  # (call, index, verdict), or (call, None, its future) at its end
    waiting: dict[str, list] = {}  # cache key asked -> the tasks that take its answer
    calls: list[tuple[list, Future]] = []
    got: list[int] = []  # answers per call
    rows: list[JudgmentRecord] = []
    replace: list[str] = []
    unanswered, pos = 0, 0

    def add(t, v: Verdict, reused: bool) -> None:
        rows.append(row(judge_obj, t, v, reused))
        account(report, v, reused)
        if t.failed_row:
            replace.append(t.judgment_id)

    def flush(least: int) -> None:
        nonlocal rows, replace
        if rows and len(rows) >= least:
            writer.put(rows, replace)
            bar.update(len(rows))
            rows, replace = [], []

    try:
        while True:
            # Queue up to one chunk more than the judge can have in flight: its slots never wait for this thread.
            while unanswered <= limit and pos < len(todo):
                asked, end = [], min(pos + chunk, len(todo))
                while pos < end:
                    t = todo[pos]
                    pos += 1
                    if t.cache_key in cached:
                        add(t, cached[t.cache_key], True)
                    elif t.cache_key in waiting:
                        waiting[t.cache_key].append(t)
                    else:
                        waiting[t.cache_key] = [t]
                        asked.append(t)
                flush(chunk)  # a long run of stored verdicts is written in chunks too
                if asked:
                    n = len(calls)
                    future = submit([t.comparison for t in asked], lambda i, v, n=n: answers.put((n, i, v)))
                    future.add_done_callback(lambda f, n=n: answers.put((n, None, f)))
                    calls.append((asked, future))
                    got.append(0)
                    unanswered += len(asked)
            if not unanswered and pos >= len(todo):
                flush(1)
                return
            flush(chunk)
            for n, i, v in _drain(answers):
                if i is None:  # a call ended: with an error, or with fewer answers than it was asked
                    if not v.cancelled() and v.exception() is not None:
                        raise v.exception()
                    if got[n] != len(calls[n][0]):
                        raise RuntimeError(f"judge {judge_obj.id} returned {got[n]} verdicts for "
                                           f"{len(calls[n][0])} comparisons")
                    continue
                got[n] += 1
                unanswered -= 1
                key = calls[n][0][i].cache_key
                report.count_calls([v])
                for j, t in enumerate(waiting.pop(key)):  # the same texts twice: one call, one cost
                    add(t, v, j > 0)
                if v.winner != "failed":
                    cached[key] = v
    finally:
        for _, future in calls:
            future.cancel()  # an interrupted runner stops its requests (a finished call ignores this)


def _drain(answers: queue.SimpleQueue) -> list:
    """The next answer, waited for, and every one already there: this thread wakes once per burst of answers, not
    once per answer, leaving the GIL to the judges' loop thread."""
    out = [answers.get()]
    while True:
        try:
            out.append(answers.get_nowait())
        except queue.Empty:
            return out


def account(report: Any, v: Verdict, reused: bool) -> None:
    """Count one row's verdict into the run's ``judging.Report``."""
    report.reused += reused
    report.failed += v.winner == "failed"
    report.unparsed += v.winner == "unparsed"
    if not reused:
        report.truncated += bool(v.meta.get("truncated"))
        report.prompt_tokens += v.prompt_tokens or 0
        report.completion_tokens += v.completion_tokens or 0
        report.cost += v.cost or 0.0


def cached_verdicts(store: Store, keys: list[str]) -> dict[str, Verdict]:
    """The stored verdicts (not failed) of these cache keys, whichever generations they were stored for."""
    with store.connect() as con:
        rows = con.execute(
            "SELECT cache_key, any_value(verdict), any_value(probability), any_value(raw), any_value(strong) "
            "FROM judgments JOIN (SELECT unnest(?) AS k) ON cache_key = k WHERE verdict <> 'failed' "
            "GROUP BY cache_key", [keys]).fetchall()
    return {k: Verdict(v, probability=p, raw=raw, meta={} if strong is None else {"strong": strong})
            for k, v, p, raw, strong in rows}


def row(judge_obj: Judge, t: Any, v: Verdict, reused: bool) -> JudgmentRecord:
    return JudgmentRecord(
        t.judgment_id, t.cache_key, judge_obj.id, judge_obj.version, judge_obj.template, t.prompt_id, t.turn,
        t.sample_index, t.pair_id, t.a.key, t.b.key, t.swapped, t.gen_first, t.gen_second, v.winner, v.probability,
        v.raw, None if reused else v.latency, None if reused else v.prompt_tokens,
        None if reused else v.completion_tokens, 0.0 if reused else v.cost, v.error, now(), v.meta.get("strong"))

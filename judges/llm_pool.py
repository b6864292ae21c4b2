"""Where LLM judges run their requests: one event loop in a daemon thread for the whole process, and each judge's pool
of concurrency slots and request pacing on it (``judges.llm``)."""

from __future__ import annotations

import asyncio
import threading

_LOOP: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None
_LOOP_LOCK = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The event loop every LLM judge of this process runs its requests on, in a daemon thread.

    One long-lived loop lets a judge keep its client and open connections between calls (a runner makes many), and
    makes ``compare`` work the same from sync code and from inside someone else's loop.
    """
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or not _LOOP[1].is_alive():  # not yet started, or a forked child without the thread
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="llm-judge-loop", daemon=True)
            thread.start()
            _LOOP = (loop, thread)
        return _LOOP[0]


def on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def close_client(client, loop: asyncio.AbstractEventLoop) -> None:
    if loop.is_running() and not on_loop_thread(loop):
        asyncio.run_coroutine_threadsafe(client.close(), loop)  # not awaited: a finalizer must not block


class Run:
    """One call's view of its judge's pool, counting the requests the call sent (its retries included)."""

    def __init__(self, pool: Pool):
        self.slots, self.pace = pool.slots, pool.pace
        self.requests = 0


class Pool:
    """What every call of one judge shares on its loop: the concurrency slots and the request pacing. Shared, not per
    call, so that calls in flight together (a runner queueing its next items) hold ``concurrency`` requests between
    them and keep to one rate limit."""

    def __init__(self, concurrency: int, per_minute: float | None):
        self.slots = asyncio.Semaphore(concurrency)
        self._interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def pace(self) -> None:
        if not self._interval:
            return
        async with self._lock:
            now = asyncio.get_running_loop().time()
            wait = self._next - now
            self._next = max(now, self._next) + self._interval
        if wait > 0:
            await asyncio.sleep(wait)

"""Judgments per second of the llm judge at concurrency 1 vs C, against an endpoint with a fixed latency.

    .venv/bin/python bench/judge_llm_concurrency.py                      # N=160, latency 50 ms, C=16: ~2 min
    .venv/bin/python bench/judge_llm_concurrency.py --latency 0.1 --only judge
    .venv/bin/python bench/judge_llm_concurrency.py --server thread      # the server in the bench's own process

The endpoint is the test suite's loopback server (tests/judges/loopback.py: a real HTTP/1.1 server speaking
/v1/chat/completions) answering every request after ``--latency`` seconds with an MT-Bench verdict (the longer response
wins). By default it runs in a child process, as a remote endpoint would: its threads then don't compete with the
client for the bench process's GIL. ``--server thread`` runs it in-process to show that cost.

Three clients send the same N requests (the judge's rendered prompts) with the same concurrency limit, one after
the other against the same server:
- ``judge``: ``LLMJudge.compare`` (rendering, the asyncio pool, the openai client on the lean transport a plain-http
  endpoint gets, parsing into verdicts);
- ``judge-httpx``: the same judge with ``transport=httpx`` (the openai client's default transport, which https
  endpoints get);
- ``openai``: a bare ``AsyncOpenAI`` with an ``asyncio.Semaphore``, the client library the judge is built on;
- ``raw``: HTTP/1.1 written by hand over asyncio streams, one keep-alive connection per slot: what this machine and
  server allow with next to no client overhead.
Each client is made once and keeps its connections between calls, as the judge does; a warm-up call of C requests
opens them, then the table shows the median of ``--repeats`` timed calls. The concurrency-limited ideal is ceil(N / C) * latency; efficiency = ideal / measured. The server's
peak of requests in flight shows the overlap really happened; client CPU is this process's CPU time per request
(the client's own cost, which bounds throughput when the cores are busy). The machine's load average is printed
before and after: on a shared machine, other processes' load changes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.judges.loopback, when the bench runs from a checkout

from evalharness.data.types import Message  # noqa: E402
from judges.base import Comparison  # noqa: E402
from judges.llm import LLMJudge  # noqa: E402
from tests.judges.loopback import Loopback, mt_bench_judge, prefer_longer  # noqa: E402

SIDES = ("judge", "judge-httpx", "openai", "raw")


def serve(latency: float) -> None:
    """Child mode: serve until stdin closes; print the URL, then on every 'peak' line the peak in-flight count and
    on every 'requests' line the chat completions received, each since the last such line."""
    with Loopback(mt_bench_judge(prefer_longer, delay=latency)) as server:
        print(server.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "peak":
                print(server.peak_in_flight, flush=True)
                server.peak_in_flight = 0
            elif line.strip() == "requests":
                print(len(server.requests), flush=True)
                server.requests.clear()


class ChildServer:
    def __init__(self, latency: float):
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", "--latency", str(latency)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()

    def take_peak(self) -> int:
        return self._ask("peak")

    def take_requests(self) -> int:
        return self._ask("requests")

    def _ask(self, what: str) -> int:
        self.proc.stdin.write(f"{what}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class ThreadServer:
    def __init__(self, latency: float):
        self.server = Loopback(mt_bench_judge(prefer_longer, delay=latency)).start()
        self.url = self.server.url

    def take_peak(self) -> int:
        peak, self.server.peak_in_flight = self.server.peak_in_flight, 0
        return peak

    def close(self) -> None:
        self.server.stop()


def comparisons(n: int) -> list[Comparison]:
    return [Comparison((Message("user", f"Question {i}: say something kind."),), "Kind words. " * (i % 4 + 1),
                       "Kind words, twice over. " * (i % 3 + 1)) for i in range(n)]


class JudgeSide:
    transport = "auto"

    def __init__(self, url: str, concurrency: int):
        self.judge = LLMJudge(model="loopback", base_url=url, concurrency=concurrency, max_retries=0,
                              transport=self.transport)

    def __call__(self, items: list[Comparison], bodies: list[dict]) -> None:
        verdicts = self.judge.compare(items)
        bad = [v for v in verdicts if v.winner not in ("first", "second", "tie")]
        if bad:
            raise SystemExit(f"{len(bad)} verdicts were not parsed, e.g. {bad[0]}")

    def close(self) -> None:
        self.judge.close()


class JudgeHttpxSide(JudgeSide):
    transport = "httpx"


class LoopSide:
    """A client that lives on its own event loop between calls (as the judge's does), so connections are reused."""

    def __init__(self, url: str, concurrency: int):
        self.url, self.concurrency = url, concurrency
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.open())

    def __call__(self, items: list[Comparison], bodies: list[dict]) -> None:
        slots = asyncio.Semaphore(self.concurrency)

        async def one(body):
            async with slots:
                return await self.send(body)

        async def all_of():
            return await asyncio.gather(*(one(b) for b in bodies))

        answers = self.loop.run_until_complete(all_of())
        assert all(self.content(a) for a in answers)

    def close(self) -> None:
        self.loop.run_until_complete(self.shut())
        self.loop.close()


class OpenAISide(LoopSide):
    """A bare ``AsyncOpenAI`` (the same low-level call the judge makes) with an ``asyncio.Semaphore``."""

    async def open(self):
        import openai

        self.client = openai.AsyncOpenAI(api_key="sk-bench", base_url=self.url, max_retries=0)

    async def send(self, body):
        return await self.client.post("/chat/completions", body=body, cast_to=object)

    def content(self, answer):
        return answer["choices"][0]["message"]["content"]

    async def shut(self):
        await self.client.close()


class RawSide(LoopSide):
    """HTTP/1.1 by hand over asyncio streams, one keep-alive connection per slot."""

    async def open(self):
        u = urlparse(self.url)
        self.path, self.netloc = u.path, u.netloc
        self.free: asyncio.Queue = asyncio.Queue()
        for _ in range(self.concurrency):
            self.free.put_nowait(await asyncio.open_connection(u.hostname, u.port))

    async def send(self, body):
        data = json.dumps(body).encode()
        reader, writer = await self.free.get()
        writer.write(f"POST {self.path}/chat/completions HTTP/1.1\r\nHost: {self.netloc}\r\nAuthorization: Bearer "
                     f"sk-bench\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                     + data)
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
        answer = json.loads(await reader.readexactly(int(head.split("content-length:")[1].split("\r\n")[0])))
        self.free.put_nowait((reader, writer))
        return answer

    def content(self, answer):
        return answer["choices"][0]["message"]["content"]

    async def shut(self):
        while not self.free.empty():
            self.free.get_nowait()[1].close()


SIDE_CLASSES = {"judge": JudgeSide, "judge-httpx": JudgeHttpxSide, "openai": OpenAISide, "raw": RawSide}


def measure(side: str, url: str, items: list[Comparison], concurrency: int, repeats: int, server):
    """Median wall time and median client CPU time over the repeats, and the server's peak in flight."""
    template = LLMJudge(model="loopback", base_url=url).prompt
    bodies = [{"model": "loopback", "messages": template.render(c), "temperature": 0.0, "max_tokens": 1024}
              for c in items]
    client = SIDE_CLASSES[side](url, concurrency)
    try:
        client(items[:concurrency], bodies[:concurrency])  # warm-up: imports, the connections
        server.take_peak()
        times, cpus, peaks = [], [], []
        for _ in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            client(items, bodies)
            times.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
            peaks.append(server.take_peak())
    finally:
        client.close()
    return statistics.median(times), statistics.median(cpus), max(peaks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=160, help="comparisons per call")
    ap.add_argument("--latency", type=float, default=0.05, help="server latency per request, seconds")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--server", choices=["process", "thread"], default="process")
    ap.add_argument("--only", default=",".join(SIDES), help=f"comma-separated subset of {','.join(SIDES)}")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.latency)
    sides = [s for s in SIDES if s in args.only.split(",")]

    os.environ.pop("OPENAI_BASE_URL", None)
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-placeholder")  # the loopback checks no key
    items = comparisons(args.n)
    load = os.getloadavg()
    server = (ChildServer if args.server == "process" else ThreadServer)(args.latency)
    rows = {}
    try:
        for side in sides:
            for c in (1, args.concurrency):
                elapsed, cpu, peak = measure(side, server.url, items, c, args.repeats, server)
                rows[side, c] = (elapsed, math.ceil(args.n / c) * args.latency, peak, cpu / args.n)
    finally:
        server.close()

    import openai

    print(f"# llm judge concurrency: N={args.n}, latency {args.latency * 1e3:.0f} ms, server in a {args.server}, "
          f"median of {args.repeats}; python {platform.python_version()}, openai {openai.__version__}, "
          f"{os.cpu_count()} CPUs; load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print("| client | concurrency | time (s) | requests/s | ideal time (s) | efficiency vs ideal | peak in flight "
          "| client CPU ms/request |")
    print("|---|---|---|---|---|---|---|---|")
    for (side, c), (elapsed, ideal, peak, cpu) in rows.items():
        print(f"| {side} | {c} | {elapsed:.3f} | {args.n / elapsed:.1f} | {ideal:.3f} | {ideal / elapsed:.0%} | {peak} "
              f"| {cpu * 1e3:.2f} |")
    print()
    c = args.concurrency
    for side in sides:
        (t1, *_), (tc, ideal, *_) = rows[side, 1], rows[side, c]
        print(f"{side}: C={c} / C=1 throughput {t1 / tc:.2f}x (ideal {c}x when C divides N), "
              f"efficiency at C={c} {ideal / tc:.0%}")
    if "judge" in sides:
        for peer in sides[1:]:
            print(f"judge / {peer} throughput at C={c}: {rows[peer, c][0] / rows['judge', c][0]:.2f}x")


if __name__ == "__main__":
    main()

"""A real OpenAI-compatible HTTP server on 127.0.0.1 with scripted behaviour, for tests and benches of LLM judges.

It speaks ``GET /v1/models`` and ``POST /v1/chat/completions`` over HTTP/1.1 (keep-alive; asyncio, one thread), so
requests made by the ``openai`` client really overlap, wait and fail the way they would against a remote endpoint.
What it answers is a function of the request (``behaviour``), optionally preceded by a ``script`` of replies used in
arrival order (e.g. one 429 with Retry-After, then normal answers). Every request is recorded with its headers, body
and timing, and the server counts how many were in flight at once.

    with Loopback(behaviour=mt_bench_judge(prefer_longer)) as server:
        judge = LLMJudge(model="loop", base_url=server.url)
        ...
        assert server.peak_in_flight == 8

or as the pytest fixture ``loopback`` (see ``loopback_fixture``).

Nothing here prints or logs a request, so a test can assert that no header (the API key) reached stderr through the
server.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass
class Reply:
    """One scripted answer: a status, a body (a dict is sent as JSON, bytes as they are), headers and a delay."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a slow endpoint, or one slower than the client's timeout)


@dataclass
class Request:
    """What the server received: path, headers (lower-case names), parsed JSON body, arrival and answer times."""

    path: str
    headers: dict[str, str]
    body: Any
    started: float
    finished: float | None = None

    @property
    def messages(self) -> list[dict]:
        return list((self.body or {}).get("messages", []))

    @property
    def prompt(self) -> str:
        """All message contents joined: what a scripted judge reads."""
        return "\n".join(str(m.get("content", "")) for m in self.messages)


def completion(text: str | None, *, prompt_tokens: int = 11, completion_tokens: int = 7, model: str = "loopback",
               logprobs: list[tuple[str, list[tuple[str, float]]]] | None = None, finish_reason: str = "stop",
               delay: float = 0.0) -> Reply:
    """A successful chat completion with ``text`` as the answer and the given usage.

    ``logprobs``: per generated token, (token, [(alternative, log-prob), ...]); the first alternative is the token's own.
    """
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                              "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = {"content": [
            {"token": tok, "logprob": alts[0][1] if alts else 0.0, "bytes": list(tok.encode()),
             "top_logprobs": [{"token": a, "logprob": lp, "bytes": list(a.encode())} for a, lp in alts]}
            for tok, alts in logprobs]}
    body = {"id": "chatcmpl-loopback", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
    return Reply(200, body, delay=delay)


def error(status: int, message: str = "scripted error", retry_after: float | None = None, delay: float = 0.0) -> Reply:
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    return Reply(status, {"error": {"message": message, "type": "loopback", "code": status}}, headers, delay)


def malformed(delay: float = 0.0) -> Reply:
    """A 200 whose body is not JSON (a proxy's HTML page, a truncated stream)."""
    return Reply(200, b'{"id": "chatcmpl-loopback", "choices": [', {"Content-Type": "application/json"}, delay)


def no_choices(delay: float = 0.0) -> Reply:
    body = {"id": "chatcmpl-loopback", "object": "chat.completion", "created": 0, "model": "loopback", "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}}
    return Reply(200, body, delay=delay)


_RESPONSE = re.compile(r"### Response (A|B)\n(.*?)\n### End of response \1", re.S)


def shown_responses(prompt: str) -> tuple[str, str]:
    """The two responses of a prompt rendered with the project's own ``mt-bench`` template, in shown order."""
    found = dict(_RESPONSE.findall(prompt))
    if set(found) != {"A", "B"}:
        raise ValueError("prompt does not show Response A and Response B")
    return found["A"], found["B"]


def prefer_longer(first: str, second: str) -> str:
    """A judge with a length bias: the longer response wins, equal lengths tie."""
    return "A" if len(first) > len(second) else "B" if len(second) > len(first) else "C"


def always_first(first: str, second: str) -> str:
    """A judge with a pure position bias."""
    return "A"


def mt_bench_judge(decide: Callable[[str, str], str], delay: float = 0.0,
                   explanation: str = "Both answers address the question.") -> Callable[[Request], Reply]:
    """A behaviour that reads the two shown responses and answers ``<explanation> [[X]]`` with X = decide(a, b).

    Usage is counted in whitespace-separated words, so tests can recompute it from the recorded request.
    """

    def behaviour(req: Request) -> Reply:
        text = f"{explanation} [[{decide(*shown_responses(req.prompt))}]]"
        return completion(text, prompt_tokens=len(req.prompt.split()), completion_tokens=len(text.split()),
                          delay=delay)

    return behaviour


def fixed(reply: Reply) -> Callable[[Request], Reply]:
    return lambda req: reply


class Loopback:
    """The server: an asyncio HTTP/1.1 server on a free port, its event loop in a daemon thread.

    One thread serves every connection (no thread per connection): many slow answers in flight cost nothing, and a
    test's client contends with one server thread for the GIL, not with one per connection. ``url`` is the base URL
    to give an OpenAI client.
    """

    def __init__(self, behaviour: Callable[[Request], Reply] | None = None, script: Iterable[Reply] = (),
                 model: str = "loopback"):
        self.behaviour = behaviour or fixed(completion("[[C]]"))
        self.script = list(script)
        self.model = model
        self.requests: list[Request] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.connections = 0  # TCP connections accepted: a client that reuses its connections opens few
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def completions(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def start(self) -> Loopback:
        self._loop = asyncio.new_event_loop()
        started = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopback", daemon=True)
        self._thread.start()
        self._port = started.result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> Loopback:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _listen(self) -> int:
        # A deep backlog: many clients opening connections at once must not see refused or retried SYNs.
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=512)
        return self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._server.close()
        current = asyncio.current_task()
        for task in asyncio.all_tasks():  # connections still open, answers still sleeping: the test is over
            if task is not current:
                task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:  # keep-alive: one connection carries many requests, as with real endpoints
                line = await reader.readline()
                if not line.strip():
                    break
                method, path = line.decode("latin-1").split()[:2]
                headers = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    key, _, value = h.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length") or 0))
                req = Request(path, headers, _json_or_none(raw), time.perf_counter())
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                try:
                    if method == "POST":
                        self.requests.append(req)
                    reply = self._route(method, req)
                    if reply.delay:
                        await asyncio.sleep(reply.delay)
                    writer.write(_encode(reply))
                    await writer.drain()
                finally:
                    req.finished = time.perf_counter()
                    self.in_flight -= 1
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client gave up (its timeout) or sent something that is not HTTP: nothing to answer
        except asyncio.CancelledError:
            pass  # the server is stopping; ending quietly keeps asyncio from logging each open connection
        finally:
            writer.close()

    def _route(self, method: str, req: Request) -> Reply:
        path = req.path.split("?")[0].rstrip("/")
        if method == "GET" and path.endswith("/models"):
            return Reply(200, {"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "loopback"}]})
        if method != "POST" or not path.endswith("/chat/completions"):
            return error(404, f"no route {method} {req.path}")
        if req.body is None:
            return error(400, "request body is not JSON")
        if self.script:
            return self.script.pop(0)
        return self.behaviour(req)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _encode(reply: Reply) -> bytes:
    """Status line, headers and body as one write (one packet for small replies: no Nagle / delayed-ACK stall)."""
    data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
    headers = {"Content-Type": "application/json", **reply.headers, "Content-Length": str(len(data))}
    head = f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode("latin-1") + data


def _fixture(fn):
    try:
        import pytest
    except ImportError:  # the bench imports this module where pytest may be absent
        return fn
    return pytest.fixture(fn, name="loopback")


@_fixture
def loopback_fixture():
    """The pytest fixture ``loopback``: a fresh server per test; set its ``behaviour`` / ``script`` in the test.

    ``from tests.judges.loopback import loopback_fixture  # noqa: F401`` makes it available to a test module.
    """
    with Loopback() as server:
        yield server

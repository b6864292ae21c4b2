"""The llm judge's lean HTTP/1.1 transport against a raw socket server that answers the way real servers do and misbehave:
chunked and gzip bodies, Connection: close, HTTP/1.0 bodies that run to the end, keep-alive connections closed while
idle (the request is sent once more, never twice to a server that got it), answers cut off, and when it is used."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading

import pytest

from evalharness.data.types import Message
from judges import transport
from judges.base import Comparison
from judges.llm import LLMJudge

ANSWER = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "raw",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "[[A]]"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}).encode()
ITEM = Comparison((Message("user", "Say something kind."),), "Kind words.", "Ok.")


def ok(body: bytes = ANSWER, headers: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
            .encode() + body)


def chunked(body: bytes = ANSWER) -> bytes:
    parts = [body[:17], body[17:40], body[40:]]
    wire = b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in parts)
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + wire + \
        b"0\r\nX-Trailer: 1\r\n\r\n"


class RawServer:
    """Answers request i with ``replies[i]`` (the last one repeats): (bytes to send, then 'keep' | 'close')."""

    def __init__(self, replies: list[tuple[bytes, str]]):
        self.replies, self.received, self.connections = replies, [], 0
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(asyncio.start_server(self.serve, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def serve(self, reader, writer):
        self.connections += 1
        try:
            while line := await reader.readline():
                headers = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.received.append((line.decode().split()[:2], headers, json.loads(body)))
                data, then = self.replies[min(len(self.received), len(self.replies)) - 1]
                writer.write(data)
                await writer.drain()
                if then == "close":
                    break
        except (asyncio.CancelledError, ConnectionError):
            pass  # the test is over, or the client went away
        finally:
            writer.close()

    def stop(self):
        async def shutdown():
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def raw(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-transport-test")
    servers = []

    def make(replies):
        servers.append(RawServer(replies))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


def _judge(server, **kw) -> LLMJudge:
    return LLMJudge(model="raw", base_url=server.url, backoff=0.01, **kw)


def _transport(judge) -> transport.LeanTransport:
    t = judge._client._client._transport
    assert isinstance(t, transport.LeanTransport)
    return t


@pytest.mark.parametrize("reply", [ok(), chunked(), ok(gzip.compress(ANSWER), "Content-Encoding: gzip\r\n")],
                         ids=["content-length", "chunked", "gzip"])
def test_bodies_in_each_framing_are_read_whole(raw, reply):
    server = raw([(reply, "keep")])
    with _judge(server) as judge:
        verdicts = judge.compare([ITEM, ITEM, ITEM])
        assert [v.winner for v in verdicts] == ["first"] * 3
        assert judge.usage.prompt_tokens == 15
        assert _transport(judge).opened == server.connections <= 3  # sequential-enough requests share connections
    (method, path), headers, body = server.received[0]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert headers["authorization"] == "Bearer sk-transport-test" and headers["host"].startswith("127.0.0.1:")
    assert body["model"] == "raw" and body["messages"][-1]["role"] == "user"


def test_an_http_1_0_body_without_length_runs_to_the_end_of_the_connection(raw):
    server = raw([(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + ANSWER, "close")])
    with _judge(server, concurrency=1) as judge:
        assert [v.winner for v in judge.compare([ITEM, ITEM])] == ["first", "first"]
        assert _transport(judge).opened == 2  # nothing to reuse: the end of the body was the end of the connection


def test_connection_close_is_honoured(raw):
    server = raw([(ok(headers="Connection: close\r\n"), "close")])
    with _judge(server, concurrency=1) as judge:
        assert [v.winner for v in judge.compare([ITEM] * 3)] == ["first"] * 3
    assert server.connections == 3 and len(server.received) == 3


def test_a_keep_alive_connection_closed_while_idle_is_replaced_and_nothing_is_sent_twice(raw):
    # The server answers without saying "close", then closes: the client's idle connection is dead. The next
    # request finds that out when it reads, and goes once more over a fresh connection.
    server = raw([(ok(), "close")])
    with _judge(server, concurrency=1, max_retries=0) as judge:
        for _ in range(3):
            assert [v.winner for v in judge.compare([ITEM])] == ["first"]
            asyncio.run(asyncio.sleep(0.05))  # the close reaches the client's idle connection
        assert judge.usage.requests == 3 and judge.usage.retries == 0
    assert len(server.received) == 3 and server.connections == 3


def test_an_answer_cut_off_is_a_connection_error_retried_by_the_judge_not_resent_by_the_transport(raw):
    cut = ok()[: len(ok()) - 20]
    server = raw([(cut, "close"), (ok(), "keep")])
    with _judge(server, max_retries=2) as judge:
        [verdict] = judge.compare([ITEM])
    assert verdict.winner == "first" and verdict.meta["attempts"] == 2  # the judge's own retry, counted
    assert len(server.received) == 2


def test_an_answer_cut_off_every_time_fails_after_the_judges_retries(raw):
    server = raw([(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"id\":", "close")])
    with _judge(server, max_retries=1) as judge:
        [verdict] = judge.compare([ITEM])
    assert verdict.winner == "failed" and "RemoteProtocolError" in verdict.error
    assert len(server.received) == 2


def test_garbage_instead_of_http_is_a_failed_verdict(raw):
    server = raw([(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "close")])
    with _judge(server, max_retries=0) as judge:
        [verdict] = judge.compare([ITEM])
    assert verdict.winner == "failed" and "not an HTTP/1.x status line" in verdict.error


def test_a_refused_connection_is_a_connection_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = LLMJudge(model="raw", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    [verdict] = judge.compare([ITEM])
    assert verdict.winner == "failed" and "APIConnectionError" in verdict.error


@pytest.mark.parametrize("url, env, expected", [
    ("http://127.0.0.1:8000/v1", {}, True),
    ("https://api.openai.com/v1", {}, False),
    ("http://gpu-box:8000/v1", {"http_proxy": "http://proxy:3128"}, False),
    ("http://gpu-box:8000/v1", {"http_proxy": "http://proxy:3128", "no_proxy": "gpu-box"}, True),
    (None, {}, False),
])
def test_used_for_plain_http_without_a_proxy_only(monkeypatch, url, env, expected):
    for k in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "NO_PROXY"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert transport.usable(url) is expected

"""A lean HTTP/1.1 transport for the llm judge's plain-``http://`` endpoints (a vLLM ``serve`` on this machine or the
next one), under the openai client.

Against a fast endpoint the judge's throughput is bound by the client's CPU, not the server: the openai client on its
default transport (httpcore, h11 and anyio under httpx) costs about 1 ms of CPU per request, all on one event-loop
thread, which at 16 requests in flight and 50 ms answers is a third of every cycle. This transport speaks the subset
of HTTP/1.1 a JSON API needs over asyncio streams (one request in one write, a Content-Length or chunked body back,
keep-alive connections reused), which brings the same client to about half that cost, and leaves the openai client
everything else: the request it builds, status errors, retries (the judge's), and the mapping of transport errors to
``APIConnectionError`` / ``APITimeoutError``.

It is used only where it is the whole story: plain ``http`` with no proxy configured for the host. ``https``
endpoints (TLS, HTTP/2, proxies: the hosted APIs, whose latency is seconds and whose client cost is noise) keep
httpx's own transport. A connection the server closed while it sat idle is replaced and the request sent once more
on a fresh one, as any keep-alive client does; a request that got part of an answer is never resent.
"""

from __future__ import annotations

import asyncio
import importlib
import urllib.request

import openai


def _client_library():
    """The HTTP library the installed openai client is built on (httpx for openai 1.x, httpx2 later)."""
    for cls in openai.DefaultAsyncHttpxClient.__mro__:
        if cls.__name__ == "AsyncClient":
            return importlib.import_module(cls.__module__.split(".")[0])
    raise ImportError("the openai client's HTTP library was not found")  # pragma: no cover


httpx = _client_library()

MAX_IDLE = 64  # idle keep-alive connections kept per endpoint
MAX_HEADER_BYTES = 64 * 1024


def usable(base_url: str | None) -> bool:
    """Whether the lean transport serves this endpoint: plain http, and no proxy configured for its host."""
    if not base_url:
        return False
    url = httpx.URL(base_url)
    if url.scheme != "http":
        return False
    proxies = urllib.request.getproxies()
    if not (proxies.get("http") or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(url.host))


class _Closed(Exception):
    """The server closed a reused keep-alive connection before sending any byte of the answer."""


def http_client() -> httpx.AsyncClient:
    """The openai client's default HTTP client (its limits, timeouts, redirects) on the lean transport."""
    return openai.DefaultAsyncHttpxClient(transport=LeanTransport())


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive over asyncio streams; anything but plain ``http`` goes to ``fallback``."""

    def __init__(self, fallback: httpx.AsyncBaseTransport | None = None):
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self._fallback = fallback or httpx.AsyncHTTPTransport()
        self.opened = 0  # connections opened, for tests and benches

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            return await self._fallback.handle_async_request(request)
        timeouts = request.extensions.get("timeout") or {}
        connect_t, read_t = timeouts.get("connect"), timeouts.get("read")
        payload = _encode(request, await request.aread())
        address = (request.url.host, request.url.port or 80)
        while True:
            reused = bool(self._idle.get(address))
            reader, writer = self._idle[address].pop() if reused else await self._open(address, connect_t)
            try:
                writer.write(payload)
                status, headers, body, keep = await _with_timeout(_read_response(reader, request.method, reused),
                                                                  read_t, httpx.ReadTimeout)
            except _Closed:
                writer.close()
                continue  # a stale keep-alive connection: the request never reached the server, send it again
            except httpx.TransportError:
                writer.close()
                raise
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                writer.close()
                raise httpx.RemoteProtocolError(f"{type(e).__name__}: {e}", request=request) from e
            except BaseException:  # cancelled mid-answer: the connection's state is unknown, so it can't be reused
                writer.close()
                raise
            if keep and len(self._idle.setdefault(address, [])) < MAX_IDLE:
                self._idle[address].append((reader, writer))
            else:
                writer.close()
            return httpx.Response(status, headers=headers, content=body, request=request,
                                  extensions={"http_version": b"HTTP/1.1"})

    async def _open(self, address: tuple[str, int], timeout: float | None):
        try:
            conn = await _with_timeout(asyncio.open_connection(*address), timeout, httpx.ConnectTimeout)
        except OSError as e:
            raise httpx.ConnectError(f"{type(e).__name__}: {e}") from e
        self.opened += 1
        return conn

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                writer.close()
        self._idle.clear()
        await self._fallback.aclose()


async def _with_timeout(awaitable, timeout: float | None, error: type[httpx.TimeoutException]):
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise error(f"no answer within {timeout} s") from None


def _encode(request: httpx.Request, body: bytes) -> bytes:
    """The request line, headers and body as one write (one packet for a small request)."""
    target = request.url.raw_path.decode("ascii")
    headers = [(k, v) for k, v in request.headers.raw if k.lower() not in (b"content-length", b"transfer-encoding")]
    if body or request.method in ("POST", "PUT", "PATCH"):
        headers.append((b"Content-Length", str(len(body)).encode()))
    head = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return f"{request.method} {target} HTTP/1.1\r\n".encode("ascii") + head + b"\r\n" + body


async def _read_response(reader: asyncio.StreamReader, method: str, reused: bool):
    """(status, headers, body, keep_alive) of one answer; ``_Closed`` when a reused connection was already shut."""
    try:
        line = await reader.readline()
    except ConnectionError:
        if reused:
            raise _Closed from None
        raise
    if not line:
        if reused:
            raise _Closed
        raise httpx.RemoteProtocolError("the server closed the connection without answering")
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
    version, status = parts[0], int(parts[1])
    headers: list[tuple[bytes, bytes]] = []
    size = len(line)
    while (h := await reader.readline()) not in (b"\r\n", b"\n"):
        if not h:
            raise httpx.RemoteProtocolError("the connection closed inside the response headers")
        size += len(h)
        if size > MAX_HEADER_BYTES:
            raise httpx.RemoteProtocolError("response headers over 64 KiB")
        key, _, value = h.partition(b":")
        headers.append((key.strip(), value.strip()))
    fields = {k.lower(): v.lower() for k, v in headers}
    connection = fields.get(b"connection", b"")
    keep = b"close" not in connection and (version != "HTTP/1.0" or b"keep-alive" in connection)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif b"chunked" in fields.get(b"transfer-encoding", b""):
        body = await _read_chunked(reader)
    elif b"content-length" in fields:
        body = await reader.readexactly(int(fields[b"content-length"]))
    else:  # no framing: the body runs to the end of the connection
        body, keep = await reader.read(), False
    # The body is handed over decoded: drop the headers that describe the wire form.
    headers = [(k, v) for k, v in headers if k.lower() not in (b"transfer-encoding", b"content-length")]
    headers.append((b"Content-Length", str(len(body)).encode()))
    return status, headers, body, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readline()).split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the chunk's CRLF

"""The LLM judge: any OpenAI-compatible chat endpoint (OpenAI, vLLM ``serve``, others) with a pairwise template.

Requests run concurrently on an asyncio pool bounded by ``concurrency``; each is retried on 408/409/429/5xx, timeouts
and connection errors with exponential backoff and jitter (a server's Retry-After is honoured as given), at most
``max_retries`` times, and then becomes a ``failed`` verdict with the reason. The openai client's own retries are off,
so this policy is the only one. An answer the template's parser can't read is ``unparsed``, never guessed.

Every judge runs its requests on one event loop in a daemon thread (shared by all judges of the process), where it
keeps its client and keep-alive connections between ``compare`` calls: a runner that judges in chunks pays for a
client (20-50 ms) and the connections' TLS handshakes once. ``compare`` blocks its caller, from sync code or from
inside another event loop alike; ``acompare`` awaits without blocking.

The API key comes from the environment (``OPENAI_API_KEY``), read when the judge's client is made (its first call);
a key-less local server (``base_url`` given, no key set) gets a placeholder. The key is never part of the judge's id,
a verdict, an error or a log line: errors are scrubbed of it, because a server may echo the request back.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import logging
import math
import os
import random
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from urllib.parse import urlparse

from evalharness.hashing import content_hash
from judges import parsers
from judges.base import Answer, Comparison, JudgeError, Rating, Verdict
from judges.llm_pool import Pool, Run, background_loop, close_client, on_loop_thread
from judges.templates import PAIRWISE, SINGLE, Template, TemplateSet, load_templates

log = logging.getLogger(__name__)

VERSION = "1"
PLACEHOLDER_KEY = "EMPTY"  # what vLLM's and most local servers' docs pass when they check no key
MAX_RETRY_AFTER = 120.0  # a longer Retry-After is capped here: waiting minutes per request would stall the batch
_RETRY_STATUS = frozenset({408, 409, 429})


@dataclass
class Usage:
    """What a judge has spent so far (all ``compare`` calls): requests, tokens and cost in the price table's unit."""

    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    failed: int = 0
    unparsed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


class LLMJudge:
    """``llm:model=NAME[,base_url=URL,template=mt-bench,mode=pairwise,concurrency=8,...]``.

    ``template``: a built-in name or a path (see ``judges.templates``); FastChat's ``judge_prompts.jsonl`` without an
    entry is MT-Bench's whole set, each item judged with the template for its category and turn. ``mode``:
    ``pairwise`` (``compare``: verdicts between two responses) or ``single`` (``rate``: a grade of each answer with
    the set's single-answer templates, FastChat's 1-10). ``price_in`` / ``price_out``: cost per million
    prompt / completion tokens; without them ``cost`` is None. ``logprobs``: ask for the top log-probs of the answer
    tokens and set P(first) from the verdict token's alternatives, for formats whose verdict is one token.
    ``requests_per_minute``: spread request starts evenly (an endpoint's rate limit), on top of ``concurrency``.
    ``transport``: ``auto`` sends to a plain-``http`` endpoint (a local ``vllm serve``) over ``judges.transport``'s lean
    keep-alive HTTP/1.1, about half the client CPU per request, and to ``https`` over httpx; ``httpx`` always uses httpx.
    ``batch``: send each chunk through the endpoint's Batch API instead, polled every ``poll`` seconds
    (``judges.llm_batch``); the requests and so the verdicts are the same.
    """

    def __init__(self, model: str = "gpt-4o", base_url: str | None = None, template: str = "mt-bench",
                 concurrency: int = 8, max_retries: int = 5, timeout: float = 60.0, temperature: float = 0.0,
                 max_tokens: int = 1024, logprobs: bool = False, price_in: float | None = None,
                 price_out: float | None = None, top_logprobs: int = 5, backoff: float = 1.0, max_backoff: float = 30.0,
                 requests_per_minute: float | None = None, seed: int | None = None,
                 api_key_env: str = "OPENAI_API_KEY", transport: str = "auto", mode: str = PAIRWISE,
                 batch: bool = False, poll: float = 10.0):
        check_settings(model=model, base_url=base_url, concurrency=concurrency, max_retries=max_retries,
                       timeout=timeout, temperature=temperature, max_tokens=max_tokens, price_in=price_in,
                       price_out=price_out, top_logprobs=top_logprobs, backoff=backoff, max_backoff=max_backoff,
                       requests_per_minute=requests_per_minute, seed=seed, transport=transport, mode=mode,
                       poll=poll)
        self.model = str(model)
        self.batch, self.poll = bool(batch), float(poll)
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None  # the openai client reads it too
        if not base_url and self.base_url:
            check_base_url(self.base_url, "OPENAI_BASE_URL")
        self.concurrency, self.max_retries, self.max_tokens = int(concurrency), int(max_retries), int(max_tokens)
        self.timeout, self.temperature = float(timeout), float(temperature)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.logprobs, self.top_logprobs = bool(logprobs), int(top_logprobs)
        self.price_in = None if price_in is None else float(price_in)
        self.price_out = None if price_out is None else float(price_out)
        self.requests_per_minute = None if requests_per_minute is None else float(requests_per_minute)
        self.seed = None if seed is None else int(seed)
        self.api_key_env = api_key_env
        self.transport = transport
        if not os.environ.get(api_key_env) and not self.base_url:
            raise JudgeError(f"the llm judge needs an API key in ${api_key_env} (or a base_url of a key-less server)")
        self.mode = mode
        self.prompts: TemplateSet = load_templates(template)
        if mode not in self.prompts.kinds():
            raise JudgeError(f"llm judge: template {template!r} has no {mode} template"
                             + (" (FastChat's judge_prompts.jsonl without an entry has both)" if mode == SINGLE
                                else ""))
        self.prompt: Template = next(t for _, t in self.prompts.cases if t.kind == mode)
        self.template = self.prompts.key
        self.turns = self.prompts.turns(mode)  # 2: it can judge turn 2 of a two-turn set (its multi-turn template)
        self.id = f"llm:{self.model}" + (f"@{urlparse(self.base_url).hostname}" if self.base_url else "")
        settings = {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed,
                    "top_logprobs": self.top_logprobs if self.logprobs else None}
        self.version = f"{VERSION}-{content_hash(settings, size=4)}"  # verdicts depend on the sampling settings
        self.usage = Usage()
        self._client = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._pool: Pool | None = None  # made with the client, on its loop
        self._finalizer: weakref.finalize | None = None  # closes the client when the judge is collected

    def __repr__(self) -> str:
        return f"LLMJudge(id={self.id!r}, version={self.version!r}, template={self.template!r})"

    def compare(self, items: Sequence[Comparison]) -> list[Verdict]:
        """One verdict per comparison, in order. Callable from sync code and from inside a running event loop: the
        requests run on the judges' own loop thread either way."""
        return self._blocking(self._render(items, PAIRWISE), "compare")

    def rate(self, items: Sequence[Answer]) -> list[Rating]:
        """One rating per answer, in order (single-answer mode), with the set's single-answer templates."""
        return self._blocking(self._render(items, SINGLE), "rate")

    def submit(self, items: Sequence[Comparison], on_verdict: Callable[[int, Verdict], None]) -> Future:
        """``compare`` without waiting: ``on_verdict(i, verdict)`` is called on the judges' loop thread as each answer
        arrives, and the future ends when every item has one (or with the call's error; cancelling it stops its
        requests). Calls in flight together share the judge's ``concurrency`` slots and pacing, so a runner can queue
        the next items behind this call's last requests and the endpoint never sees more than ``concurrency``."""
        if self.batch:
            raise JudgeError("a batch-mode llm judge sends each compare() as one batch; it has no submit()")
        rendered = self._render(items, PAIRWISE)
        return asyncio.run_coroutine_threadsafe(self._run(rendered, on_verdict), background_loop())

    def prepare(self) -> None:
        """Make the client now on the judges' loop, without waiting: importing openai and building a client take
        ~0.4 s that a runner spends reading the store meanwhile, instead of before its first request."""
        if not self.batch:
            loop = background_loop()
            loop.call_soon_threadsafe(self._client_on, loop)

    async def acompare(self, items: Sequence[Comparison]) -> list[Verdict]:
        """``compare`` for async callers: awaits the judges' loop thread without blocking the caller's loop."""
        rendered = self._render(items, PAIRWISE)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._run(rendered), background_loop()))

    def _blocking(self, rendered: list[tuple[list[dict[str, str]], Template]], name: str) -> list:
        if self.batch:
            from judges.llm_batch import run_batch

            return run_batch(self, rendered)
        loop = background_loop()
        if on_loop_thread(loop):
            raise JudgeError(f"LLMJudge.{name}() was called on the judges' own event loop; await acompare() there")
        future = asyncio.run_coroutine_threadsafe(self._run(rendered), loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # an interrupted caller stops its requests too
            raise

    def close(self) -> None:
        """Close the judge's connections now (a garbage-collected judge closes them too, without waiting)."""
        client, loop = self._client, self._client_loop
        if self._finalizer is not None:
            self._finalizer.detach()
        self._client = None
        if client is not None and loop.is_running() and not on_loop_thread(loop):
            asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout=10)

    def __enter__(self) -> LLMJudge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _render(self, items: Sequence[Comparison | Answer], kind: str) -> list[tuple[list[dict[str, str]], Template]]:
        # Everything is rendered before anything is sent: a comparison the template can't show is bad input.
        out = []
        for c in items:
            template = self.prompts.pick(kind, c.turn, c.category)
            out.append((template.render(c), template))
        return out

    async def _run(self, rendered: list[tuple[list[dict[str, str]], Template]],
                   on_verdict: Callable[[int, Verdict | Rating], None] | None = None) -> list[Verdict | Rating]:
        if not rendered:
            return []
        client = self._client_on(asyncio.get_running_loop())
        run = Run(self._pool)

        async def one(i: int, messages: list[dict[str, str]], template: Template) -> Verdict | Rating:
            verdict = await self._judge(client, run, messages, template)
            on_verdict(i, verdict)
            return verdict

        verdicts = await asyncio.gather(*(self._judge(client, run, messages, t) if on_verdict is None
                                          else one(i, messages, t) for i, (messages, t) in enumerate(rendered)))
        self.usage.requests += run.requests
        self.usage.retries += run.requests - len(verdicts)
        for v in verdicts:
            outcome = v.winner if isinstance(v, Verdict) else v.status
            self.usage.failed += outcome == "failed"
            self.usage.unparsed += outcome == "unparsed"
            self.usage.prompt_tokens += v.prompt_tokens or 0
            self.usage.completion_tokens += v.completion_tokens or 0
            self.usage.cost += v.cost or 0.0
        return list(verdicts)

    def _client_on(self, loop: asyncio.AbstractEventLoop):
        """The judge's client, made once per loop: a new one costs 20-50 ms (its TLS context) and new connections."""
        import openai

        if self._client is None or self._client_loop is not loop:
            if self._finalizer is not None:
                self._finalizer()  # a client of a loop that is gone (a forked child): close what can be closed
            http_client = None
            if self.transport == "auto":
                from judges import transport

                http_client = transport.http_client() if transport.usable(self.base_url) else None
            self._client = openai.AsyncOpenAI(api_key=self._api_key(), base_url=self.base_url, timeout=self.timeout,
                                              max_retries=0, http_client=http_client)
            self._client_loop = loop
            self._pool = Pool(self.concurrency, self.requests_per_minute)
            self._finalizer = weakref.finalize(self, close_client, self._client, loop)
        return self._client

    def _api_key(self) -> str:
        return os.environ.get(self.api_key_env) or PLACEHOLDER_KEY

    async def _judge(self, client, run: Run, messages: list[dict[str, str]], template: Template) -> Verdict | Rating:
        import openai

        request = self.request_body(messages)
        async with run.slots:
            for attempt in range(self.max_retries + 1):
                await run.pace()
                run.requests += 1
                start = time.perf_counter()
                try:
                    # The client's documented low-level route, returning the parsed JSON: chat.completions.create
                    # would walk the (already plain) request as typed params and build model objects from the
                    # answer: 1.7 ms of client CPU per request against 1.0 ms this way (measured), and
                    # the client's CPU bounds judgments/s at high concurrency.
                    response = await client.post("/chat/completions", body=request, cast_to=object)
                except openai.APIStatusError as e:
                    reason, retry = f"HTTP {e.status_code}: {e.message}", _retryable(e.status_code)
                    wait = retry_after(e.response.headers) if retry else None
                except openai.APIConnectionError as e:  # includes APITimeoutError
                    reason, retry, wait = f"{type(e).__name__}: {e}{_cause(e)}", True, None
                except (openai.OpenAIError, ValueError) as e:  # a body that is not JSON, or not a chat completion
                    return self._failed(f"malformed response: {type(e).__name__}: {e}", attempt + 1, template)
                else:
                    return self._verdict(response, time.perf_counter() - start, attempt + 1, template)
                if not retry or attempt == self.max_retries:
                    return self._failed(reason, attempt + 1, template)
                if wait is None:
                    wait = backoff_delay(attempt, self.backoff, self.max_backoff, random.random())
                log.info("%s: %s; retry %d/%d in %.2f s", self.id, self._scrub(reason)[:200], attempt + 1,
                         self.max_retries, wait)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable: the loop returns on its last attempt")

    def request_body(self, messages: list[dict[str, str]]) -> dict:
        """The chat-completion request for one rendered prompt (the same in batch mode)."""
        request = {"model": self.model, "messages": messages, "temperature": self.temperature,
                   "max_tokens": self.max_tokens}
        if self.seed is not None:
            request["seed"] = self.seed
        if self.logprobs:
            request.update(logprobs=True, top_logprobs=self.top_logprobs)
        return request

    def _verdict(self, data, latency: float, attempts: int, template: Template) -> Verdict | Rating:
        """The verdict (or rating) of one chat-completion answer (parsed JSON), with its usage and cost."""
        if not isinstance(data, dict):
            return self._failed(f"malformed response: not a JSON object ({str(data)[:80]!r})", attempts, template)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        pt, ct = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        common = {"latency": latency, "prompt_tokens": pt, "completion_tokens": ct, "cost": self._cost(pt, ct)}
        meta = {"attempts": attempts, "model": data.get("model")}
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            log.warning("%s: a response had no choices", self.id)
            if template.kind == SINGLE:
                return Rating("failed", error="response has no choices", meta=meta, **common)
            return Verdict("failed", error="response has no choices", meta=meta, **common)
        choice = choices[0]
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        text = message.get("content") or message.get("refusal") or ""
        text = text if isinstance(text, str) else ""
        meta["finish_reason"] = choice.get("finish_reason")
        if template.kind == SINGLE:
            grade = template.rate(text)
            return Rating("unparsed" if grade is None else "rated", grade, raw=self._scrub(text), meta=meta, **common)
        probability = None
        if self.logprobs and template.logprob_format is not None:
            probability = parsers.choice_probability(_top_logprobs(choice), template.logprob_format)
        winner = template.parse(text)
        strong = template.strong(text)
        if strong is not None and winner in ("first", "second"):
            meta["strong"] = strong
        return Verdict(winner, probability=probability, raw=self._scrub(text), meta=meta, **common)

    def _failed(self, reason: str, attempts: int, template: Template) -> Verdict | Rating:
        reason = self._scrub(reason)
        log.warning("%s: request failed after %d attempt(s): %s", self.id, attempts, reason[:200])
        if template.kind == SINGLE:
            return Rating("failed", error=reason, meta={"attempts": attempts})
        return Verdict("failed", error=reason, meta={"attempts": attempts})

    def _cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        if (self.price_in is None and self.price_out is None) or prompt_tokens is None or completion_tokens is None:
            return None
        return (prompt_tokens * (self.price_in or 0.0) + completion_tokens * (self.price_out or 0.0)) / 1e6

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "[redacted]") if key and len(key) >= 4 else text


def check_settings(model: str = "gpt-4o", base_url: str | None = None, concurrency: int = 8, max_retries: int = 5,
                   timeout: float = 60.0, temperature: float = 0.0, max_tokens: int = 1024,
                   price_in: float | None = None, price_out: float | None = None, top_logprobs: int = 5,
                   backoff: float = 1.0, max_backoff: float = 30.0, requests_per_minute: float | None = None,
                   seed: int | None = None, transport: str = "auto", mode: str = PAIRWISE, poll: float = 10.0,
                   batch: bool = False) -> None:
    """Every setting of an llm judge in range, checked before any request: a NaN timeout or a negative backoff would
    otherwise turn every verdict into ``failed`` (after minutes of retries) and still exit 0."""
    if not isinstance(model, str) or not model.strip():
        raise JudgeError("the llm judge needs a model name: llm:model=NAME")
    for name, value, low in (("concurrency", concurrency, 1), ("max_retries", max_retries, 0),
                             ("max_tokens", max_tokens, 1), ("top_logprobs", top_logprobs, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise JudgeError(f"llm judge: {name} must be an integer >= {low}, got {value!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise JudgeError(f"llm judge: seed must be an integer, got {seed!r}")
    for name, value, positive, optional in (
            ("timeout", timeout, True, False), ("temperature", temperature, False, False),
            ("backoff", backoff, False, False), ("max_backoff", max_backoff, False, False),
            ("price_in", price_in, False, True), ("price_out", price_out, False, True),
            ("requests_per_minute", requests_per_minute, True, True), ("poll", poll, True, False)):
        if value is None and optional:
            continue
        real = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not real or value < 0 or (positive and value == 0):
            raise JudgeError(f"llm judge: {name} must be a finite number {'>' if positive else '>='} 0, "
                             f"got {value!r}")
    if transport not in ("auto", "httpx"):
        raise JudgeError(f"transport must be auto or httpx, not {transport!r}")
    if mode not in (PAIRWISE, SINGLE):
        raise JudgeError(f"llm judge: mode must be {PAIRWISE} or {SINGLE}, got {mode!r}")
    if base_url:
        check_base_url(base_url, "base_url")


def check_base_url(url: str, name: str = "base_url") -> None:
    """An http(s) URL with a host and no credentials.

    User and password in the URL would be sent as Basic auth in place of the Bearer key, where nothing scrubs them
    from an endpoint's echo; a text that is no URL would fail every request and still count as a run.

    >>> check_base_url("http://127.0.0.1:8000/v1")
    >>> check_base_url("http://user:pw@example.org/v1")
    Traceback (most recent call last):
    judges.base.JudgeError: base_url carries credentials (user:password@): put the key in $OPENAI_API_KEY instead
    """
    if not isinstance(url, str) or any(c.isspace() or not c.isprintable() for c in url):
        raise JudgeError(f"{name} {url!r} is not a URL (it holds spaces or control characters)")
    try:
        parts = urlparse(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as e:
        raise JudgeError(f"{name} {url!r} is not a URL ({e})") from None
    if parts.username is not None or parts.password is not None:
        raise JudgeError(f"{name} carries credentials (user:password@): put the key in $OPENAI_API_KEY instead")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise JudgeError(f"{name} {url!r} is not an http:// or https:// URL with a host")
    del port


def check_spec(args: dict[str, str]) -> None:
    """The arguments of an ``llm:k=v,...`` spec, converted and checked without building the judge (no API key needed):
    an experiment's ``--dry-run`` finds a bad judge before anything is trained."""
    from judges.base import _convert

    params = inspect.signature(check_settings).parameters
    unknown = [k for k in args if k not in inspect.signature(LLMJudge).parameters]
    if unknown:
        raise JudgeError(f"judge 'llm' has no argument {unknown[0]!r}")
    check_settings(**{k: _convert(v, params[k]) for k, v in args.items() if k in params})


LLMJudge.check_spec = staticmethod(check_spec)


def _cause(e: BaseException) -> str:
    """What was under an openai error, whose own message is only "Connection error.": " (ConnectError: ...)"."""
    cause = e.__cause__
    return f" ({type(cause).__name__}: {cause})" if cause is not None and str(cause) else ""


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _top_logprobs(choice: dict) -> list[tuple[str, list[tuple[str, float]]]]:
    """The answer's tokens with their top alternatives, from a chat completion's ``choices[i].logprobs.content``."""
    content = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
    out = []
    for t in content if isinstance(content, list) else []:
        if isinstance(t, dict) and isinstance(t.get("token"), str):
            alts = [(a["token"], a.get("logprob")) for a in t.get("top_logprobs") or []
                    if isinstance(a, dict) and isinstance(a.get("token"), str) and isinstance(a.get("logprob"), (int, float))]
            out.append((t["token"], alts))
    return out


def _retryable(status: int) -> bool:
    return status in _RETRY_STATUS or status >= 500


def backoff_delay(attempt: int, base: float, cap: float, u: float) -> float:
    """Exponential backoff with jitter: ``min(cap, base * 2**attempt)`` scaled by 0.5 + u/2 for ``u`` in [0, 1).

    The jitter keeps requests that failed together (one 429 burst) from retrying together.

    >>> [backoff_delay(k, 1.0, 30.0, 1.0) for k in range(6)], backoff_delay(2, 1.0, 30.0, 0.0)
    ([1.0, 2.0, 4.0, 8.0, 16.0, 30.0], 2.0)
    """
    return min(cap, base * 2**attempt) * (0.5 + 0.5 * u)


def retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds a server asked us to wait: ``retry-after-ms``, or ``Retry-After`` in seconds or as an HTTP date.

    Capped at ``MAX_RETRY_AFTER``; None when absent or unreadable (the caller then backs off on its own).

    >>> retry_after({"retry-after": "1.5"}), retry_after({"retry-after-ms": "250", "retry-after": "9"})
    (1.5, 0.25)
    >>> retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0)  # 10 s after "now"
    10.0
    >>> retry_after({"retry-after": "soon"}) is None, retry_after({"retry-after": "86400"})
    (True, 120.0)
    """
    if not headers:
        return None
    headers = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            seconds = float(headers[name]) * scale
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(headers.get("retry-after", "")).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(0.0, when - (time.time() if now is None else now)), MAX_RETRY_AFTER)

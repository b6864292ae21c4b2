"""The LLM judge against a real HTTP server on 127.0.0.1 (tests/judges/loopback.py) that scripts what an endpoint does:
verdicts in both orders, position bias, 429 with Retry-After, 5xx, timeouts, malformed answers, overlapping requests,
usage and cost, and an API key that never leaves the Authorization header. Every test runs on both transports: the
lean one a plain-http endpoint gets, and httpx's, which https endpoints get.
"""

from __future__ import annotations

import asyncio
import doctest
import logging
import math
import time

import pytest

from evalharness.data.types import Message
from judges import llm
from judges.base import Comparison, JudgeError, build_judge
from judges.llm import LLMJudge
from judges.templates import TemplateError, load_template
from tests.judges.loopback import (
    Reply,
    always_first,
    completion,
    error,
    fixed,
    loopback_fixture,  # noqa: F401 - the fixture `loopback`
    malformed,
    mt_bench_judge,
    no_choices,
    prefer_longer,
)

KEY = "sk-test-0123456789-do-not-log-me"


@pytest.fixture(autouse=True, params=["lean", "httpx"])
def _env(monkeypatch, request):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    if request.param == "httpx":
        from judges import transport

        monkeypatch.setattr(transport, "usable", lambda base_url: False)
    return request.param


def _c(first: str, second: str, question: str = "Say something kind.") -> Comparison:
    return Comparison((Message("user", question),), first, second)


def _swap(c: Comparison) -> Comparison:
    return Comparison(c.messages, c.second, c.first, c.reference)


def _judge(server, **kw) -> LLMJudge:
    kw.setdefault("backoff", 0.01)
    return LLMJudge(model="loop", base_url=server.url, **kw)


ITEMS = [_c("You are doing great, keep going!", "Ok."), _c("Fine.", "What a thoughtful question, thank you."),
         _c("Same size", "Same size")]


def test_doctests_pass():
    assert doctest.testmod(llm).failed == 0


def test_verdicts_follow_the_content_in_both_orders(loopback):
    loopback.behaviour = mt_bench_judge(prefer_longer)
    judge = _judge(loopback)
    assert [v.winner for v in judge.compare(ITEMS)] == ["first", "second", "tie"]
    assert [v.winner for v in judge.compare([_swap(c) for c in ITEMS])] == ["second", "first", "tie"]
    assert len(loopback.completions) == 6
    v = judge.compare(ITEMS[:1])[0]
    assert v.raw == "Both answers address the question. [[A]]" and v.error is None and v.latency > 0


def test_a_position_biased_server_gives_first_in_both_orders(loopback):
    loopback.behaviour = mt_bench_judge(always_first)
    judge = _judge(loopback)
    assert [v.winner for v in judge.compare(ITEMS)] == ["first"] * 3
    assert [v.winner for v in judge.compare([_swap(c) for c in ITEMS])] == ["first"] * 3  # raw, not reconciled


def test_429_with_retry_after_is_honoured(loopback):
    loopback.script = [error(429, "slow down", retry_after=0.4)]
    loopback.behaviour = mt_bench_judge(prefer_longer)
    judge = _judge(loopback, backoff=10.0)  # the judge's own backoff would wait >= 5 s: the header must win
    start = time.perf_counter()
    [v] = judge.compare(ITEMS[:1])
    assert v.winner == "first" and v.meta["attempts"] == 2
    first, second = loopback.completions
    waited = second.started - first.finished
    assert 0.4 <= waited < 0.4 + 0.3, waited
    assert time.perf_counter() - start < 2.0
    assert judge.usage.requests == 2 and judge.usage.retries == 1


def test_5xx_is_retried_with_growing_backoff_then_failed(loopback):
    loopback.behaviour = fixed(error(500, "boom"))
    judge = _judge(loopback, max_retries=3, backoff=0.05)
    [v] = judge.compare(ITEMS[:1])
    assert v.winner == "failed" and v.error.startswith("HTTP 500") and v.meta["attempts"] == 4
    reqs = loopback.completions
    assert len(reqs) == 4  # 1 + max_retries
    gaps = [b.started - a.finished for a, b in zip(reqs, reqs[1:])]
    for k, gap in enumerate(gaps):  # backoff * 2**k times a jitter in [0.5, 1]: 25-50 ms, 50-100 ms, 100-200 ms
        assert 0.05 * 2**k * 0.5 <= gap < 0.05 * 2**k + 0.15, gaps
    assert judge.usage.failed == 1


def test_retries_that_failed_together_do_not_retry_together(loopback):
    # Eight requests hit one 500 burst. Each waits backoff 0.4 s scaled by a jitter in [0.5, 1], i.e. 0.2-0.4 s, so
    # the waits differ; without jitter they would all be 0.4 s within a few ms. P(8 uniform waits within 0.04 s of
    # each other) = 8 d^7 - 7 d^8 with d = 0.04 / 0.2: 8.4e-5.
    loopback.script = [error(500)] * 8
    loopback.behaviour = fixed(completion("[[A]]"))
    items = [_c("a", "b", question=f"Question {i}") for i in range(8)]
    verdicts = _judge(loopback, concurrency=8, backoff=0.4).compare(items)
    assert [v.winner for v in verdicts] == ["first"] * 8
    by_prompt: dict[str, list] = {}
    for r in loopback.completions:
        by_prompt.setdefault(r.prompt, []).append(r)
    waits = [second.started - first.finished for first, second in by_prompt.values()]
    assert len(waits) == 8 and all(0.2 <= w < 0.5 for w in waits), waits
    assert max(waits) - min(waits) > 0.04, waits


def test_client_errors_are_not_retried(loopback):
    loopback.behaviour = fixed(error(400, "bad request: context too long"))
    [v] = _judge(loopback).compare(ITEMS[:1])
    assert v.winner == "failed" and "context too long" in v.error
    assert len(loopback.completions) == 1


def test_timeouts_are_retried_then_failed(loopback):
    loopback.behaviour = fixed(completion("[[A]]", delay=1.5))
    judge = _judge(loopback, timeout=0.2, max_retries=1)
    start = time.perf_counter()
    [v] = judge.compare(ITEMS[:1])
    elapsed = time.perf_counter() - start
    assert v.winner == "failed" and "Timeout" in v.error and v.meta["attempts"] == 2
    assert 0.4 <= elapsed < 1.2, elapsed  # two 0.2 s timeouts and a short backoff, not the 1.5 s answers


def test_a_timeout_then_an_answer(loopback):
    loopback.script = [completion("[[B]]", delay=1.0)]
    loopback.behaviour = fixed(completion("[[A]]"))
    [v] = _judge(loopback, timeout=0.2).compare(ITEMS[:1])
    assert v.winner == "first" and v.meta["attempts"] == 2


@pytest.mark.parametrize("reply,winner,text", [
    (malformed(), "failed", "malformed response"),
    (no_choices(), "failed", "no choices"),
    (completion("Both are lovely, I cannot choose."), "unparsed", None),
    (completion("[[A]] or maybe [[B]]"), "unparsed", None),
    (completion(None), "unparsed", None),
])
def test_bad_answers_are_failed_or_unparsed_never_guessed(loopback, reply, winner, text):
    loopback.behaviour = fixed(reply)
    [v] = _judge(loopback).compare(ITEMS[:1])
    assert v.winner == winner
    if winner == "failed":
        assert text in v.error
    else:
        assert v.error is None and v.raw == (reply.body["choices"][0]["message"]["content"] or "")
    assert len(loopback.completions) == 1  # a deterministic bad answer is not worth a retry


@pytest.mark.parametrize("concurrency", [4, 16])
def test_requests_really_overlap_up_to_the_limit(loopback, concurrency):
    loopback.behaviour = mt_bench_judge(prefer_longer, delay=0.2)
    items = [_c("x" * (i % 5), "y" * 2) for i in range(32)]
    start = time.perf_counter()
    verdicts = _judge(loopback, concurrency=concurrency).compare(items)
    elapsed = time.perf_counter() - start
    assert loopback.peak_in_flight == concurrency
    waves = math.ceil(32 / concurrency)
    assert waves * 0.2 <= elapsed < waves * 0.2 * 1.5 + 0.5, elapsed
    assert [v.winner for v in verdicts] == [prefer_longer_verdict(c) for c in items]  # order kept


def prefer_longer_verdict(c: Comparison) -> str:
    return {"A": "first", "B": "second", "C": "tie"}[prefer_longer(c.first, c.second)]


def test_requests_per_minute_spaces_the_starts(loopback):
    loopback.behaviour = fixed(completion("[[A]]"))
    _judge(loopback, concurrency=5, requests_per_minute=600).compare(ITEMS + ITEMS[:2])  # one start per 0.1 s
    starts = sorted(r.started for r in loopback.completions)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # Paced on the client: arrivals also carry each new connection's set-up time, so single gaps wobble by a few ms;
    # without pacing all five would arrive within a few ms of each other.
    assert starts[-1] - starts[0] >= 4 * 0.1 - 0.03 and min(gaps) >= 0.05, gaps


def test_usage_tokens_and_cost(loopback):
    loopback.behaviour = fixed(completion("[[B]]", prompt_tokens=1000, completion_tokens=200))
    judge = _judge(loopback, price_in=2.5, price_out=10.0)  # per million tokens
    verdicts = judge.compare(ITEMS)
    for v in verdicts:
        assert (v.prompt_tokens, v.completion_tokens) == (1000, 200)
        assert v.cost == pytest.approx((1000 * 2.5 + 200 * 10.0) / 1e6)  # 0.0045
    assert (judge.usage.prompt_tokens, judge.usage.completion_tokens) == (3000, 600)
    assert judge.usage.cost == pytest.approx(3 * 0.0045)
    assert _judge(loopback).compare(ITEMS[:1])[0].cost is None  # no price table, no invented cost


def test_usage_matches_what_the_server_counted(loopback):
    loopback.behaviour = mt_bench_judge(prefer_longer)  # counts whitespace words of the rendered prompt
    [v] = _judge(loopback).compare(ITEMS[:1])
    [req] = loopback.completions
    assert v.prompt_tokens == len(req.prompt.split()) and v.completion_tokens == len(v.raw.split())
    assert req.messages == load_template("mt-bench").render(ITEMS[0])


def test_logprobs_give_p_first_from_the_verdict_token(loopback):
    lp = [("B is kinder.", []), (" [[", [(" [[", -0.01)]), ("B", [("B", math.log(0.8)), ("A", math.log(0.2))]),
          ("]]", [])]
    loopback.behaviour = fixed(completion("B is kinder. [[B]]", logprobs=lp))
    [v] = _judge(loopback, logprobs=True, top_logprobs=3).compare(ITEMS[:1])
    assert v.winner == "second" and v.probability == pytest.approx(0.2)  # 0.2 / (0.2 + 0.8)
    body = loopback.completions[0].body
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    [v] = _judge(loopback).compare(ITEMS[:1])
    assert v.probability is None and "logprobs" not in loopback.completions[1].body


def test_the_key_is_sent_but_never_stored_logged_or_printed(loopback, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # every logger, openai's and httpx's included
    echo = {"error": {"message": f"invalid key {KEY}", "type": "auth"}}
    loopback.script = [Reply(500, echo), Reply(401, echo), error(429, KEY, retry_after=0.01)]
    loopback.behaviour = lambda req: completion(f"You sent {req.headers['authorization']} [[A]]")
    judge = _judge(loopback, concurrency=1, max_retries=1)
    verdicts = judge.compare(ITEMS)
    assert [v.winner for v in verdicts] == ["failed", "first", "first"]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in loopback.completions)
    out, err = capfd.readouterr()
    seen = [repr(v) for v in verdicts] + [judge.id, judge.version, judge.template, repr(judge), str(vars(judge)),
                                          caplog.text, out, err]
    assert not [s for s in seen if KEY in s]
    assert "[redacted]" in verdicts[0].error and "[redacted]" in verdicts[1].raw
    assert "HTTP 401" in caplog.text  # the log does carry the failure, only without the key


def test_a_key_less_local_server_gets_a_placeholder(loopback, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    loopback.behaviour = fixed(completion("[[A]]"))
    assert _judge(loopback).compare(ITEMS[:1])[0].winner == "first"
    assert loopback.completions[0].headers["authorization"] == "Bearer EMPTY"
    with pytest.raises(JudgeError, match="OPENAI_API_KEY"):
        LLMJudge(model="gpt-4o")


def test_compare_works_inside_a_running_event_loop(loopback):
    loopback.behaviour = mt_bench_judge(prefer_longer)
    judge = _judge(loopback)

    async def caller():
        return judge.compare(ITEMS), await judge.acompare(ITEMS)

    sync_inside, awaited = asyncio.run(caller())
    assert [v.winner for v in sync_inside] == [v.winner for v in awaited] == ["first", "second", "tie"]


def test_connections_are_kept_between_calls_and_closed_on_close(loopback):
    loopback.behaviour = mt_bench_judge(prefer_longer, delay=0.05)
    with _judge(loopback, concurrency=4) as judge:
        for _ in range(3):
            assert [v.winner for v in judge.compare(ITEMS + ITEMS[:1])] == ["first", "second", "tie", "first"]
        assert loopback.connections == 4  # 12 requests, 4 at a time, over the same 4 keep-alive connections
    assert judge._client is None
    judge.compare(ITEMS[:1])  # a closed judge opens a new client when used again
    assert loopback.connections == 5


def test_a_plain_http_endpoint_gets_the_lean_transport_unless_told_otherwise(loopback, _env):
    from judges.transport import LeanTransport

    def transport_of(judge):
        judge.compare(ITEMS[:1])
        return type(judge._client._client._transport)

    with _judge(loopback) as auto, _judge(loopback, transport="httpx") as told:
        assert (transport_of(auto) is LeanTransport) == (_env == "lean")
        assert transport_of(told) is not LeanTransport
    with pytest.raises(JudgeError, match="transport must be auto or httpx"):
        _judge(loopback, transport="h2")


def test_nothing_is_sent_when_a_comparison_cannot_be_shown(loopback):
    judge = _judge(loopback, template="mt-bench-reference")
    with pytest.raises(TemplateError, match="reference"):
        judge.compare(ITEMS)
    assert loopback.requests == []


@pytest.mark.parametrize("template,answer,winner", [
    ("summary", "Comparison: B keeps the key point.\nPreferred: B", "second"),
    ("dialogue", "Comparison: A is warmer.\nMore helpful: A", "first"),
    ("human-preference", "As the user I would rather get the second.\nResponse 2", "second"),
])
def test_seed_formats_end_to_end(loopback, template, answer, winner):
    loopback.behaviour = fixed(completion(answer))
    [v] = _judge(loopback, template=template).compare(ITEMS[:1])
    assert v.winner == winner


def test_the_loopback_lists_its_model_like_an_endpoint(loopback):
    import json
    import urllib.request

    with urllib.request.urlopen(f"{loopback.url}/models", timeout=5) as r:
        assert [m["id"] for m in json.loads(r.read())["data"]] == ["loopback"]
    assert loopback.requests == []  # only chat completions are recorded


def test_identity(loopback):
    judge = _judge(loopback)
    assert judge.id == "llm:loop@127.0.0.1"  # the host, not the port (a local server moves between runs)
    assert judge.template == load_template("mt-bench").key
    assert _judge(loopback, concurrency=2, timeout=5).version == judge.version  # transport settings: same verdicts
    assert _judge(loopback, temperature=0.7).version != judge.version
    assert _judge(loopback, logprobs=True).version != judge.version
    assert LLMJudge(model="gpt-4o").id == "llm:gpt-4o"


def test_build_judge_converts_spec_arguments(loopback):
    judge = build_judge(f"llm:model=loop,base_url={loopback.url},concurrency=3,price_in=2.5,logprobs=true")
    assert (judge.concurrency, judge.price_in, judge.logprobs) == (3, 2.5, True)
    gpt4 = build_judge("gpt-4:concurrency=2")
    assert (gpt4.id, gpt4.concurrency) == ("llm:gpt-4", 2)  # the preset runs the model it is named for
    assert gpt4.template == load_template("mt-bench").key
    with pytest.raises(JudgeError, match="did you mean 'concurrency'"):
        build_judge("gpt-4:concurency=2")

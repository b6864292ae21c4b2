"""`evalharness judge` with the LLM judge against an endpoint that fails in every way an endpoint fails: each fault is
retried within its bounds or stored as failed/unparsed with the reason, counted in the summary line, never guessed;
a re-run asks again for the failed ones only.

The judge's own retry policy is tested in isolation in tests/judges/test_llm_judge.py; here the faults go through the
command, the runner and the store.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter

from evalharness.hashing import content_hash
from evalharness.store import Store, bulk_insert, now
from tests.judges.loopback import Loopback, Request, completion, error, malformed, no_choices, shown_responses
from tests.reliability.helpers import invoke

KEY = "sk-reliability-faults-0123456789"
FAULTS = ["ok", "429", "500", "timeout", "malformed", "nochoices", "noverdict"]
MAX_RETRIES = 2


def seed(path, kinds: list[str]) -> None:
    """One prompt per fault kind; model a answers "alpha <kind> ...", model b answers "b"."""
    store = Store(str(path))
    with store.transaction() as con:
        for i, kind in enumerate(kinds):
            pid = f"p{i}-{kind}"
            con.execute("INSERT INTO prompts VALUES (?, 'set', ?, ?, NULL, '{}')",
                        [pid, pid, json.dumps([{"role": "user", "content": f"Question {i}?"}])])
            rows = [(content_hash([label, pid]), f"ck-{label}", label, None, pid, 1, 0, '{"t": 1}', 1.0, "hf", None,
                     None, text, None, 2, "stop", False, None, None, None, None, now())
                    for label, text in (("a", f"alpha {kind} with more words"), ("b", "b"))]
            bulk_insert(con, "INSERT INTO generations", rows)


class Faulty:
    """The endpoint: reads which fault a comparison asks for from the shown texts and counts attempts per order."""

    def __init__(self):
        self.attempts: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, req: Request):
        first, second = shown_responses(req.prompt)
        kind = (first if first.startswith("alpha") else second).split()[1]
        with self.lock:
            self.attempts[(kind, first.startswith("alpha"))] += 1
            attempt = self.attempts[(kind, first.startswith("alpha"))]
        verdict = "[[A]]" if len(first) > len(second) else "[[B]]"
        if kind == "429" and attempt == 1:
            return error(429, "slow down", retry_after=0.2)
        if kind == "500":
            return error(500, "internal error")
        if kind == "timeout":
            return completion(verdict, delay=3.0)  # the client gives up after 0.5 s
        if kind == "malformed":
            return malformed()
        if kind == "nochoices":
            return no_choices()
        if kind == "noverdict":
            return completion("Both have merits; I cannot pick one.")
        return completion(f"A is longer. {verdict}")


def _args(url: str, *extra: str) -> list[str]:
    return ["judge", "--judge", f"llm:model=loop,backoff=0.01,max_retries={MAX_RETRIES},timeout=0.5", "--base-url",
            url, "--models", "a", "--baseline", "b", "--prompts", "set", "--no-progress", "--no-leaderboard",
            "--store", "s.duckdb", *extra]


def _verdicts(path) -> dict[tuple[str, bool], tuple[str, str | None]]:
    with Store(str(path)).connect() as con:
        rows = con.execute("SELECT prompt_id, swapped, verdict, error FROM judgments").fetchall()
    return {(pid.split("-", 1)[1], swapped): (verdict, err) for pid, swapped, verdict, err in rows}


def test_every_endpoint_fault_is_retried_within_bounds_or_stored_failed_or_unparsed(tmp_path):
    seed(tmp_path / "s.duckdb", FAULTS)
    endpoint = Faulty()
    with Loopback(behaviour=endpoint) as server:
        start = time.monotonic()
        result = invoke(_args(server.url), tmp_path, {"OPENAI_API_KEY": KEY})
        seconds = time.monotonic() - start
        requests = len(server.completions)
    assert result.exit_code == 0, result.output
    # 7 prompts x 2 orders. failed: 500, timeout, malformed and no-choices in both orders = 8; unparsed: 2.
    assert "7 pairs, 14 judgments (0 already stored, 0 reused from the cache, 14 judged now), 8 failed, 2 unparsed" \
        in result.stdout, result.stdout
    got = _verdicts(tmp_path / "s.duckdb")
    for shown_first in (True, False):
        swapped = not shown_first  # a is shown first when not swapped; a's text is the longer one
        winner = "first" if shown_first else "second"
        assert got[("ok", swapped)] == (winner, None)
        assert got[("429", swapped)] == (winner, None)  # the retry after Retry-After got the real verdict
        assert got[("noverdict", swapped)] == ("unparsed", None)
        assert got[("500", swapped)][0] == "failed" and "HTTP 500" in got[("500", swapped)][1]
        assert got[("timeout", swapped)][0] == "failed" and "Timeout" in got[("timeout", swapped)][1]
        assert got[("malformed", swapped)][0] == "failed" and "malformed" in got[("malformed", swapped)][1]
        assert got[("nochoices", swapped)][0] == "failed" and "no choices" in got[("nochoices", swapped)][1]
    # Retried within bounds: 429 once more; 500 and timeouts 1 + MAX_RETRIES times; the rest are not retried.
    per_order = {"ok": 1, "429": 2, "500": 1 + MAX_RETRIES, "timeout": 1 + MAX_RETRIES, "malformed": 1,
                 "nochoices": 1, "noverdict": 1}
    assert dict(endpoint.attempts) == {(k, f): n for k, n in per_order.items() for f in (True, False)}
    assert requests == 2 * sum(per_order.values()) == 24
    # The timeouts run concurrently: 3 attempts of 0.5 s plus small backoffs, not 3 x 3 s of server delay.
    assert seconds < 30
    with Store(str(tmp_path / "s.duckdb")).connect() as con:
        raw = dict(con.execute("SELECT verdict, any_value(raw) FROM judgments WHERE verdict = 'unparsed' "
                               "GROUP BY 1").fetchall())
    assert raw == {"unparsed": "Both have merits; I cannot pick one."}  # kept for audit, not guessed

    # The endpoint recovers: a re-run asks again for the 8 failed judgments only; unparsed answers stay as they were
    # (the summary counts what this run judged).
    with Loopback(behaviour=lambda req: completion("[[A]]" if len(shown_responses(req.prompt)[0]) > 1 else "[[B]]")
                  ) as server:
        again = invoke(_args(server.url), tmp_path, {"OPENAI_API_KEY": KEY})
        assert len(server.completions) == 8
    assert again.exit_code == 0, again.output
    assert "14 judgments (6 already stored, 0 reused from the cache, 8 judged now), 0 failed, 0 unparsed" \
        in again.stdout, again.stdout
    after = _verdicts(tmp_path / "s.duckdb")
    assert Counter(v for v, _ in after.values()) == Counter(first=6, second=6, unparsed=2)


def test_connection_refused_is_retried_then_stored_failed_and_reported(tmp_path):
    seed(tmp_path / "s.duckdb", ["ok", "ok2"])
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    result = invoke(_args(url), tmp_path, {"OPENAI_API_KEY": KEY})
    assert result.exit_code == 1, result.output  # every call failed: reported, stored, and not a success
    assert "2 pairs, 4 judgments (0 already stored, 0 reused from the cache, 4 judged now), 4 failed, 0 unparsed" \
        in result.stdout, result.stdout
    assert "error: every one of the 4 judge calls failed" in result.output
    got = _verdicts(tmp_path / "s.duckdb")
    assert {v for v, _ in got.values()} == {"failed"}
    assert all("APIConnectionError" in e for _, e in got.values())

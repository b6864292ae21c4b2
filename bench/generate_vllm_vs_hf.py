"""Sampling throughput of the vllm backend vs the hf backend: same model, same prompts, same sampling, one thread.

    .venv/bin/python bench/generate_vllm_vs_hf.py                        # tiny-llama and a ~20M llama, ~2 minutes
    .venv/bin/python bench/generate_vllm_vs_hf.py --models smollm2-135m  # the real small model, a few minutes

What is held equal. The prompts are the synthetic prompt set rendered and tokenised once, by the parent, with the
harness's own prompt rendering; both backends get the same token ids, per-request seeds and ``Sampling``
(temperature 0.8, top_p 1, ``--new-tokens`` new tokens). Samples differ between backends (each has its own RNG), so a
sample may end at eos earlier on one side: tokens/s counts the tokens each actually generated. float32 weights.

What is measured. Each backend runs in its own child process, one at a time, with one thread (OMP/MKL at 1,
``torch.set_num_threads(1)``; vLLM in-process). The child loads the generator, runs one small warm-up call, then
``--repeats`` timed ``generate`` calls over all prompts; the table shows the median tokens/s (generated tokens / wall
time of one call: scheduling, sampling, log-probs and detokenisation included, loading not), and tokens per CPU
second of the same span, which stays put when other processes compete for the cores. Load time is import +
model/engine construction. Peak RSS is the child's ``ru_maxrss`` from ``os.wait4``: imports, weights, KV cache and all.
The hf backend runs at ``--hf-batch-size`` (the harness default, 16, and all prompts at once); vLLM schedules its own
batches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# ~20M parameters: 6 layers x (attention 4*512^2 + MLP 3*512*1536) = 20.4M; head dim 64 (vLLM CPU supports it).
LLAMA_20M = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8,
                 num_key_value_heads=8)
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
              "TOKENIZERS_PARALLELISM": "false"}


def build_model(name: str, work: Path) -> Path:
    from evalharness.models import resolve_model
    from evalharness.tiny import build_tiny

    if name == "llama-20m":
        return build_tiny("llama", work / name, seed=0, **LLAMA_20M)
    return resolve_model(name)


def make_prompts(path: Path, n: int) -> list[list[int]]:
    from evalharness.data import synthetic
    from evalharness.models import load_tokenizer, render_prompt

    tok = load_tokenizer(path)
    add_special = not getattr(tok, "chat_template", None)
    return [tok(render_prompt(tok, messages), add_special_tokens=add_special)["input_ids"]
            for _, messages in synthetic.prompts(n, seed=0)]


def run_child(spec: dict, work: Path) -> dict:
    spec_file, result_file = work / f"{spec['label']}.spec.json", work / f"{spec['label']}.result.json"
    spec_file.write_text(json.dumps({**spec, "result": str(result_file)}))
    log = work / f"{spec['label']}.log"
    with log.open("w") as out:  # vLLM logs to stdout: keep the table readable
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(spec_file)], env={**os.environ, **THREAD_ENV},
                                stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(log.read_text()[-5000:])
        raise SystemExit(f"{spec['label']} failed with exit status {os.waitstatus_to_exitcode(status)}")
    result = json.loads(result_file.read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def worker(spec_file: str) -> None:
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    from evalharness.generation.backends import load_generator
    from evalharness.generation.base import Request, Sampling

    spec = json.loads(Path(spec_file).read_text())
    kw = ({"batch_size": spec["batch_size"]} if spec["backend"] == "hf"
          else {"kv_cache_memory_bytes": spec["kv_cache_bytes"]})
    gen = load_generator(spec["backend"], spec["model"], **kw)
    load_s = time.perf_counter() - t0
    requests = [Request(tuple(p), 1000 + i) for i, p in enumerate(spec["prompts"])]
    sampling = Sampling(temperature=0.8, top_p=1.0, max_new_tokens=spec["new_tokens"])
    gen.generate(requests[:4], Sampling(temperature=0.8, max_new_tokens=8))  # warm-up: first-call allocations
    runs = []
    for _ in range(spec["repeats"]):
        start, cpu = time.perf_counter(), time.process_time()
        samples = gen.generate(requests, sampling)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        tokens = sum(len(s.token_ids) for s in samples)
        runs.append({"seconds": seconds, "cpu_seconds": cpu, "tokens": tokens, "tokens_per_s": tokens / seconds,
                     "tokens_per_cpu_s": tokens / cpu})
    mean_logp = sum(s.logp for s in samples) / max(1, sum(len(s.token_ids) for s in samples))
    gen.close()
    Path(spec["result"]).write_text(json.dumps({"load_s": load_s, "runs": runs, "mean_token_logp": mean_logp}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["tiny-llama", "llama-20m"],
                    help="model names/paths; llama-20m is built here (~20M parameters)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hf-batch-size", type=int, nargs="*", default=[16, 64], help="one hf run per size; none: skip hf")
    ap.add_argument("--no-vllm", action="store_true", help="skip the vllm run (e.g. vLLM not installed)")
    ap.add_argument("--kv-cache-mib", type=int, default=256, help="vLLM's KV cache (the backend's default: 256)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        work = Path(tmp)
        for name in args.models:
            path = build_model(name, work)
            prompts = make_prompts(path, args.prompts)
            configs = [("vllm", None)] * (not args.no_vllm) + [("hf", b) for b in args.hf_batch_size]
            for backend, batch in configs:
                label = f"{name} {backend}" + (f" b{batch}" if batch else "")
                print(f"running {label} ...", file=sys.stderr, flush=True)
                spec = dict(label=label.replace(" ", "_"), backend=backend, model=str(path), prompts=prompts,
                            new_tokens=args.new_tokens, repeats=args.repeats, batch_size=batch,
                            kv_cache_bytes=args.kv_cache_mib << 20)
                result = run_child(spec, work)
                rows.append(dict(model=name, backend=backend, batch=batch, prompt_tokens=sum(map(len, prompts)),
                                 **result))
    print(table(rows, args))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def table(rows: list[dict], args) -> str:
    lines = [f"{args.prompts} prompts x up to {args.new_tokens} new tokens, temperature 0.8, float32, 1 thread, "
             f"median of {args.repeats}; {platform.processor() or platform.machine()}, python {platform.python_version()}",
             "",
             "| model | backend | tokens/s | vLLM / this | tokens/CPU-s | generated tokens | load s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        r["tps"] = statistics.median(run["tokens_per_s"] for run in r["runs"])
        r["tpc"] = statistics.median(run["tokens_per_cpu_s"] for run in r["runs"])
    for r in rows:
        vllm = next((v["tps"] for v in rows if v["model"] == r["model"] and v["backend"] == "vllm"), None)
        name = r["backend"] + (f" (batch {r['batch']})" if r["batch"] else "")
        ratio = f"{vllm / r['tps']:.2f}x" if vllm and r["backend"] != "vllm" else "-"
        lines.append(f"| {r['model']} | {name} | {r['tps']:,.0f} | {ratio} | {r['tpc']:,.0f} | {r['runs'][-1]['tokens']} | "
                     f"{r['load_s']:.1f} | {r['peak_rss_mb']:,.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()

"""Training and sampling speed beside a competing CPU-bound process: torch's default thread count vs the thread count
``evalharness.threads`` picks from the load.

    .venv/bin/python bench/threads_under_load.py                       # smollm2-135m, 1 competitor, ~3 min
    .venv/bin/python bench/threads_under_load.py --competitors 0       # the same on an otherwise idle machine

Each (workload, policy) runs in its own process, interleaved ``--repeats`` times, while ``--competitors`` processes
spin on the CPU beside it. Workloads: ``train`` (forward + backward of a batch of 4 x 256 tokens) and ``sample``
(greedy decoding, batch 8, one token a step from a 64-token prompt, with the key/value cache) — the shapes of a
training step and of the hf backend's decode loop. Policies: ``default`` (torch's own count: one thread per core) and
``governed`` (``ThreadGovernor``, ticked every step as the loop and the hf backend do). Printed: steps per second of
wall time, the median over processes, and governed / default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def worker(model: str, workload: str, policy: str, seconds: float) -> dict:
    import torch

    from evalharness.models import load_causal_lm
    from evalharness.threads import ThreadGovernor

    governor = ThreadGovernor(recheck_s=2.0) if policy == "governed" else None
    m = load_causal_lm(model)
    g = torch.Generator().manual_seed(0)
    vocab = m.config.vocab_size
    if workload == "train":
        m.train()
        ids = torch.randint(0, vocab, (4, 256), generator=g)

        def step():
            m(input_ids=ids, labels=ids).loss.backward()
    else:
        m.eval()
        prompt = torch.randint(0, vocab, (8, 64), generator=g)

        def step():
            with torch.no_grad():
                out = m(input_ids=prompt, use_cache=True)
                cache, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                for _ in range(16):
                    if governor is not None:
                        governor.tick()
                    out = m(input_ids=tok, past_key_values=cache, use_cache=True)
                    cache, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)

    if governor is not None:
        governor.tick()
    step()  # warm-up
    steps, threads, start = 0, [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        if governor is not None:
            governor.tick()
        step()
        steps += 1
        threads.append(torch.get_num_threads())
    wall = time.perf_counter() - start
    return {"steps_per_s": steps / wall, "steps": steps, "threads": sorted(set(threads))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--competitors", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=20.0, help="timed seconds per process")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workloads", default="train,sample")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        workload, policy, seconds = args.worker
        print(json.dumps(worker(args.model, workload, policy, float(seconds))))
        return 0
    with open("/proc/loadavg") as f:
        print(f"load average before: {f.read().strip()}; {os.cpu_count()} cores; {args.competitors} competitor(s)")
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.competitors)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "EVALHARNESS_THREADS")}
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for _ in range(args.repeats):
            for workload in args.workloads.split(","):
                for policy in ("default", "governed"):
                    out = subprocess.run([sys.executable, __file__, "--model", args.model, "--worker", workload, policy,
                                          str(args.seconds)], env=env, cwd=REPO, capture_output=True, text=True)
                    if out.returncode:
                        print(out.stderr[-2000:])
                        return 1
                    results.setdefault((workload, policy), []).append(json.loads(out.stdout.splitlines()[-1]))
    finally:
        for p in spin:
            p.kill()
            p.wait()
    with open("/proc/loadavg") as f:
        print(f"load average after: {f.read().strip()}")
    for workload in args.workloads.split(","):
        rates = {}
        for policy in ("default", "governed"):
            rs = results[(workload, policy)]
            rates[policy] = statistics.median(r["steps_per_s"] for r in rs)
            print(f"{workload:<7}{policy:<10}{rates[policy]:8.3f} steps/s   threads used {[r['threads'] for r in rs]}")
        print(f"{workload}: governed / default = {rates['governed'] / rates['default']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PairRM judging throughput: evalharness's ``PairRMJudge`` vs llm-blender's own PairRM, same weights, same inputs.

    .venv/bin/pip install llm-blender                    # the peer (code only; see the PairRM section of bench/README.md)
    .venv/bin/python bench/judge_pairrm_vs_blender.py   # ~2 minutes on one core

What is held equal. One random PairRM checkpoint in the ``llm-blender/PairRM-hf`` layout, DeBERTa-v3-shaped (hidden
384, 6 layers, 6 heads, FFN 1536, relative attention, init std 0.05; 11.3M parameters, the vocabulary is tiny),
written once by ``judges.pairrm_testing.build_random_pairrm``; both sides load that directory, float32, eval mode,
and use its tokenizer. Both judge every comparison in both orders with the default 1224/412 token budget and combine
them into ``(l[A,B] - l[B,A]) / 2``; both take ``--batch-size`` comparisons at a time.

- evalharness: ``PairRMJudge.compare``: one batched tokeniser call for all texts, comparisons sorted by length so a
  batch pads little, per batch one forward pass per order (batch rows each) under ``torch.inference_mode``.
- llm-blender: ``DebertaV2PairRM`` with ``llm_blender.blender.blender_utils.tokenize_pair`` (its helper for the
  PairRM-hf layout), run the way ``Blender.compare(mode="[A,B]+[B,A]")`` runs a pairwise ranker: per batch, one
  forward pass for [A,B] and one for [B,A] (batch rows each), batches in input order, under ``torch.no_grad``.

Workloads (``--workloads``): ``synthetic`` is the synthetic review task's prompts and response pairs as they are (~55
tokens a sequence, all near that); ``mixed`` makes each candidate its response and 0-15 more joined (~20 to ~350
tokens), lengths as uneven as different models' answers. What is measured: wall time of judging all comparisons once
(tokenisation included, loading not), as comparisons per second, median of ``--repeats`` runs with the two sides
alternating; and comparisons per CPU second
of the same runs (``time.process_time``), which holds still when other processes compete for the cores. Both sides
run in this one process with ``torch.set_num_threads(--threads)``. The correctness check is the largest absolute
difference between the two sides' combined logits and the number of verdicts on which they disagree.
"""

from __future__ import annotations

import argparse
import platform
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

# initializer_range 1/sqrt(384) ~ 0.05 keeps activations at unit scale. A wider init makes the random network chaotic:
# at 0.2, float32 rounding alone (the same rows padded differently) moves logits by ~1e-3 in either implementation
# (float64: 1e-12), which would drown the cross-check below.
MID = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536, initializer_range=0.05)


def workload(name: str, n: int, seed: int = 0):
    """(source, first, second) triples from the synthetic review task."""
    from evalharness.data import synthetic
    from judges.pairrm import pairrm_source

    pairs = synthetic.pairs(n, seed=seed)
    if name == "synthetic":
        return [(pairrm_source(p.x_pos), p.y_pos, p.y_neg) for p in pairs]
    if name != "mixed":
        raise SystemExit(f"unknown workload {name!r}: synthetic or mixed")
    rng = random.Random(f"mixed:{seed}")
    extra = [y for p in synthetic.pairs(8 * n, seed=seed + 1) for y in (p.y_pos, p.y_neg)]

    def longer(y: str) -> str:  # the response and 0-15 more: ~20 to ~350 tokens
        return " ".join([y] + [rng.choice(extra) for _ in range(rng.randint(0, 15))])

    return [(pairrm_source(p.x_pos), longer(p.y_pos), longer(p.y_neg)) for p in pairs]


def run_evalharness(judge, triples):
    logits = []
    for v in judge.compare(_items(triples)):
        ab, ba = (float(x) for x in re.findall(r"=(\S+)", v.raw))
        logits.append((ab - ba) / 2)
    return logits


def run_blender(model, tokenize_pair, tokenizer, triples, batch_size: int):
    import torch

    logits = []
    with torch.no_grad():
        for start in range(0, len(triples), batch_size):
            s, a, b = zip(*triples[start : start + batch_size])
            ab = model(**tokenize_pair(tokenizer, list(s), list(a), list(b))).logits
            ba = model(**tokenize_pair(tokenizer, list(s), list(b), list(a))).logits
            logits += ((ab - ba) / 2).tolist()
    return logits


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="synthetic,mixed")
    ap.add_argument("--pairs", default="64,16", help="comparisons per workload, in --workloads order")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from judges.pairrm import PairRMJudge
    from judges.pairrm_testing import build_random_pairrm, import_llm_blender

    torch.set_num_threads(args.threads)
    blender_cls, tokenize_pair = import_llm_blender()
    names, counts = args.workloads.split(","), [int(n) for n in args.pairs.split(",")]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {platform.processor() or platform.machine()}, "
          f"batch {args.batch_size}, {args.repeats} repeats")
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = build_random_pairrm(Path(tmp) / "pairrm-mid", seed=0, **MID)
        judge = PairRMJudge(str(path), batch_size=args.batch_size)
        theirs, info = blender_cls.from_pretrained(path, output_loading_info=True)
        if info["missing_keys"] or info["unexpected_keys"]:
            raise SystemExit(f"llm-blender's class does not match the checkpoint: {info}")
        theirs.eval()
        n_params = sum(p.numel() for p in theirs.parameters())
        print(f"random PairRM, {n_params / 1e6:.1f}M parameters, at {path.name}")
        print(f"{'workload':<10} {'pairs':>5} {'tok/seq':>7} {'eh pairs/s':>10} {'llm-blender':>11} {'ratio':>6} "
              f"{'eh /cpu-s':>9} {'lb /cpu-s':>9} {'cpu ratio':>9} {'max|dlogit|':>11} {'disagree':>8}")
        for name, n in zip(names, counts):
            triples = workload(name, n)
            lengths = [len(ab.ids) for ab, _ in judge.encode(_items(triples))]
            run_evalharness(judge, triples[:4])  # warm-up: first-call allocations, lazy loading
            run_blender(theirs, tokenize_pair, judge.tokenizer, triples[:4], args.batch_size)
            eh_runs, lb_runs = [], []
            for _ in range(args.repeats):
                eh, w, c = timed(lambda t=triples: run_evalharness(judge, t))
                eh_runs.append((w, c))
                lb, w, c = timed(lambda t=triples: run_blender(theirs, tokenize_pair, judge.tokenizer, t,
                                                               args.batch_size))
                lb_runs.append((w, c))
            eh_w, eh_c = (statistics.median(x) for x in zip(*eh_runs))
            lb_w, lb_c = (statistics.median(x) for x in zip(*lb_runs))
            diff = max(abs(x - y) for x, y in zip(eh, lb))
            disagree = sum((x > 0) != (y > 0) for x, y in zip(eh, lb))
            status |= diff > 1e-4 or disagree > 0
            print(f"{name:<10} {n:>5} {statistics.mean(lengths):>7.0f} {n / eh_w:>10.1f} {n / lb_w:>11.1f} "
                  f"{lb_w / eh_w:>6.2f} {n / eh_c:>9.1f} {n / lb_c:>9.1f} {lb_c / eh_c:>9.2f} {diff:>11.2e} "
                  f"{disagree:>8}")
    print("ratio = evalharness pairs/s ÷ llm-blender pairs/s (above 1: evalharness is faster)")
    return int(status)


def _items(triples):
    from evalharness.data.types import Message
    from judges.base import Comparison

    return [Comparison((Message("user", s),), a, b) for s, a, b in triples]


if __name__ == "__main__":
    raise SystemExit(main())

"""Forward + backward of one training batch, prompt shared vs concatenated, in CPU seconds on one thread.

    .venv/bin/python bench/prefix_sharing.py --model smollm2-135m --pairs 4 --prompt 128 --responses 96,90

Random token ids (a 128-token prompt and two responses per pair, as HH-RLHF's truncated pairs look); the two forms
alternate ``--repeats`` times in one process and the medians are printed with the largest |Δ| of the summed
log-probs between them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--responses", default="96,90")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    from evalharness.models import load_causal_lm
    from evalharness.scoring import Seq, sequence_logps

    torch.set_num_threads(1)
    model = load_causal_lm(args.model).train()
    g = torch.Generator().manual_seed(0)
    ids = lambda n: tuple(torch.randint(100, model.config.vocab_size, (n,), generator=g).tolist())  # noqa: E731
    chosen_len, rejected_len = (int(x) for x in args.responses.split(","))
    prompts = [ids(args.prompt) for _ in range(args.pairs)]
    seqs = [Seq(p, ids(chosen_len)) for p in prompts] + [Seq(p, ids(rejected_len)) for p in prompts]
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    summed = {}
    for _ in range(args.repeats):
        for share in (False, True):
            model.zero_grad(set_to_none=True)
            t0 = time.process_time()
            fwd = sequence_logps(model, seqs, 0, share_prompts=share)
            t1 = time.process_time()
            fwd.summed.sum().backward()
            times[share].append((t1 - t0, time.process_time() - t1))
            summed[share] = fwd.summed.detach()
    for share, label in ((False, "concatenated"), (True, "prompt shared")):
        f = statistics.median(t[0] for t in times[share])
        b = statistics.median(t[1] for t in times[share])
        print(f"{label:<14} forward {f:6.2f} CPU-s   backward {b:6.2f} CPU-s   total {f + b:6.2f}")
    total = {s: statistics.median(t[0] + t[1] for t in times[s]) for s in times}
    print(f"concatenated / shared = {total[False] / total[True]:.2f}x; "
          f"max |Δ summed log-prob| {(summed[True] - summed[False]).abs().max().item():.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

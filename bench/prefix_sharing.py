"""Forward + backward of one training batch in three layouts, in CPU seconds on one thread.

    .venv/bin/python bench/prefix_sharing.py                                  # random ids: 128-token prompts, 96/90
    .venv/bin/python bench/prefix_sharing.py --data hh-rlhf --max-length 256  # the first HH-RLHF test pairs

Layouts: ``concatenated`` (one row per prompt + response), ``rows`` (each distinct prompt once, then one response per
row continued from its cache), ``packed`` (each prompt once, then the responses of several prompts per row under a
block mask; what training does where the cost model says it pays). With ``--data hh-rlhf`` the pairs are tokenised by
evalharness's own pipeline (prompt rendering and truncation rule, SmolLM2's tokenizer), so the padding is the padding a
real batch has; the random ids have equal-length prompts and near-equal responses, where packing saves little.
The three layouts alternate ``--repeats`` times in one process; medians are printed with the token counts each
layout's response forward processes and the largest |Δ| of the summed log-probs against the concatenated forward.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def hh_batch(model: str, pairs: int, max_length: int):
    """The first batch of ``pairs`` HH-RLHF test pairs exactly as the training loop sees it (train_vs_trl's own
    tokenisation: the loop's recipe, rendering, truncation and batch order)."""
    import tempfile

    import train_vs_trl  # this directory is on sys.path when the script runs

    from evalharness.scoring import Seq

    args = train_vs_trl.build_parser().parse_args(["--model", model, "--pairs", str(pairs), "--batch-size",
                                                    str(pairs), "--max-length", str(max_length)])
    with tempfile.TemporaryDirectory() as work:
        data = train_vs_trl.tokenised_pairs(train_vs_trl.make_spec(args, Path(work)))
    rows = [data["rows"][i] for i in data["schedule"][0]]
    return ([Seq(tuple(r["prompt_ids"]), tuple(r["chosen_ids"])) for r in rows]
            + [Seq(tuple(r["prompt_ids"]), tuple(r["rejected_ids"])) for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", choices=["random", "hh-rlhf"], default="random")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=128, help="random data: prompt tokens")
    ap.add_argument("--responses", default="96,90", help="random data: chosen,rejected tokens")
    ap.add_argument("--max-length", type=int, default=256, help="hh-rlhf: prompt + response tokens")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    from evalharness import scoring
    from evalharness.models import load_causal_lm
    from evalharness.scoring import Seq, sequence_logps

    torch.set_num_threads(1)
    model = load_causal_lm(args.model).train()
    if args.data == "hh-rlhf":
        seqs = hh_batch(args.model, args.pairs, args.max_length)
    else:
        g = torch.Generator().manual_seed(0)
        ids = lambda n: tuple(torch.randint(100, model.config.vocab_size, (n,), generator=g).tolist())  # noqa: E731
        chosen_len, rejected_len = (int(x) for x in args.responses.split(","))
        prompts = [ids(args.prompt) for _ in range(args.pairs)]
        seqs = [Seq(p, ids(chosen_len)) for p in prompts] + [Seq(p, ids(rejected_len)) for p in prompts]
    packed_rows = scoring._packed_rows
    layouts = {"concatenated": (False, None), "rows": (True, lambda *a: None), "packed": (True, packed_rows)}
    widths = {}

    def spy(model_, cache, row_of, p_len, seqs_):
        rows = packed_rows(model_, cache, row_of, p_len, seqs_)
        widths["packed"] = (len(rows), max(sum(len(seqs_[i].response) for i in r) for r in rows)) if rows else None
        return rows

    layouts["packed"] = (True, spy)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in layouts}
    summed = {}
    for _ in range(args.repeats):
        for name, (share, rows) in layouts.items():
            if rows is not None:
                scoring._packed_rows = rows
            model.zero_grad(set_to_none=True)
            t0 = time.process_time()
            fwd = sequence_logps(model, seqs, 0, share_prompts=share)
            t1 = time.process_time()
            fwd.summed.sum().backward()
            times[name].append((t1 - t0, time.process_time() - t1))
            summed[name] = fwd.summed.detach()
    scoring._packed_rows = packed_rows
    resp = [len(s.response) for s in seqs]
    print(f"{len(seqs)} sequences: {sum(len(s.prompt) for s in seqs[:len(seqs) // 2])} prompt tokens "
          f"(each prompt counted once), {sum(resp)} response tokens; response forward positions: "
          f"rows {len(seqs)} x {max(resp)} = {len(seqs) * max(resp)}, packed "
          + (f"{widths['packed'][0]} x {widths['packed'][1]} = {widths['packed'][0] * widths['packed'][1]}"
             if widths.get("packed") else "not chosen (one response per row is as cheap)"))
    total = {}
    for name in layouts:
        f = statistics.median(t[0] for t in times[name])
        b = statistics.median(t[1] for t in times[name])
        total[name] = statistics.median(t[0] + t[1] for t in times[name])
        delta = (summed[name] - summed["concatenated"]).abs().max().item()
        print(f"{name:<13} forward {f:6.2f} CPU-s   backward {b:6.2f} CPU-s   total {total[name]:6.2f}   "
              f"max |Δ summed log-prob| vs concatenated {delta:.1e}")
    print(f"concatenated / rows = {total['concatenated'] / total['rows']:.2f}x; "
          f"rows / packed = {total['rows'] / total['packed']:.2f}x; "
          f"concatenated / packed = {total['concatenated'] / total['packed']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bytes on disk per checkpoint: the format before (weights + optimizer state in every checkpoint) against today's
(intermediate checkpoints weights only, the newest one resumable, the final one without optimizer state), for a
float32 and a bfloat16 run of the same model.

    .venv/bin/python bench/checkpoint_bytes.py --model smollm2-135m --checkpoints 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv=None) -> int:
    import torch

    from evalharness.models import load_causal_lm, load_tokenizer, resolve_model
    from trainers import checkpointing as ckpt

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--checkpoints", type=int, default=3, help="checkpoints a run writes, the last one final")
    args = ap.parse_args(argv)
    path = resolve_model(args.model)
    model, tok = load_causal_lm(path), load_tokenizer(path)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    for q in model.parameters():
        q.grad = torch.zeros_like(q)
    opt.step()  # AdamW's two moments exist from the first step on
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    n = args.checkpoints
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        ckpt.save(before, 1, model, tok, opt, sched, {})
        per_checkpoint = size(before / "checkpoint-000001")
        print(f"{args.model}: one checkpoint as every checkpoint was written before: {per_checkpoint / 1e6:,.0f} MB; "
              f"a run of {n}: {n * per_checkpoint / 1e6:,.0f} MB")
        for dtype in ("float32", "bfloat16"):
            out = Path(tmp) / dtype
            for step in range(1, n + 1):
                ckpt.save(out, step, model, tok, opt, sched, {}, dtype=getattr(torch, dtype), is_final=step == n)
            total = size(out)
            print(f"  now, {dtype:<8}: {total / 1e6:,.0f} MB in all ({total / (n * per_checkpoint):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

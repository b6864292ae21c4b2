"""Achieved training FLOP/s per loss against this machine's measured peak float32 matmul FLOP/s.

    .venv/bin/python bench/train_flops.py                      # tiny-llama, every loss, evalharness and TRL: ~4 min
    .venv/bin/python bench/train_flops.py --peak-only          # the peak alone: ~20 s
    .venv/bin/python bench/train_vs_trl.py --flops ...         # the same table at the end of a full comparison

Peak. ``torch.matmul`` of two n x n float32 matrices (n = 512, 1024, 2048) costs 2n³ FLOPs; each size is timed
``PEAK_REPEATS`` times in a child process with the training bench's thread settings (one torch thread, OMP/MKL at 1)
and the best time of the best size is the peak: what one core can do at most, the physical limit the training runs
are held to. It is measured before and after the training processes and the higher value is used, so a busy minute
on the shared machine lowers neither the peak nor the ratio by accident.

Model FLOPs. N = the weights of every ``nn.Linear`` in the model, the LM head included (tied or not) and the input
embedding lookup excluded, since a lookup does no multiply-adds. A forward pass costs 2·N FLOPs per token and a
backward pass 4·N, so one training token costs 6·N, plus 2·N where the step runs a live reference forward (the
reference cache off, TRL's precompute off, and ε-DPO always): FLOPs/token = 6·N or 8·N. Tokens are the non-pad tokens
the step trains on (prompt + response, chosen + rejected), the same count as the tokens/s column; attention scores,
softmax, norms, the loss and padded positions are not counted, so the ratio is a lower bound on the hardware's use.
The one-off cache build and TRL's precompute are outside the timed steps and outside the count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PEAK_SIZES = (512, 1024, 2048)
PEAK_REPEATS = 5


def peak_worker(sizes: tuple[int, ...], repeats: int) -> dict[str, float]:
    """Best FLOP/s of ``repeats`` timed [n, n] @ [n, n] float32 products for each n (run in a one-thread child)."""
    import time

    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    gen = torch.Generator().manual_seed(0)
    best = {}
    for n in sizes:
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        out = torch.empty(n, n)
        torch.matmul(a, b, out=out)  # warm-up: first-touch pages and the BLAS kernel choice
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            times.append(time.perf_counter() - start)
        best[str(n)] = 2 * n**3 / min(times)
    return best


def measure_peak(sizes: tuple[int, ...] = PEAK_SIZES, repeats: int = PEAK_REPEATS) -> dict[str, float]:
    """Per-size best FLOP/s from a fresh one-thread process, as the training workers run."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    code = (f"import json, sys; sys.path.insert(0, {str(BENCH)!r}); from train_flops import peak_worker; "
            f"print(json.dumps(peak_worker({tuple(sizes)!r}, {repeats})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def matmul_params(model_path: str) -> int:
    """N: weights of every nn.Linear (LM head included, embedding lookup excluded)."""
    from torch import nn

    from evalharness.models import load_causal_lm

    model = load_causal_lm(model_path)
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def flops_per_token(n_params: int, live_reference: bool) -> int:
    """6·N for the policy's forward and backward, + 2·N for a reference forward inside the step."""
    return (8 if live_reference else 6) * n_params


def print_flops(spec: dict, results: dict[str, dict], peaks: list[dict[str, float]]) -> None:
    """Achieved FLOP/s of each configuration (name ``loss:side-mode``) and its share of the measured peak."""
    n = matmul_params(spec["model"])
    peak = max(max(p.values()) for p in peaks)
    tokens = sum(spec["tokens"][spec["warmup"]:])
    print(f"\npeak float32 matmul, 1 thread (best of {PEAK_REPEATS}, GFLOP/s by n), before / after the runs: "
          + " / ".join(", ".join(f"{k}: {v / 1e9:.1f}" for k, v in p.items()) for p in peaks)
          + f"\npeak = {peak / 1e9:.1f} GFLOP/s; N = {n:,} matmul weights (nn.Linear, LM head included)")
    head = f"{'configuration':<22}{'FLOPs/token':>14}{'GFLOP/s':>10}{'of peak':>9}{'GFLOP/CPU-s':>13}{'of peak':>9}"
    print(f"{head}\n{'-' * len(head)}")
    for name, r in results.items():
        mode = name.split(":")[1]
        per_token = flops_per_token(n, live_reference=mode in ("eh-live", "trl-live"))
        wall = per_token * tokens / r["timed_s"]
        cpu = per_token * r["tokens_per_cpu_s"]
        print(f"{name:<22}{f'{per_token // n}·N':>14}{wall / 1e9:>10.2f}{wall / peak:>9.1%}"
              f"{cpu / 1e9:>13.2f}{cpu / peak:>9.1%}")
    print("GFLOP/s = FLOPs/token x non-pad tokens of the timed steps / their wall time (median process); per CPU-s the\n"
          "same over the process's CPU time. Attention scores, softmax, norms and padding are not counted.")


def main(argv: list[str] | None = None) -> int:
    from train_vs_trl import main as train_vs_trl

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--peak-only" in argv:
        from train_vs_trl import machine_line

        print(machine_line())
        for p in (measure_peak(), measure_peak()):
            print("peak float32 matmul GFLOP/s by n: " + ", ".join(f"{k}: {v / 1e9:.1f}" for k, v in p.items()))
        return 0
    return train_vs_trl(["--flops", "--no-check", *argv])


if __name__ == "__main__":
    sys.exit(main())

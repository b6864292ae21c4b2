"""Length-bucketed batch order for training (tokenising and padding live in evalharness.scoring)."""

from __future__ import annotations

import random

from evalharness.scoring import PairExample


def example_length(ex) -> int:
    if isinstance(ex, PairExample):
        return max(len(ex.chosen), len(ex.rejected))
    return max(len(s) for s in ex.seqs)


def batch_order(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Length-bucketed batches for one epoch, deterministic in (seed, epoch).

    Shuffle, cut into chunks of 50 batches, sort each chunk by length, cut into batches, shuffle the batches: batches
    hold similar lengths (little padding) while the order stays random. Incomplete batches are dropped so every
    optimizer step sees the same number of examples (exact global-batch statistics).
    """
    rng = random.Random(f"{seed}:{epoch}")
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(idx), chunk):
        part = sorted(idx[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part) - batch_size + 1, batch_size)]
    rng.shuffle(batches)
    return batches

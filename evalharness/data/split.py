"""Deterministic train/eval split by content hash of each example's id.

Each example is placed on its own: it goes to eval when the hash of ``(seed, id)``, read as a number in [0, 1), falls
below ``eval_fraction``. So the split is stable under reordering, adding or removing other examples never moves an
example (independent of the dataset size), raising ``eval_fraction`` only moves examples from train to eval, and
duplicates of one id always land on the same side (no leakage). The eval share is ``eval_fraction`` in expectation, not
exactly: with n examples it is within a few ``sqrt(f(1-f)/n)`` of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from evalharness.hashing import content_hash

T = TypeVar("T")
_HASH_BYTES = 8
_SCALE = float(1 << (8 * _HASH_BYTES))


def eval_score(example_id: str, seed: int = 0) -> float:
    """The example's position in [0, 1); it is held out when this is below the eval fraction."""
    return int(content_hash(["split", seed, example_id], size=_HASH_BYTES), 16) / _SCALE


def is_eval(example_id: str, eval_fraction: float, seed: int = 0) -> bool:
    return eval_score(example_id, seed) < eval_fraction


def split_examples(examples: Sequence[T], eval_fraction: float, seed: int = 0) -> tuple[list[T], list[T]]:
    """(train, eval), each in input order. Examples need an ``id`` attribute (PreferencePair, ScoredSamples, Prompt)."""
    if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, (int, float)) or not 0 <= eval_fraction <= 1:
        raise ValueError(f"eval_fraction must be a number in [0, 1], got {eval_fraction!r}")
    train: list[T] = []
    held: list[T] = []
    for example in examples:
        (held if is_eval(example.id, eval_fraction, seed) else train).append(example)
    return train, held

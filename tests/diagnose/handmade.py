"""Hand-made models and pairs whose next-token distributions are known exactly.

``Bigram(rows)``: the logits at a position are ``rows[token at that position]``, so a pair ``x = (c,)``, ``y = (t,)``
scores ``y`` with ``softmax(rows[c])[t]``. Rows given as log-probabilities make the probabilities exact (up to float32).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

from evalharness.scoring import PairExample, Seq


class Bigram(torch.nn.Module):
    def __init__(self, rows):
        super().__init__()
        self.table = torch.nn.Parameter(torch.as_tensor(rows, dtype=torch.float32), requires_grad=False)

    def forward(self, input_ids, attention_mask=None, use_cache=False, **_):
        return SimpleNamespace(logits=self.table[input_ids])


def log_rows(*probability_rows) -> list[list[float]]:
    return [[math.log(p) for p in row] for row in probability_rows]


def pair(x_pos, y_pos, x_neg, y_neg, id="p") -> PairExample:
    return PairExample(id, Seq(tuple(x_pos), tuple(y_pos)), Seq(tuple(x_neg), tuple(y_neg)))

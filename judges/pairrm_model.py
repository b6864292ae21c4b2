"""PairRM's network in the ``llm-blender/PairRM-hf`` checkpoint layout: a DeBERTa-v2 encoder and a head on three markers.

The input is one sequence holding the source and both candidates, each led by its marker token (see ``judges.pairrm``).
The encoder's last hidden states at the markers give ``h_s``, ``h_1``, ``h_2`` (each ``[H]``); the head scores each
candidate against the source,

    score(c) = W2 · tanh(W1 · [h_s ; h_c] + b1) + b2          W1: [H, 2H], W2: [n_tasks, H]

and the logit is the mean over tasks of ``score(1) - score(2)``: > 0 means candidate 1 is preferred. PairRM was trained
with -log σ(score(better) - score(worse)), so a single order's logit is a log-odds of "candidate 1 is better".

State dict, exactly the names of the checkpoint (so ``from_pretrained`` reports no missing or unexpected keys):

    pretrained_model.*              the DeBERTa-v2 encoder (``DebertaV2Model``)
    head_layer.1.{weight,bias}      W1, b1
    head_layer.4.{weight,bias}      W2, b2

The head is a ``Sequential`` of (dropout, linear, tanh, dropout, linear) because those indices are the checkpoint's
names; the dropouts (``config.drop_out``) only act in training. Config fields beyond ``DebertaV2Config``: ``n_tasks``,
``drop_out``, ``source_prefix_id``, ``cand1_prefix_id``, ``cand2_prefix_id`` (``cand_prefix_id`` and ``sep_token_id``
ride along in the checkpoint's config; inference needs neither).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import DebertaV2Model, DebertaV2PreTrainedModel
from transformers.utils import ModelOutput

MARKER_FIELDS = ("source_prefix_id", "cand1_prefix_id", "cand2_prefix_id")


@dataclass
class PairRMOutput(ModelOutput):
    logits: torch.Tensor | None = None  # [B]: > 0 prefers candidate 1
    scores: torch.Tensor | None = None  # [B, 2, n_tasks]: score(candidate 1), score(candidate 2)


class DebertaV2PairRM(DebertaV2PreTrainedModel):
    """PairRM: ``forward(input_ids, attention_mask, markers) -> PairRMOutput``."""

    def __init__(self, config):
        super().__init__(config)
        hidden, p = config.hidden_size, config.drop_out
        self.pretrained_model = DebertaV2Model(config)
        self.head_layer = nn.Sequential(
            nn.Dropout(p), nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Dropout(p), nn.Linear(hidden, config.n_tasks)
        )
        self.post_init()

    @property
    def marker_ids(self) -> tuple[int, int, int]:
        """Token ids of ``<|source|>``, ``<|candidate1|>``, ``<|candidate2|>`` as the checkpoint's config names them."""
        return tuple(int(getattr(self.config, f)) for f in MARKER_FIELDS)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                markers: torch.Tensor | None = None, **_) -> PairRMOutput:
        """input_ids, attention_mask: [B, T] (padding on the right); markers: [B, 3] positions of the source,
        candidate-1 and candidate-2 markers, found in ``input_ids`` (first occurrence) when not given."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if markers is None:
            markers = find_markers(input_ids, self.marker_ids)
        # Columns that are padding in every row change nothing but cost time (callers often pad to the full budget).
        width = int(attention_mask.any(0).nonzero().max()) + 1 if attention_mask.any() else input_ids.shape[1]
        hidden = self.pretrained_model(input_ids=input_ids[:, :width],
                                       attention_mask=attention_mask[:, :width]).last_hidden_state  # [B, T, H]
        rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
        at = hidden[rows, markers.to(hidden.device)]  # [B, 3, H]
        pairs = torch.cat([at[:, :1].expand(-1, 2, -1), at[:, 1:]], dim=-1)  # [B, 2, 2H]: [h_s; h_1], [h_s; h_2]
        scores = self.head_layer(pairs)  # [B, 2, n_tasks]
        return PairRMOutput(logits=(scores[:, 0] - scores[:, 1]).mean(-1), scores=scores)


def find_markers(input_ids: torch.Tensor, marker_ids: tuple[int, int, int]) -> torch.Tensor:
    """[B, T] ids -> [B, 3] position of the first occurrence of each marker id; ValueError when a row lacks one."""
    hits = input_ids.unsqueeze(-1) == torch.tensor(marker_ids, device=input_ids.device)  # [B, T, 3]
    missing = ~hits.any(1)
    if missing.any():
        row, which = (int(i) for i in missing.nonzero()[0])
        raise ValueError(f"row {row} has no {MARKER_FIELDS[which]} token (id {marker_ids[which]})")
    return hits.int().argmax(1)

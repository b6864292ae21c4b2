"""Masked per-token and summed log-probs of response tokens, one concatenated forward per batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainers.batching import Seq, collate


@dataclass
class Forward:
    """Log-probs of N sequences. ``logits`` and ``labels`` are [N, L-1(, V)]: position t predicts token t+1."""

    summed: Tensor  # [N] Σ over response tokens
    token_logps: Tensor  # [N, L-1], 0 off the response
    mask: Tensor  # [N, L-1] bool, True where the predicted token is a response token
    lengths: Tensor  # [N] float, response token counts
    labels: Tensor  # [N, L-1]
    logits: Tensor | None  # [N, L-1, V] after the temperature, when asked for
    tokens: int  # non-pad tokens processed


def sequence_logps(model, seqs: list[Seq], pad_id: int, temperature: float = 1.0, keep_logits: bool = False) -> Forward:
    """Forward ``seqs`` through a causal LM and score their response tokens.

    Logits are divided by ``temperature`` before the log-softmax, so log-probs match samples drawn at that temperature
    (EXO trains at τ=0.8 for policy and reference alike).
    """
    device = next(model.parameters()).device
    ids, attn, resp = (t.to(device) for t in collate(seqs, pad_id))
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1]
    if temperature != 1.0:
        logits = logits / temperature
    labels = ids[:, 1:]
    mask = resp[:, 1:]
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    logp = logp.masked_fill(~mask, 0.0)
    return Forward(
        summed=logp.sum(-1),
        token_logps=logp,
        mask=mask,
        lengths=mask.sum(-1).to(logp.dtype),
        labels=labels,
        logits=logits if keep_logits else None,
        tokens=int(attn.sum()),
    )


def sequence_scores(model, seqs: list[Seq], pad_id: int) -> tuple[Tensor, int]:
    """Scalar reward-model scores [N] of whole sequences (the score at the last non-pad token)."""
    device = next(model.parameters()).device
    ids, attn, _ = (t.to(device) for t in collate(seqs, pad_id))
    out = model(input_ids=ids, attention_mask=attn).logits
    return out.squeeze(-1).float(), int(attn.sum())

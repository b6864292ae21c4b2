"""Masked per-token and summed log-probs of response tokens, one concatenated forward per batch."""

from __future__ import annotations

import inspect
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

    Unless ``keep_logits``, the LM head runs only from the first position that predicts a response token in any of the
    sequences (``logits_to_keep``, where the model takes it): the prompt positions before it would be masked out
    anyway, and the head's [N, L, V] logits and their log-softmax are the largest tensors of a step (the head is a
    fifth of SmolLM2's weights). The results are those of the full head, position for position.
    """
    device = next(model.parameters()).device
    ids, attn, resp = (t.to(device) for t in collate(seqs, pad_id))
    labels = ids[:, 1:]
    mask = resp[:, 1:]
    start = 0 if keep_logits else _first_response_position(mask, model)
    kwargs = {"logits_to_keep": ids.shape[1] - start} if start else {}
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False, **kwargs).logits[:, :-1]
    if temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels[:, start:].unsqueeze(-1)).squeeze(-1)
    logp = logp.masked_fill(~mask[:, start:], 0.0)
    if start:
        logp = torch.nn.functional.pad(logp, (start, 0))
    return Forward(
        summed=logp.sum(-1),
        token_logps=logp,
        mask=mask,
        lengths=mask.sum(-1).to(logp.dtype),
        labels=labels,
        logits=logits if keep_logits else None,
        tokens=int(attn.sum()),
    )


def _first_response_position(mask: Tensor, model) -> int:
    """The first position that predicts a response token in any row (0 when none does, or the model can't skip)."""
    if not _keeps_logits(model):
        return 0
    any_row = mask.any(0)
    return int(any_row.nonzero()[0]) if bool(any_row.any()) else 0


_KEEPS: dict[type, bool] = {}


def _keeps_logits(model) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (transformers' causal LMs do; a wrapper is looked into)."""
    inner = getattr(model, "module", model)  # DDP
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # peft
    cls = type(inner)
    if cls not in _KEEPS:
        forward = getattr(inner, "forward", None)  # a stand-in that is only callable (a probe) gets full logits
        try:
            _KEEPS[cls] = forward is not None and "logits_to_keep" in inspect.signature(forward).parameters
        except (TypeError, ValueError):
            _KEEPS[cls] = False
    return _KEEPS[cls]


def sequence_scores(model, seqs: list[Seq], pad_id: int) -> tuple[Tensor, int]:
    """Scalar reward-model scores [N] of whole sequences (the score at the last non-pad token)."""
    device = next(model.parameters()).device
    ids, attn, _ = (t.to(device) for t in collate(seqs, pad_id))
    out = model(input_ids=ids, attention_mask=attn).logits
    return out.squeeze(-1).float(), int(attn.sum())

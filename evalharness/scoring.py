"""Tokenising and scoring: the truncation rule, padding, and masked per-token / summed log-probs of response tokens.

Truncation (stated once, applied everywhere): the prompt keeps its LAST ``max_prompt_length`` tokens (the most recent
turns matter most); then the response keeps its FIRST ``max_length - len(prompt)`` tokens. Every example that lost
tokens is counted and reported.

Log-probs come from one concatenated forward per batch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from torch import Tensor

from evalharness.data.types import PreferencePair, PromptText, ScoredSamples


@dataclass(frozen=True)
class Seq:
    """One training sequence: prompt token ids then response token ids (the response is what gets scored)."""

    prompt: tuple[int, ...]
    response: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.prompt) + len(self.response)


@dataclass
class PairExample:
    id: str
    chosen: Seq
    rejected: Seq
    augmented_chosen: Seq | None = None  # p ⊕ x+ then y+ (prompt-augmented losses)
    augmented_rejected: Seq | None = None


@dataclass
class KExample:
    id: str
    seqs: list[Seq]
    rewards: list[float]


@dataclass
class Tokenized:
    examples: list
    truncated: int = 0
    skipped: list[str] = field(default_factory=list)


class Encoder:
    """Renders prompts/responses (evalharness.models) and applies the truncation rule."""

    def __init__(self, tokenizer, style: str, max_length: int, max_prompt_length: int, render=None):
        if render is None:
            from evalharness.models import render_prompt, render_response

            render = (render_prompt, render_response)
        self.tok, self.style = tokenizer, style
        self.max_length, self.max_prompt_length = max_length, max_prompt_length
        self._render_prompt, self._render_response = render
        self.truncated = False

    def prompt_ids(self, x: PromptText, prefix: str = "") -> list[int]:
        text = self._render_prompt(self.tok, _prefixed(x, prefix) if prefix else x, self.style)
        # Chat templates write their own special tokens; plain text gets the tokenizer's usual BOS.
        add_special = isinstance(x, str) or not getattr(self.tok, "chat_template", None) or self.style == "plain"
        return self.tok(text, add_special_tokens=add_special)["input_ids"]

    def response_ids(self, y: str) -> list[int]:
        # render_response already ends the response the way generation stops (the template's end-of-turn token,
        # or eos): appending eos here would train a second end token after e.g. Llama-3's <|eot_id|>.
        text = self._render_response(self.tok, y, self.style)
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def seq(self, x: PromptText, y: str, prefix: str = "") -> Seq:
        p, r = self.prompt_ids(x, prefix), self.response_ids(y)
        cut = False
        if len(p) > self.max_prompt_length:
            p, cut = p[-self.max_prompt_length :], True
        room = self.max_length - len(p)
        if len(r) > room:
            r, cut = r[:room], True
        self.truncated |= cut
        return Seq(tuple(p), tuple(r))


def _prefixed(x: PromptText, prefix: str) -> PromptText:
    """p ⊕ x: the prefix goes before the text of the first user turn (or the raw prompt)."""
    if isinstance(x, str):
        return prefix + x
    msgs = list(x)
    for i, m in enumerate(msgs):
        if m.role == "user":
            msgs[i] = m._replace(content=prefix + m.content)
            return tuple(msgs)
    return tuple(msgs)


def tokenize(examples, tokenizer, style: str, max_length: int, max_prompt_length: int, augment_prefix: str | None = None):
    """PreferencePair / ScoredSamples -> PairExample / KExample, counting truncated examples."""
    enc = Encoder(tokenizer, style, max_length, max_prompt_length)
    out, truncated, skipped = [], 0, []
    for ex in examples:
        enc.truncated = False
        if isinstance(ex, PreferencePair):
            item = PairExample(ex.id, enc.seq(ex.x_pos, ex.y_pos), enc.seq(ex.x_neg, ex.y_neg))
            if augment_prefix is not None:
                item.augmented_chosen = enc.seq(ex.x_pos, ex.y_pos, augment_prefix)
                item.augmented_rejected = enc.seq(ex.x_neg, ex.y_neg, augment_prefix)
            seqs = [item.chosen, item.rejected]
        elif isinstance(ex, ScoredSamples):
            item = KExample(ex.id, [enc.seq(ex.x, y) for y in ex.completions], list(ex.rewards))
            seqs = item.seqs
        else:
            raise TypeError(f"can't train on {type(ex).__name__}")
        if any(len(s.response) == 0 for s in seqs):
            skipped.append(ex.id)  # the prompt alone filled max_length: nothing left to score
            continue
        truncated += enc.truncated
        out.append(item)
    return Tokenized(out, truncated, skipped)


def collate(seqs: list[Seq], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``response_mask`` (True on response tokens), all [N, L]."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    resp = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        n, p = len(s), len(s.prompt)
        ids[i, :n] = torch.tensor(s.prompt + s.response, dtype=torch.long)
        attn[i, :n] = 1
        resp[i, p:n] = True
    return ids, attn, resp


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

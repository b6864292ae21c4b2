"""Tokenised examples, the truncation rule, length-bucketed batch order and padding.

Truncation (stated once, applied everywhere): the prompt keeps its LAST ``max_prompt_length`` tokens (the most recent
turns matter most); then the response keeps its FIRST ``max_length - len(prompt)`` tokens. Every example that lost
tokens is counted and reported.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

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

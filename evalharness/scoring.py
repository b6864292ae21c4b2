"""Tokenising and scoring: the truncation rule, padding, and masked per-token / summed log-probs of response tokens.

Truncation (stated once, applied everywhere): the prompt keeps its LAST ``max_prompt_length`` tokens (the most recent
turns matter most); then the response keeps its FIRST ``max_length - len(prompt)`` tokens. Every example that lost
tokens is counted and reported.

Log-probs come from one concatenated forward per batch, or, where several sequences share a prompt (chosen and
rejected of a pair, K samples of one prompt), from one forward of each distinct prompt whose key/value cache feeds
every response continued from it (``shared_prompt_logps``): the same values and gradients, the prompt computed once.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from torch import Tensor

from evalharness import packing
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
    shared: bool = False  # computed by shared_prompt_logps: the tensors hold response positions only ([N, R])


def sequence_logps(model, seqs: list[Seq], pad_id: int, temperature: float = 1.0, keep_logits: bool = False,
                   share_prompts: bool = False) -> Forward:
    """Forward ``seqs`` through a causal LM and score their response tokens.

    ``share_prompts``: where a prompt repeats among ``seqs`` and the model can continue from a cache, compute each
    distinct prompt once (``shared_prompt_logps``; its tensors then hold response positions only).

    Logits are divided by ``temperature`` before the log-softmax, so log-probs match samples drawn at that temperature
    (EXO trains at τ=0.8 for policy and reference alike).

    Unless ``keep_logits``, the LM head runs only from the first position that predicts a response token in any of the
    sequences (``logits_to_keep``, where the model takes it): the prompt positions before it would be masked out
    anyway, and the head's [N, L, V] logits and their log-softmax are the largest tensors of a step (the head is a
    fifth of SmolLM2's weights). The results are those of the full head, position for position.
    """
    if share_prompts and _shares_pay(model, seqs):
        return shared_prompt_logps(model, seqs, pad_id, temperature, keep_logits)
    device = next(model.parameters()).device
    ids, attn, resp = (t.to(device) for t in collate(seqs, pad_id))
    labels = ids[:, 1:]
    mask = resp[:, 1:]
    start = 0 if keep_logits else _first_response_position(mask, model)
    kwargs = {"logits_to_keep": ids.shape[1] - start} if start else {}
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False, **kwargs).logits[:, :-1]
    return _forward(logits, labels, mask, temperature, keep_logits, int(attn.sum()), start=start)


def _forward(logits, labels, mask, temperature: float, keep_logits: bool, tokens: int, start: int = 0,
             shared: bool = False) -> Forward:
    """Per-token log-probs of ``labels`` under ``logits`` (which cover positions ``start:`` of ``mask``), zero off the
    mask and left-padded with zeros over the first ``start`` positions."""
    if temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(_at_least_float32(logits), dim=-1).gather(-1, labels[:, start:].unsqueeze(-1)).squeeze(-1)
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
        tokens=tokens,
        shared=shared,
    )


def _shares_pay(model, seqs: list[Seq]) -> bool:
    """A prompt repeats, none is empty, and the model continues from a cache it is handed."""
    prompts = {s.prompt for s in seqs}
    return len(prompts) < len(seqs) and all(prompts) and _takes(model, "past_key_values") and _takes(model, "position_ids")


def shared_prompt_logps(model, seqs: list[Seq], pad_id: int, temperature: float = 1.0,
                        keep_logits: bool = False) -> Forward:
    """``sequence_logps`` computing each distinct prompt once: one forward over the prompts (right-padded, with its
    key/value cache kept, gradients and all), then one over the responses, each row continuing from its prompt's
    cache rows. Causal attention makes every response position see exactly what the concatenated forward shows it,
    so log-probs and gradients are the same (to rounding).

    The returned tensors hold response positions only: ``token_logps``, ``mask``, ``labels`` are [N, R] and
    ``logits`` [N, R, V], R the longest response; column j is response token j (the losses read them through the
    mask, whatever the layout). ``tokens`` counts the sequences' tokens, as the concatenated forward does, so
    throughput stays comparable.
    """
    device = next(model.parameters()).device
    prompts: dict[tuple[int, ...], int] = {}
    row_of = torch.tensor([prompts.setdefault(s.prompt, len(prompts)) for s in seqs], device=device)
    p_ids, p_attn, _ = (t.to(device) for t in collate([Seq(p, ()) for p in prompts], pad_id))
    p_len = p_attn.sum(-1)
    last = p_len - 1  # the position predicting each prompt's first response token
    keep = torch.unique(last)  # the head runs only where some prompt ends
    # A DDP wrapper expects one forward per backward: the prompts go through the module it wraps, the responses
    # through the wrapper. Each parameter's gradient still reaches the wrapper's hooks once, summed over both.
    inner = getattr(model, "module", model)
    out = inner(input_ids=p_ids, attention_mask=p_attn, position_ids=_positions(p_attn), use_cache=True,
                logits_to_keep=keep)
    first = out.logits[torch.arange(len(prompts), device=device), torch.searchsorted(keep, last)]  # [U, V]
    cache = out.past_key_values
    r_ids, r_attn, resp = (t.to(device) for t in collate([Seq((), s.response) for s in seqs], pad_id))
    rows = _packed_rows(inner, cache, row_of, p_len, seqs)
    if rows is not None:  # responses of several prompts share a row, each seeing its own prompt alone
        pk = packing.layout(rows, row_of.tolist(), p_len.tolist(), p_ids.shape[1], [s.response for s in seqs],
                            pad_id, device)
        packing.pack_cache(cache, pk.prompt_index)
        packed = model(input_ids=pk.ids, attention_mask=_block_mask(inner, pk.mask, first.dtype), position_ids=pk.positions,
                       past_key_values=cache, use_cache=True, logits_to_keep=pk.keep).logits
        rest = packed.reshape(-1, packed.shape[-1])[pk.gather]  # [N, R-1, V], back in one-response-per-row layout
        logits = torch.cat([first[row_of, None], rest], 1)
        return _forward(logits, r_ids, resp, temperature, keep_logits, sum(len(s) for s in seqs), shared=True)
    cache.reorder_cache(row_of)  # a copy of its prompt's keys/values per sequence (index_select keeps the graph)
    positions = p_len[row_of, None] + torch.arange(r_ids.shape[1], device=device)
    width = r_ids.shape[1] - 1  # the last response position predicts nothing
    rest = model(input_ids=r_ids, attention_mask=torch.cat([p_attn[row_of], r_attn], 1), position_ids=positions,
                 past_key_values=cache, use_cache=True, logits_to_keep=torch.arange(width, device=device)).logits
    logits = torch.cat([first[row_of, None], rest], 1)  # [N, R, V]: column j predicts response token j
    return _forward(logits, r_ids, resp, temperature, keep_logits, sum(len(s) for s in seqs), shared=True)


def _packed_rows(model, cache, row_of: Tensor, p_len: Tensor, seqs: list[Seq]) -> list[list[int]] | None:
    """The packed layout of the responses (``packing.plan``), or ``None``: one response per row costs no more, or the
    model's attention or cache would not honour a block mask (flash kernels, sliding windows)."""
    from transformers.cache_utils import DynamicLayer

    if getattr(getattr(model, "config", None), "_attn_implementation", None) not in ("sdpa", "eager"):
        return None
    if not all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", ())) or not cache.layers:
        return None
    per_token, per_pair = packing.costs(model)
    return packing.plan(row_of.tolist(), p_len.tolist(), [len(s.response) for s in seqs], per_token, per_pair)


def _block_mask(model, mask: Tensor, dtype) -> Tensor:
    """``mask`` as the attention takes a custom 4D mask: sdpa a boolean one (True attends), eager adds it to the
    scores (0 or the dtype's lowest value)."""
    if model.config._attn_implementation == "sdpa":
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def _at_least_float32(logits: Tensor) -> Tensor:
    """bf16 logits are scored in float32; a float64 model (the equality tests) keeps its precision."""
    return logits if logits.dtype == torch.float64 else logits.float()


def _positions(attn: Tensor) -> Tensor:
    """Position ids of right-padded rows (0, 1, … on the tokens; the pads' values are never attended to)."""
    return (attn.cumsum(-1) - 1).clamp(min=0)


def _first_response_position(mask: Tensor, model) -> int:
    """The first position that predicts a response token in any row (0 when none does, or the model can't skip)."""
    if not _keeps_logits(model):
        return 0
    any_row = mask.any(0)
    return int(any_row.nonzero()[0]) if bool(any_row.any()) else 0


_TAKES: dict[tuple[type, str], bool] = {}


def _keeps_logits(model) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (transformers' causal LMs do; a wrapper is looked into)."""
    return _takes(model, "logits_to_keep")


def _takes(model, argument: str) -> bool:
    """Whether the (unwrapped) model's forward takes ``argument``."""
    inner = getattr(model, "module", model)  # DDP
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # peft
    key = (type(inner), argument)
    if key not in _TAKES:
        forward = getattr(inner, "forward", None)  # a stand-in that is only callable (a probe) takes nothing more
        try:
            _TAKES[key] = forward is not None and argument in inspect.signature(forward).parameters
        except (TypeError, ValueError):
            _TAKES[key] = False
    return _TAKES[key]


def sequence_scores(model, seqs: list[Seq], pad_id: int) -> tuple[Tensor, int]:
    """Scalar reward-model scores [N] of whole sequences (the score at the last non-pad token)."""
    device = next(model.parameters()).device
    ids, attn, _ = (t.to(device) for t in collate(seqs, pad_id))
    out = model(input_ids=ids, attention_mask=attn).logits
    return out.squeeze(-1).float(), int(attn.sum())

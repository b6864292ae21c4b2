"""The transformers backend: a batched decode loop in which every request draws from its own seeded RNG.

``model.generate`` shares one RNG across the batch, so a sample would depend on which requests it was batched with.
Here row i keeps a ``torch.Generator`` seeded with its ``Request.seed`` and draws exactly one uniform per generated
token (inverse-CDF sampling), so a request gives the same sample alone or in any batch. The logits of a row are equal
across batch shapes only up to float noise (~1e-7), which flips a token only when the uniform lands that close to a
bucket edge.

Each step: logits / T, then the log-prob of the sampled token is read from ``log_softmax(logits / T)`` over the FULL
vocabulary, before top-p truncation, so it equals what ``evalharness.scoring.sequence_logps`` computes at temperature
T (the policy's own log-likelihood at that temperature, the quantity KL estimates need). Top-p only restricts which
token may be drawn: the draw is from the nucleus renormalised. Temperature 0 is greedy: the argmax, no draw, and
log-probs at temperature 1 (``Sampling.logprob_temperature``). A row stops at an eos id (the tokenizer's and the
generation config's), at a stop string (found in its decoded text), at ``max_new_tokens`` or at the model's maximum
length; finished rows are dropped from the batch and from the KV cache.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

import torch

from evalharness.generation.base import Request, Sample, Sampling
from evalharness.threads import ThreadGovernor


class HFGenerator:
    name = "hf"

    def __init__(self, model_path, dtype: str = "float32", batch_size: int = 16, device: str | None = None):
        from evalharness.models import load_causal_lm, load_tokenizer, resolve_model

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        path = resolve_model(model_path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = load_tokenizer(path, padding_side="left")
        self.model = load_causal_lm(path, dtype=dtype).to(self.device).eval()
        self.batch_size = batch_size
        # decoding is many small ops: a thread per core collapses when another job holds a core (evalharness.threads)
        self._governor = ThreadGovernor() if self.device.type == "cpu" else None
        self.eos_ids = eos_token_ids(self.tokenizer, self.model.generation_config)
        config = self.model.config
        self.max_length = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return True, "transformers is always installed"

    def generate(self, requests: list[Request], sampling: Sampling, progress=None) -> list[Sample]:
        for r in requests:
            if not r.prompt_ids:
                raise ValueError("a request has an empty prompt; every prompt needs at least one token (e.g. a BOS)")
            if self.max_length and len(r.prompt_ids) >= self.max_length:
                raise ValueError(f"a prompt of {len(r.prompt_ids)} tokens leaves no room to generate within the "
                                 f"model's maximum length {self.max_length}")
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(requests)), key=lambda i: len(requests[i].prompt_ids))
        out: list[Sample | None] = [None] * len(requests)
        done = 0
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            for i, sample in zip(idx, self._decode([requests[i] for i in idx], sampling)):
                out[i] = sample
            done += len(idx)
            report_progress(progress, done, len(idx))
        return out

    @torch.no_grad()
    def _decode(self, requests: Sequence[Request], sampling: Sampling) -> list[Sample]:
        n, dev = len(requests), self.device
        width = max(len(r.prompt_ids) for r in requests)
        ids = torch.full((n, width), self.tokenizer.pad_token_id, dtype=torch.long)
        attn = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(requests):
            ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            attn[i, width - len(r.prompt_ids) :] = 1
        ids, attn = ids.to(dev), attn.to(dev)
        positions = (attn.cumsum(-1) - 1).clamp(min=0)
        next_pos = positions[:, -1] + 1
        budget = [min(sampling.max_new_tokens, self.max_length - len(r.prompt_ids)) if self.max_length
                  else sampling.max_new_tokens for r in requests]
        rngs = [torch.Generator().manual_seed(r.seed) for r in requests]
        temperature = sampling.logprob_temperature  # 1 for greedy: its log-probs are the model's own
        tokens: list[list[int]] = [[] for _ in requests]
        logps: list[list[float]] = [[] for _ in requests]
        ends: list[tuple[str, str] | None] = [None] * n  # (finish_reason, text)
        active = list(range(n))  # request index of each row of the batch
        cache, inputs, input_pos = None, ids, positions
        while active:
            if self._governor is not None:
                self._governor.tick()
            out = self.model(input_ids=inputs, attention_mask=attn, position_ids=input_pos, past_key_values=cache,
                             use_cache=True)
            cache = out.past_key_values
            scaled = out.logits[:, -1].float() / temperature
            if sampling.greedy:
                picked = scaled.argmax(-1)
            else:
                # One uniform per row per step, from the row's own generator (on the CPU: the same stream anywhere).
                u = torch.stack([torch.rand((), generator=rngs[i], dtype=torch.float64) for i in active]).to(dev)
                picked = sample_top_p(scaled, sampling.top_p, u)
            picked_logp = scaled.log_softmax(-1).gather(-1, picked[:, None])[:, 0]
            keep = []
            for row, (i, tok, lp) in enumerate(zip(active, picked.tolist(), picked_logp.tolist())):
                tokens[i].append(tok)
                logps[i].append(lp)
                ends[i] = self._finished(tokens[i], sampling.stop, budget[i])
                if ends[i] is None:
                    keep.append(row)
            if len(keep) < len(active):
                if not keep:
                    break
                rows = torch.tensor(keep, device=dev)
                cache.batch_select_indices(rows)
                attn, picked, next_pos = attn[rows], picked[rows], next_pos[rows]
                active = [active[r] for r in keep]
            attn = torch.cat([attn, attn.new_ones((len(active), 1))], dim=1)
            inputs, input_pos = picked[:, None], next_pos[:, None]
            next_pos = next_pos + 1
        return [Sample(tokens[i], ends[i][1], logps[i], ends[i][0]) for i in range(n)]

    def _finished(self, tokens: list[int], stop: Sequence[str], budget: int) -> tuple[str, str] | None:
        """(finish_reason, text) once the sample is complete, else None (text is decoded only for stop strings)."""
        if tokens[-1] in self.eos_ids:
            return "stop", self.decode(tokens)
        if stop:
            text, hit = trim_at_stop(self.decode(tokens), stop)
            if hit:
                return "stop", text
        if len(tokens) >= budget:
            return "length", self.decode(tokens)
        return None

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def close(self) -> None:
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def sample_top_p(scaled_logits: torch.Tensor, top_p: float, u: torch.Tensor) -> torch.Tensor:
    """Token ids [B] drawn by inverse CDF with uniforms ``u`` [B] from softmax(scaled_logits) [B, V] cut to its nucleus.

    The nucleus is the smallest set of most-probable tokens whose mass reaches ``top_p`` (a token is kept when the mass
    ranked strictly above it is below ``top_p``, so the top token always is), as in Holtzman et al. 2020 and vLLM.
    Worked example, probs (0.5, 0.3, 0.2), top_p 0.7: mass above each is (0, 0.5, 0.8), so the first two are kept and
    renormalised to (0.625, 0.375); u = 0.7 lands past 0.625 and picks the second token.
    """
    probs = scaled_logits.softmax(-1)
    order = None
    if top_p < 1.0:
        probs, order = probs.sort(dim=-1, descending=True, stable=True)
        above = probs.double().cumsum(-1) - probs.double()
        probs = probs.masked_fill(above >= top_p, 0.0)
    cdf = probs.double().cumsum(-1)
    pos = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]
    pos = pos.clamp(max=probs.shape[-1] - 1)
    return pos if order is None else order.gather(-1, pos[:, None])[:, 0]


def trim_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest occurrence of any stop string, and whether one occurred.

    >>> trim_at_stop("Hi!\\n\\nHuman: more", ["\\n\\nHuman:"])
    ('Hi!', True)
    >>> trim_at_stop("a-b", ["-", "b"]), trim_at_stop("ab", ["x"])
    (('a', True), ('ab', False))
    """
    cuts = [j for j in (text.find(s) for s in stop if s) if j >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def eos_token_ids(tokenizer, generation_config=None) -> frozenset[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    extra = getattr(generation_config, "eos_token_id", None)
    if extra is not None:
        ids.update([extra] if isinstance(extra, int) else extra)
    return frozenset(ids)


def report_progress(progress, done: int, delta: int) -> None:
    """``progress`` is a tqdm-like object (``update(delta)``) or a callable taking the number of requests done."""
    if progress is None:
        return
    if hasattr(progress, "update"):
        progress.update(delta)
    else:
        progress(done)

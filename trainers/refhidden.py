"""Reference logits from cached final hidden states: a fixed reference's logits at a response position are its LM head
applied to its final hidden state there (after the final norm), so the hidden states of every training sequence are
computed once, before training, and each step pays only the head's matmul on the response positions instead of a
whole reference forward.

Used for losses that need the reference's full logits (ε-DPO) while ``reference_cache`` is on, the reference is fixed
and the cache fits ``MAX_BYTES``; otherwise the loop keeps its live reference forward. Which of the two a run uses is a
function of its config (``reference_cache``), its data and model, so a resumed run computes what it computed before.
The cache lives in memory only: it costs (response tokens) x hidden size x 4 bytes, 2.3 KB a token for SmolLM2-135M.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from evalharness.scoring import Seq, sequence_logps
from trainers.refcache import CacheReport
from trainers.spec import LossSpec

# 4 GiB: about 1.8M response tokens of SmolLM2-135M, held in memory by every rank; past it the step runs the live
# reference forward (one line on stderr says so). A constant, not the free memory, so a resume chooses as before.
MAX_BYTES = 4 << 30

# Needs that read more of the reference than its logits on the training sequences (its log-probs on other
# sequences, or a reference that moves): those runs keep the reference model.
_NEEDS_MODEL = frozenset({"k_samples", "prompt_augmented", "moving_reference"})


def eligible(spec: LossSpec, reference_cache: bool) -> bool:
    """Whether a run of ``spec`` would take its reference logits from cached hidden states (size permitting)."""
    return (reference_cache and "reference_logits" in spec.needs and not (_NEEDS_MODEL & spec.needs)
            and spec.reference_update is None)


def cache_bytes(seqs: list[Seq], hidden_size: int) -> int:
    """Bytes of the float32 hidden states of ``seqs``: one vector per response token (each predicted by one position)."""
    return sum(len(s.response) for s in set(seqs)) * hidden_size * 4


class HeadMismatch(Exception):
    """The model's logits are not its output embedding applied to what that layer receives (a soft cap, a scale)."""


@dataclass
class HiddenLookup:
    logits: Tensor  # [N, W, V] in the layout of the policy's logits, zero off the response positions
    summed: Tensor  # [N] summed reference log-probs of the responses


class ReferenceHidden:
    """The reference's LM head and, per training sequence, its final hidden states on the response-predicting
    positions ([len(response), H]) and its summed response log-prob, both from one forward before training."""

    def __init__(self, head: torch.nn.Module, temperature: float):
        self.head, self.temperature = head, temperature
        self.hidden: dict[Seq, Tensor] = {}
        self.logps: dict[Seq, float] = {}

    def fill(self, model, seqs: list[Seq], pad_id: int, batch_size: int) -> CacheReport:
        """Score ``seqs`` in batches (longest first, so little padding) with a hook on the output embedding that keeps
        its input. The first batch checks that the head alone gives the model's log-probs (HeadMismatch if not)."""
        start = time.perf_counter()
        todo = sorted(set(seqs), key=len, reverse=True)
        seen: list[Tensor] = []
        hook = model.get_output_embeddings().register_forward_hook(lambda mod, args, out: seen.append(args[0]))
        try:
            with torch.no_grad():
                for i in range(0, len(todo), batch_size):
                    chunk = todo[i : i + batch_size]
                    seen.clear()
                    fwd = sequence_logps(model, chunk, pad_id, self.temperature)
                    (h,) = seen
                    # the head ran on the last h.shape[1] positions of the collated rows (logits_to_keep)
                    skip = fwd.mask.shape[1] + 1 - h.shape[1]
                    for row, (s, lp) in enumerate(zip(chunk, fwd.summed.tolist())):
                        cols = fwd.mask[row].nonzero().squeeze(-1) - skip
                        self.hidden[s], self.logps[s] = h[row, cols].cpu(), lp  # indexing copies: the batch is freed
                    if i == 0:
                        self._check(chunk, fwd.summed)
        finally:
            hook.remove()
        return CacheReport(len(todo), 0, len(todo), time.perf_counter() - start, kind="hidden states")

    def _check(self, chunk: list[Seq], summed: Tensor) -> None:
        device = summed.device
        hidden = torch.cat([self.hidden[s] for s in chunk]).to(device)
        logp = torch.log_softmax(self._logits(hidden).float(), -1)
        labels = torch.tensor([t for s in chunk for t in s.response], device=device)
        token = logp.gather(-1, labels[:, None]).squeeze(-1)
        rows = torch.repeat_interleave(torch.arange(len(chunk), device=device),
                                       torch.tensor([len(s.response) for s in chunk], device=device))
        mine = torch.zeros(len(chunk), dtype=token.dtype, device=device).index_add_(0, rows, token)
        # per token: float32 rounding stays far below 1e-3 nats, bfloat16's below 0.05; a soft cap or a logit scale
        # moves tokens by far more
        per_token = ((mine.double() - summed.double()).abs() / rows.bincount().double()).max()
        if float(per_token) > (5e-2 if torch.is_autocast_enabled(device.type) else 1e-3):
            raise HeadMismatch(f"{float(per_token):.3g} nats a token apart")

    def _logits(self, hidden: Tensor) -> Tensor:
        logits = self.head(hidden)
        return logits / self.temperature if self.temperature != 1.0 else logits

    def lookup(self, seqs: list[Seq], mask: Tensor) -> HiddenLookup:
        """The reference logits of ``seqs`` laid out as ``mask`` ([N, W], True on the positions predicting response
        tokens, one row per sequence, in order) and their summed log-probs. The head runs on the response positions
        only; the other positions hold zeros, which the losses never read."""
        device = mask.device
        hidden = torch.cat([self.hidden[s] for s in seqs]).to(device)
        with torch.no_grad():
            logits = self._logits(hidden)
            full = logits.new_zeros((*mask.shape, logits.shape[-1]))
            full[mask] = logits  # row-major: each row's response positions in order, as the cat above
        # float32 as the live forward's summed log-probs are, float64 for a float64 reference (the equality tests)
        summed = torch.tensor([self.logps[s] for s in seqs], dtype=torch.promote_types(logits.dtype, torch.float32),
                              device=device)
        return HiddenLookup(full, summed)


def build(model, spec: LossSpec, reference_cache: bool, seqs: list[Seq], pad_id: int, batch_size: int,
          temperature: float, autocast=None) -> tuple[ReferenceHidden | None, CacheReport | None]:
    """The hidden-state cache of ``seqs`` under the reference ``model`` (on its device) and its report, or
    (None, None) where the run keeps its live reference forward: not eligible, over ``MAX_BYTES`` or a model whose
    logits are more than its head (the last two say so in one stderr line). ``autocast``: a context-manager factory
    the fill runs under, as the step runs the reference."""
    head = model.get_output_embeddings() if eligible(spec, reference_cache) else None
    hidden_size = getattr(head, "in_features", None)
    if not hidden_size:
        return None, None
    need = cache_bytes(seqs, hidden_size)
    if need > MAX_BYTES:
        print(f"reference logits: a live reference forward each step (cached hidden states would take "
              f"{need / 2**30:.1f} GiB > {MAX_BYTES / 2**30:.0f} GiB)", file=sys.stderr)
        return None, None
    cache = ReferenceHidden(head, temperature)
    try:
        with autocast() if autocast is not None else contextlib.nullcontext():
            report = cache.fill(model, seqs, pad_id, batch_size)
    except HeadMismatch as e:
        print(f"reference logits: a live reference forward each step (this model's logits are more than its output "
              f"embedding of its last hidden state: {e})", file=sys.stderr)
        return None, None
    return cache, report

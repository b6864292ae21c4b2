"""Prefix sharing: a prompt computed once and continued into every response gives the concatenated forward's losses
and gradients, for every loss in the registry, on a real (tiny, float64) model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from evalharness import packing, scoring
from evalharness.plugins import registry
from evalharness.scoring import KExample, PairExample, Seq
from trainers.loop import build_inputs
from trainers.setup import Prepared

# Prompts of different lengths (padding inside the prompt batch) and responses of 1 to 9 tokens.
P1, P2, P3 = tuple(range(20, 37)), tuple(range(40, 49)), tuple(range(60, 72))
PAIRS = [
    PairExample("a", Seq(P1, tuple(range(100, 109))), Seq(P1, (110, 111, 112))),
    PairExample("b", Seq(P2, (120,)), Seq(P2, tuple(range(130, 137)))),
    PairExample("c", Seq(P3, (140, 141, 142, 143)), Seq(P3, (150, 151, 152, 153, 154))),
]
# seed 000's CausalDialogue: x+ != x- (a pair whose rejected answers another prompt)
DIALOGUE = PairExample("d", Seq(P2, (160, 161)), Seq(P1 + (5,), (170, 171, 172)))
AUG = (7, 8, 9)  # a prompt prefix p for the prompt-augmented losses
K_EXAMPLES = [KExample("k1", [Seq(P1, (100, 101)), Seq(P1, (102,)), Seq(P1, (103, 104, 105))], [1.0, 0.0, 0.5]),
              KExample("k2", [Seq(P3, (110,)), Seq(P3, (111, 112)), Seq(P3, (113, 114, 115, 116))], [0.2, 0.9, 0.1])]
LOSSES = [n for n in registry("losses").names() if "reward_head" not in registry("losses").get(n).needs]
SHARES_PAY, PACKED_ROWS = scoring._shares_pay, scoring._packed_rows


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from evalharness.tiny import build_tiny

    path = build_tiny("llama", tmp_path_factory.mktemp("m") / "m")
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64)
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64).requires_grad_(False).eval()
    with torch.no_grad():  # a reference away from the policy: h != 0, so every loss term is live
        for q in reference.parameters():
            q.add_(0.02 * torch.randn(q.shape, generator=torch.Generator().manual_seed(q.numel()), dtype=q.dtype))
    return policy.eval(), reference


def _augmented(ex: PairExample) -> PairExample:
    aug = lambda s: Seq(AUG + s.prompt, s.response)  # noqa: E731
    return PairExample(ex.id, ex.chosen, ex.rejected, aug(ex.chosen), aug(ex.rejected))


def _run(spec, batch, policy, reference, share: bool, monkeypatch, pack: bool = True):
    """Loss values and the policy's gradients, through the loop's own input builder."""
    monkeypatch.setattr(scoring, "_shares_pay", SHARES_PAY if share else (lambda model, seqs: False))
    monkeypatch.setattr(scoring, "_packed_rows", PACKED_ROWS if pack else (lambda *a: None))
    params = spec.make_params({})
    p = Prepared(accelerator=SimpleNamespace(device=torch.device("cpu")), model=policy, reference=reference,
                 tokenizer=None, optimizer=None, scheduler=None, examples=[], lengths=[], pad_id=0, cache=None,
                 cache_report=None, truncated=0, skipped=0)
    policy.zero_grad(set_to_none=True)
    inputs, tokens = build_inputs(spec.needs, batch, p, spec.initial_state(params), 0.9)
    out = spec.fn(inputs, params)
    out.losses.sum().backward()
    grads = [q.grad.clone() if q.grad is not None else torch.zeros_like(q) for q in policy.parameters()]
    widths = {f: getattr(inputs, f).shape[1] for f in ("chosen_mask", "policy_chosen_logits")
              if getattr(inputs, f) is not None}
    return out.losses.detach(), grads, tokens, widths


@pytest.mark.parametrize("pack", [True, False], ids=["packed", "row-per-response"])
@pytest.mark.parametrize("loss", LOSSES)
def test_shared_prompts_give_the_concatenated_losses_and_gradients(loss, pack, models, monkeypatch):
    """Both layouts of the responses: packed several to a row (what these batches choose) and one per row."""
    policy, reference = models
    spec = registry("losses").get(loss)
    if "k_samples" in spec.needs:
        batch = K_EXAMPLES
    else:
        batch = [_augmented(ex) for ex in PAIRS + [DIALOGUE]] if "prompt_augmented" in spec.needs else PAIRS
    forwards, layouts = [], []
    hook = policy.register_forward_hook(lambda mod, args, kw, out: forwards.append(kw["input_ids"].shape),
                                        with_kwargs=True)
    real_layout = packing.layout
    monkeypatch.setattr(packing, "layout", lambda rows, *a: layouts.append(rows) or real_layout(rows, *a))
    try:
        shared = _run(spec, batch, policy, reference, True, monkeypatch, pack)
        n_shared = len(forwards)
        plain = _run(spec, batch, policy, reference, False, monkeypatch)
    finally:
        hook.remove()
    # the shared path ran: its policy forwards are prompt-only (one row per distinct prompt) then responses
    assert n_shared > len(forwards) - n_shared and forwards[0][0] < 2 * len(batch)
    assert bool(layouts) == pack  # these batches pay for packing: the packed layout ran, or it was switched off
    assert torch.allclose(shared[0], plain[0], atol=1e-5, rtol=0), (shared[0], plain[0])
    for a, b in zip(shared[1], plain[1]):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert shared[2] == plain[2]  # throughput counts the same tokens either way
    if "chosen_mask" in shared[3]:  # response positions only: the longest response, not prompt + response
        assert shared[3]["chosen_mask"] == 9 < plain[3]["chosen_mask"]


def test_pairs_whose_prompts_differ_keep_the_concatenated_forward(models):
    policy, _ = models
    seqs = [DIALOGUE.chosen, DIALOGUE.rejected]
    fwd = scoring.sequence_logps(policy, seqs, 0, share_prompts=True)
    assert not fwd.shared and fwd.mask.shape[1] == len(DIALOGUE.rejected) - 1
    mixed = scoring.sequence_logps(policy, seqs + [PAIRS[0].chosen, PAIRS[0].rejected], 0, share_prompts=True)
    plain = scoring.sequence_logps(policy, seqs + [PAIRS[0].chosen, PAIRS[0].rejected], 0)
    assert mixed.shared and torch.allclose(mixed.summed, plain.summed, atol=1e-9, rtol=0)


def test_the_reference_cache_stores_the_same_values_computed_with_shared_prompts(models, tmp_path):
    from evalharness.store import Store
    from trainers.refcache import ReferenceCache

    _, reference = models
    seqs = [s for ex in PAIRS + [DIALOGUE] for s in (ex.chosen, ex.rejected)]
    cache = ReferenceCache(Store(str(tmp_path / "s.duckdb")), "fp", 1.0)
    calls = []

    def load():
        calls.append(1)
        return reference

    report = cache.fill(load, seqs, pad_id=0, batch_size=4, progress=False)
    assert report.computed == len(seqs) and calls == [1]
    plain = scoring.sequence_logps(reference, seqs, 0).summed
    assert torch.allclose(cache.lookup(seqs, "cpu").double(), plain, atol=1e-4, rtol=0)
    again = ReferenceCache(Store(str(tmp_path / "s.duckdb")), "fp", 1.0)
    assert again.fill(load, seqs, pad_id=0, batch_size=4, progress=False).hits == len(seqs) and calls == [1]

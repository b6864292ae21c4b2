"""ε-DPO's reference logits from cached final hidden states (trainers/refhidden.py): the reference's head applied to
its hidden states, computed once, gives what the live reference forward gives every step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from evalharness import scoring
from evalharness.config import DataConfig, TrainConfig
from evalharness.plugins import registry
from evalharness.scoring import PairExample, Seq
from evalharness.store import Store
from trainers import refhidden
from trainers.loop import build_inputs, train
from trainers.losses.edpo import monotonicity_sign
from trainers.refcache import ReferenceCache
from trainers.setup import Prepared

EDPO = registry("losses").get("e-dpo")
P1, P2 = tuple(range(20, 37)), tuple(range(40, 49))
PAIRS = [
    PairExample("a", Seq(P1, tuple(range(100, 109))), Seq(P1, (110, 111, 112))),
    PairExample("b", Seq(P2, (120,)), Seq(P2, tuple(range(130, 137)))),
    PairExample("c", Seq(P2, (140, 141, 142, 143)), Seq(P1 + (5,), (150, 151, 152, 153, 154))),  # x+ != x-
    # under the models below these two are relaxed (s = +1) where the three above are tightened (s = -1)
    PairExample("d", Seq(P2, (119, 193, 160, 103, 139)), Seq(P2, (63, 197, 163, 181))),
    PairExample("e", Seq(P2, (134, 153, 66, 139, 71)), Seq(P2, (64, 141, 89, 189, 89, 120, 61))),
    PairExample("tie", Seq(P1, (180, 181)), Seq(P1, (180, 181))),  # z⁻ = z = z⁺ = 0: held at β (s = 0)
]
SHARES_PAY, PACKED_ROWS = scoring._shares_pay, scoring._packed_rows


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from evalharness.tiny import build_tiny

    path = build_tiny("llama", tmp_path_factory.mktemp("m") / "m")
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64).eval()
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64).requires_grad_(False).eval()
    with torch.no_grad():  # a policy away from its reference: h != 0 and the β̃ test sees two different models
        for q in policy.parameters():
            q.add_(0.05 * torch.randn(q.shape, generator=torch.Generator().manual_seed(q.numel()), dtype=q.dtype))
    return policy, reference


def _prepared(policy, reference=None, hidden=None):
    return Prepared(accelerator=SimpleNamespace(device=torch.device("cpu")), model=policy, reference=reference,
                    tokenizer=None, optimizer=None, scheduler=None, examples=[], lengths=[], pad_id=0, cache=None,
                    cache_report=None, truncated=0, skipped=0, hidden=hidden)


@pytest.mark.parametrize("layout", ["packed", "row-per-response", "concatenated"])
def test_cached_hidden_states_give_the_live_reference_logits_and_loss(layout, models, monkeypatch):
    """In each layout of the policy's forward, the same reference logits on every response position, the same
    summed log-probs, β̃ decisions and losses (float64: to 1e-9)."""
    policy, reference = models
    monkeypatch.setattr(scoring, "_shares_pay", (lambda m, s: False) if layout == "concatenated" else SHARES_PAY)
    monkeypatch.setattr(scoring, "_packed_rows", PACKED_ROWS if layout == "packed" else (lambda *a: None))
    seqs = [s for ex in PAIRS for s in (ex.chosen, ex.rejected)]
    hidden, report = refhidden.build(reference, EDPO, True, seqs, pad_id=0, batch_size=4, temperature=0.9)
    assert hidden is not None and report.computed == len(set(seqs))  # the tie is one sequence
    params = EDPO.make_params({"epsilon": 0.3})
    state = EDPO.initial_state(params)
    live, _ = build_inputs(EDPO.needs, PAIRS, _prepared(policy, reference=reference), state, 0.9)
    cached, _ = build_inputs(EDPO.needs, PAIRS, _prepared(policy, hidden=hidden), state, 0.9)
    for side in ("chosen", "rejected"):
        mask = getattr(live, f"{side}_mask")
        a, b = getattr(live, f"reference_{side}_logits"), getattr(cached, f"reference_{side}_logits")
        assert a.shape == b.shape
        torch.testing.assert_close(b[mask], a[mask], rtol=0, atol=1e-9)
        torch.testing.assert_close(getattr(cached, f"reference_{side}_logps"),
                                   getattr(live, f"reference_{side}_logps"), rtol=0, atol=1e-9)
    s_live, s_cached = monotonicity_sign(live, 0.3), monotonicity_sign(cached, 0.3)
    assert torch.equal(s_live, s_cached)
    assert set(s_live.tolist()) == {-1.0, 0.0, 1.0}  # relaxed, held and tightened pairs all take part
    torch.testing.assert_close(EDPO.fn(cached, params).losses, EDPO.fn(live, params).losses, rtol=0, atol=1e-9)


def test_summed_log_probs_equal_the_reference_cache(models, tmp_path):
    _, reference = models
    seqs = [s for ex in PAIRS for s in (ex.chosen, ex.rejected)]
    hidden, _ = refhidden.build(reference, EDPO, True, seqs, pad_id=0, batch_size=3, temperature=1.0)
    cache = ReferenceCache(Store(str(tmp_path / "s.duckdb")), "fp", 1.0)
    cache.fill(lambda: reference, seqs, 0, batch_size=8, progress=False, write=False)
    torch.testing.assert_close(torch.tensor([hidden.logps[s] for s in seqs]), cache.lookup(seqs, "cpu"),
                               rtol=0, atol=1e-5)


def _cfg(tmp_path, **kw):
    base = dict(loss="e-dpo", model="tiny-llama", data=DataConfig(name="synthetic", limit=16, eval_fraction=0.0),
                params={"epsilon": 0.3}, max_steps=6, batch_size=4, lr=3e-3, max_length=96, max_prompt_length=48,
                seed=0)
    base.update(kw)
    return TrainConfig(out=str(tmp_path / "out"), **base)


def _steps(cfg, tmp_path):
    metrics = []
    train(cfg, Store(str(tmp_path / "s.duckdb")), progress=False, on_step=lambda step, m: metrics.append(dict(m)))
    return metrics


def test_training_with_cached_hidden_states_equals_the_live_reference_forward(tmp_path, monkeypatch):
    """Six steps of tiny-llama (float32) from policy == reference: step 1 holds every pair at β (s = 0), later steps
    relax and tighten some; the losses, shares and β of every step equal the live run's."""
    lookups = []
    lookup = refhidden.ReferenceHidden.lookup
    monkeypatch.setattr(refhidden.ReferenceHidden, "lookup", lambda self, *a: lookups.append(1) or lookup(self, *a))
    cached = _steps(_cfg(tmp_path / "c"), tmp_path / "c")
    assert len(lookups) == 6  # every step read the cache
    live = _steps(_cfg(tmp_path / "l", reference_cache=False), tmp_path / "l")
    assert len(lookups) == 6  # reference_cache = false: the live forward
    assert len(cached) == len(live) == 6
    for c, v in zip(cached, live):
        for k in ("loss", "beta", "relaxed_share", "tightened_share", "state/beta", "margin"):
            assert c[k] == pytest.approx(v[k], abs=1e-5), k
    assert cached[0]["relaxed_share"] == cached[0]["tightened_share"] == 0.0
    assert any(m["relaxed_share"] > 0 for m in cached) and any(m["tightened_share"] > 0 for m in cached)


def test_a_cache_over_the_limit_falls_back_to_the_live_forward_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(refhidden, "MAX_BYTES", 1)
    calls = []
    monkeypatch.setattr(refhidden.ReferenceHidden, "fill", lambda *a, **k: calls.append(1))
    _steps(_cfg(tmp_path, max_steps=1), tmp_path)
    assert not calls
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reference logits:")]
    assert len(err) == 1 and "GiB" in err[0]


def test_a_model_whose_logits_are_more_than_its_head_keeps_the_live_forward(models, capsys):
    _, reference = models

    def doubled(module, args, out):  # a logit scale, as some models apply after the head
        out.logits = out.logits * 2
        return out

    handle = reference.register_forward_hook(doubled)
    try:
        seqs = [PAIRS[0].chosen, PAIRS[0].rejected]
        assert refhidden.build(reference, EDPO, True, seqs, 0, 4, 1.0) == (None, None)
    finally:
        handle.remove()
    assert "reference logits: a live reference forward" in capsys.readouterr().err


def test_only_a_fixed_reference_needing_its_logits_is_eligible():
    losses = registry("losses")
    assert refhidden.eligible(EDPO, True) and not refhidden.eligible(EDPO, False)
    assert not refhidden.eligible(losses.get("dpo"), True)  # summed log-probs: the store's reference cache
    assert not refhidden.eligible(losses.get("tr-dpo"), True)  # a moving reference


def test_the_train_summary_names_the_hidden_state_cache(tmp_path):
    from tests.reliability.helpers import invoke

    done = invoke(["train", "--loss", "e-dpo", "--limit", "8", "--max-steps", "1", "--batch-size", "2",
                   "--max-length", "64", "--max-prompt-length", "32", "--store", "s.duckdb", "--no-progress"],
                  tmp_path)
    assert done.exit_code == 0, done.output
    assert "reference hidden states (its logits from its LM head each step), held in memory: " in done.output
    assert "reference log-probs: " not in done.output

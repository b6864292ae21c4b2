"""Checkpoints a disk can hold: weights in the training dtype, trainer state only in the newest checkpoint, keep_last,
and a resume from the trimmed newest checkpoint that is bit-for-bit the uninterrupted run."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evalharness.config import DataConfig, TrainConfig
from evalharness.store import Store
from trainers.checkpointing import STATE_FILE
from trainers.loop import StopTraining, run_id_of, train


def _cfg(tmp_path, **kw):
    base = dict(loss="dpo", model="tiny-llama", data=DataConfig(name="synthetic", limit=32, eval_fraction=0.0),
                max_steps=5, batch_size=2, lr=1e-3, max_length=96, max_prompt_length=48, seed=0, dtype="bfloat16",
                save_every=1, keep_last=1, out=str(tmp_path / "out"))
    base.update(kw)
    return TrainConfig(**base)


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(checkpoint.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _state(checkpoint: Path) -> dict:
    return torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=False)


def test_older_checkpoints_keep_weights_only_in_the_training_dtype_and_keep_last_bounds_them(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    [result] = train(_cfg(tmp_path, max_steps=6), store, progress=False)
    out = Path(result.out_dir)
    # steps 1-4 were intermediate; keep_last=1 leaves step 5; the final step 6 always stays
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-000005", "checkpoint-000006"]
    final, older = out / "checkpoint-000006", out / "checkpoint-000005"
    assert not (older / STATE_FILE).exists()
    for ckpt in (final, older):
        assert {t.dtype for t in _weights(ckpt).values()} == {torch.bfloat16}
    # nothing is left to train from the final checkpoint: its small state marks it complete, without optimizer state
    assert {"optimizer", "master_weights"}.isdisjoint(_state(final)) and _state(final)["step"] == 6
    # killed after the final save, before the store heard: the run finishes again without a step
    store.set_run_status(result.run_id, "running")
    steps = []
    again = train(_cfg(tmp_path, max_steps=6), store, progress=False, on_step=lambda s, m: steps.append(s))[0]
    assert again.resumed_from == 6 and steps == [] and store.get_run(result.run_id)["status"] == "finished"


def test_keep_last_is_no_part_of_the_run_and_a_negative_one_is_refused(tmp_path):
    from evalharness.config import ConfigError

    assert run_id_of(_cfg(tmp_path, keep_last=0)) == run_id_of(_cfg(tmp_path, keep_last=3))
    with pytest.raises(ConfigError):
        _cfg(tmp_path, keep_last=-1)


def test_resume_from_the_trimmed_newest_checkpoint_is_bit_for_bit_the_uninterrupted_run(tmp_path):
    full = train(_cfg(tmp_path / "a"), Store(str(tmp_path / "a.duckdb")), progress=False)[0]

    def stop_at_3(step, metrics):
        if step == 3:
            raise StopTraining

    cfg = _cfg(tmp_path / "b")
    store = Store(str(tmp_path / "b.duckdb"))
    with pytest.raises(StopTraining):
        train(cfg, store, progress=False, on_step=stop_at_3)
    out = Path(cfg.out)
    # interrupted after step 3: 1 is gone (keep_last), 2 holds weights only, 3 is the one resumable checkpoint
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-000002", "checkpoint-000003"]
    assert not (out / "checkpoint-000002" / STATE_FILE).exists()
    newest = _state(out / "checkpoint-000003")
    assert "optimizer" in newest and {t.dtype for t in newest["master_weights"].values()} == {torch.float32}
    resumed = train(cfg, store, progress=False)[0]
    assert resumed.resumed_from == 3
    a, b = Path(full.checkpoint), Path(resumed.checkpoint)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # steps 4 and 5 ran on the same float32 weights: every logged number is equal, not just close
    logged = {name: {(s, n): v for s, n, v in st.metrics(r.run_id) if s >= 4 and n != "tokens_per_s"}
              for name, st, r in (("a", Store(str(tmp_path / "a.duckdb")), full), ("b", store, resumed))}
    assert logged["a"] and logged["a"] == logged["b"]


def test_tied_weights_are_written_once_in_a_narrower_dtype(tmp_path):
    from transformers import AutoModelForCausalLM

    from evalharness.tiny import build_tiny
    from trainers.checkpointing import export_model

    model = AutoModelForCausalLM.from_pretrained(build_tiny("llama", tmp_path / "m", tie_word_embeddings=True))
    export_model(model, tmp_path / "f32")
    export_model(model, tmp_path / "bf16", torch.bfloat16)
    f32, bf16 = _weights(tmp_path / "f32"), _weights(tmp_path / "bf16")
    assert bf16.keys() == f32.keys() and "lm_head.weight" not in bf16  # the head is the embedding, stored once
    assert all(torch.equal(bf16[k], f32[k].bfloat16()) for k in f32)
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16")
    assert back.lm_head.weight.data_ptr() == back.model.embed_tokens.weight.data_ptr()

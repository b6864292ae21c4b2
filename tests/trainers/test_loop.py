"""The training loop end to end on tiny random models: every loss trains, resume is exact, the cache is honest."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evalharness.config import DataConfig, TrainConfig
from evalharness.plugins import registry
from evalharness.store import Store
from trainers.loop import StopTraining, train

K_LOSSES = {"exo-rw", "dpo-rw"}


def _cfg(tmp_path, loss, **kw):
    data = DataConfig(name="synthetic-scored" if loss in K_LOSSES else "synthetic", limit=32, eval_fraction=0.0)
    base = dict(loss=loss, model="tiny-llama", data=data, max_steps=2, batch_size=2, lr=1e-3, max_length=96,
                max_prompt_length=48, out=str(tmp_path / "out" / loss), seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _weights(checkpoint: str) -> dict[str, torch.Tensor]:
    files = sorted(Path(checkpoint).glob("*.safetensors"))
    out = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


@pytest.mark.parametrize("loss", registry("losses").names())
def test_every_registered_loss_trains_and_writes_a_loadable_checkpoint(tmp_path, loss):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    store = Store(str(tmp_path / "s.duckdb"))
    [result] = train(_cfg(tmp_path, loss), store, progress=False)
    assert result.status == "finished" and result.steps == 2
    assert all(torch.isfinite(torch.tensor(v)) for v in result.last_metrics.values())
    spec = registry("losses").get(loss)
    cls = AutoModelForSequenceClassification if "reward_head" in spec.needs else AutoModelForCausalLM
    model = cls.from_pretrained(result.checkpoint)
    assert sum(p.numel() for p in model.parameters()) > 0
    names = {n for _, n, _ in store.metrics(result.run_id)}
    assert {"loss", "grad_norm", "lr", "tokens_per_s"} <= names
    assert store.get_run(result.run_id)["status"] == "finished"


def test_resume_after_interruption_ends_with_the_same_weights(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    full = train(_cfg(tmp_path / "a", "dpo", max_steps=6, save_every=2), store, progress=False)[0]

    def stop_at_3(step, metrics):
        if step == 3:
            raise StopTraining

    cfg_b = _cfg(tmp_path / "b", "dpo", max_steps=6, save_every=2)
    store_b = Store(str(tmp_path / "b.duckdb"))
    with pytest.raises(StopTraining):
        train(cfg_b, store_b, progress=False, on_step=stop_at_3)
    assert store_b.runs()[0]["status"] == "interrupted"
    resumed = train(cfg_b, store_b, progress=False)[0]
    assert resumed.resumed_from == 2
    a, b = _weights(full.checkpoint), _weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-6
    start = _weights(str(Path(full.checkpoint).parent / "checkpoint-000002"))
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-4  # steps 3-6 really moved the weights
    steps = [s for s, n, _ in store_b.metrics(resumed.run_id) if n == "loss"]
    assert steps == [1, 2, 3, 4, 5, 6]  # step 3 was done twice and stored once
    again = train(cfg_b, store_b, progress=False)[0]
    assert again.status == "already-finished"


@pytest.mark.parametrize("loss", ["e-dpo", "tr-dpo"])
def test_resume_is_exact_for_losses_with_state_or_a_moving_reference(tmp_path, loss):
    params = {"tau": "1", "alpha": "0.5"} if loss == "tr-dpo" else {"epsilon": "0.5"}
    full = train(_cfg(tmp_path / "a", loss, max_steps=4, save_every=2, params=params), Store(str(tmp_path / "a.db")),
                 progress=False)[0]
    cfg = _cfg(tmp_path / "b", loss, max_steps=4, save_every=2, params=params)
    store = Store(str(tmp_path / "b.db"))

    def stop(step, metrics):
        if step == 3:
            raise StopTraining

    with pytest.raises(StopTraining):
        train(cfg, store, progress=False, on_step=stop)
    resumed = train(cfg, store, progress=False)[0]
    a, b = _weights(full.checkpoint), _weights(resumed.checkpoint)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    if loss == "e-dpo":
        beta = {s: v for s, n, v in store.metrics(resumed.run_id) if n == "state/beta"}
        assert beta[4] == pytest.approx(full.last_metrics["state/beta"], abs=1e-9)


def test_cached_reference_gives_the_same_training_as_a_live_reference(tmp_path, monkeypatch):
    store = Store(str(tmp_path / "s.duckdb"))
    cached = train(_cfg(tmp_path / "c", "dpo", max_steps=3), store, progress=False)[0]
    live = train(_cfg(tmp_path / "l", "dpo", max_steps=3, reference_cache=False), store, progress=False)[0]
    assert cached.reference_cache is not None and cached.reference_cache.computed > 0
    assert live.reference_cache is None
    lc = {s: v for s, n, v in store.metrics(cached.run_id) if n == "loss"}
    ll = {s: v for s, n, v in store.metrics(live.run_id) if n == "loss"}
    assert lc == pytest.approx(ll, abs=1e-5)
    # The same reference on the same tokens is never scored twice: a new run (another β) hits the cache fully.
    import evalharness.models as models

    loads = []
    real_load = models.load_causal_lm
    monkeypatch.setattr(models, "load_causal_lm", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    other = train(_cfg(tmp_path / "o", "dpo", max_steps=1, params={"beta": "0.5"}), store, progress=False)[0]
    assert other.reference_cache.computed == 0 and other.reference_cache.hits == other.reference_cache.sequences
    assert len(loads) == 1  # the policy; with the cache warm the reference model is never loaded


def test_state_update_sees_the_whole_global_batch(tmp_path):
    """e-DPO's β is updated from every pair of every micro-batch of the step (batch 2 x accum 3 = 6 pairs)."""
    from trainers.spec import LossSpec

    seen = []
    base = registry("losses").get("e-dpo")

    def spy_update(state, stats, params):
        seen.append({k: v.numel() for k, v in stats.items()})
        return base.update_state(state, stats, params)

    spy = dataclasses.replace(base, name="e-dpo-spy", update_state=spy_update)
    reg = registry("losses")
    reg.add("e-dpo-spy", spy, replace=True)
    try:
        train(_cfg(tmp_path, "e-dpo-spy", max_steps=2, grad_accum=3), Store(str(tmp_path / "s.db")), progress=False)
    finally:
        reg._entries.pop("e-dpo-spy")
    assert len(seen) == 2 and all(set(n.values()) == {6} for n in seen)
    assert isinstance(spy, LossSpec)


def test_stages_chain_runs_and_use_the_previous_stage_as_reference(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    first, second = train(_cfg(tmp_path, "sft->dpo", out=str(tmp_path / "chain")), store, progress=False)
    run2 = store.get_run(second.run_id)
    assert run2["init_from"] == first.run_id
    assert json.loads(run2["config"])["init_from"] == first.run_id
    assert Path(second.checkpoint).is_dir() and Path(first.checkpoint).is_dir()
    # Stage 2 starts from stage 1's weights: at step 0 the policy equals the reference, so its first DPO
    # loss is -log σ(0) = log 2.
    m = {(s, n): v for s, n, v in store.metrics(second.run_id)}
    assert m[(1, "loss")] == pytest.approx(0.6931472, abs=1e-5)


def test_weighted_sum_trains_and_logs_each_part(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    r = train(_cfg(tmp_path, "0.8*dpo + 1.0*sft"), store, progress=False)[0]
    names = {n for _, n, _ in store.metrics(r.run_id)}
    assert {"dpo/loss", "sft/loss", "loss"} <= names


def test_lora_checkpoint_loads_without_peft(tmp_path):
    from transformers import AutoModelForCausalLM

    r = train(_cfg(tmp_path, "dpo", lora_r=4), Store(str(tmp_path / "s.db")), progress=False)[0]
    assert (Path(r.checkpoint) / "adapter").is_dir()
    model = AutoModelForCausalLM.from_pretrained(r.checkpoint)
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_bfloat16_autocast_rmsprop_and_cosine_schedule_run(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    r = train(_cfg(tmp_path, "dpo", dtype="bfloat16", optimizer="rmsprop", scheduler="cosine", warmup_steps=2,
                   max_steps=4), store, progress=False)[0]
    lr = {s: v for s, n, v in store.metrics(r.run_id) if n == "lr"}
    # The rate each step applied, peak 1e-3. Warm-up over 2 steps: step 1 at 1/2, step 2 at 2/2. Then cosine over the
    # remaining 2 steps, factor 0.5·(1 + cos(π·progress)): step 3 at progress 0 -> 1.0, step 4 at progress 1/2 -> 0.5.
    assert lr == pytest.approx({1: 5e-4, 2: 1e-3, 3: 1e-3, 4: 5e-4}, abs=1e-12)
    assert torch.isfinite(torch.tensor(r.last_metrics["loss"]))


def test_prompt_augmented_sequences_carry_the_prefix(tmp_path):
    from evalharness.data.synthetic import pairs
    from evalharness.models import load_tokenizer, resolve_model
    from evalharness.scoring import tokenize

    tok = load_tokenizer(resolve_model("tiny-llama"))
    [ex] = tokenize(pairs(1), tok, "auto", 256, 128, augment_prefix="RATE 100: ").examples
    aug = tok.decode(list(ex.augmented_chosen.prompt))
    assert "RATE 100: Write a short review" in aug
    assert ex.augmented_chosen.response == ex.chosen.response  # same y+, only the context changes
    assert len(ex.augmented_chosen.prompt) > len(ex.chosen.prompt)


@pytest.mark.parametrize("flush_s, seen", [(0.0, [1, 2, 3]), (3600.0, [])])
def test_metrics_between_checkpoints_reach_the_store_by_the_clock(tmp_path, monkeypatch, flush_s, seen):
    import trainers.loop

    monkeypatch.setattr(trainers.loop, "METRICS_FLUSH_S", flush_s)
    store = Store(str(tmp_path / "s.duckdb"))
    stored_at: dict[int, list[int]] = {}

    def watch(step, metrics):  # what someone reading the store mid-run sees after each step
        [run] = store.runs()
        stored_at[step] = sorted({s for s, _, _ in store.metrics(run["run_id"])})

    [result] = train(_cfg(tmp_path, "dpo", max_steps=4), store, progress=False, on_step=watch)
    assert stored_at[3] == seen  # flush interval 0: every step at once; an hour: nothing before the checkpoint
    assert stored_at[4] == [1, 2, 3, 4]  # the final checkpoint writes whatever is pending, first

"""Everything a run needs before its first step: data, tokenised examples, models, the reference, the optimizer.

Bad input fails here, before the store or the output directory is touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evalharness.checkpoints import checkpoint_path
from evalharness.config import ConfigError, TrainConfig
from evalharness.store import Store
from trainers import checkpointing as ckpt
from trainers import refhidden, sharding
from trainers.batching import example_length
from trainers.refcache import CacheReport, ReferenceCache
from trainers.spec import LossSpec


@dataclass
class Prepared:
    accelerator: Any
    model: Any
    reference: Any
    tokenizer: Any
    optimizer: Any
    scheduler: Any
    examples: list
    lengths: list[int]
    pad_id: int
    cache: ReferenceCache | None
    cache_report: CacheReport | None
    truncated: int
    skipped: int
    hidden: refhidden.ReferenceHidden | None = None  # the reference's logits from cached hidden states (reference is then None)


def resolve_start(cfg: TrainConfig, store: Store) -> str:
    """The weights a run starts from: ``init_from`` (a run id/name or a checkpoint path) or the model name."""
    from evalharness.models import resolve_model

    if cfg.init_from:
        if Path(cfg.init_from).is_dir():
            return str(Path(cfg.init_from))
        run = store.get_run(cfg.init_from)
        if run is None:
            raise ConfigError(f"init_from {cfg.init_from!r} is neither a checkpoint directory nor a run in {store.path}")
        finals = [c for c in store.checkpoints(run["run_id"]) if c["is_final"]]
        if run["status"] != "finished" or not finals:
            raise ConfigError(f"init_from run {cfg.init_from!r} has not finished (status {run['status']})")
        return checkpoint_path(finals[-1], store, f"init_from run {cfg.init_from!r}")
    return str(resolve_model(cfg.model))


def load_examples(cfg: TrainConfig):
    from evalharness.data.loaders import DatasetSpec, load
    from evalharness.data.split import split_examples

    try:
        spec = DatasetSpec(name=cfg.data.name, path=cfg.data.path, split=cfg.data.split,
                           columns=dict(cfg.data.columns), limit=cfg.data.limit)
    except ValueError as e:  # a flag or [data] value the spec refuses (--limit -1): bad input, one line
        raise ConfigError(str(e)) from None
    loaded = load(spec)
    train, _ = split_examples(loaded.examples, cfg.data.eval_fraction, seed=0)
    return train, loaded


def prepare(cfg: TrainConfig, spec: LossSpec, params, store: Store, out: Path, progress: bool,
            restart: bool = False) -> Prepared:
    """``restart``: discard the run's files in ``out`` (``checkpointing.discard_run``) once the inputs are known good."""
    from accelerate import Accelerator

    from evalharness.models import load_causal_lm, load_reward_model, load_tokenizer, model_fingerprint, resolve_model
    from trainers.examples import cacheable, prepare_examples, reference_needs_model

    train_examples, _ = load_examples(cfg)
    start = resolve_start(cfg, store)
    if cfg.reference and reference_needs_model(spec):
        resolve_model(cfg.reference)
    tokenizer = load_tokenizer(start)
    tok = prepare_examples(train_examples, tokenizer, cfg, spec, params)
    if len(tok.examples) < cfg.batch_size:
        raise ConfigError(f"only {len(tok.examples)} usable training examples; batch_size is {cfg.batch_size}")
    torch.manual_seed(cfg.seed)
    # bf16 is applied with torch.autocast in the loop rather than Accelerator(mixed_precision=…): accelerate keeps one
    # process-wide state, and a second run in the same process (recipes, library use) may ask for another precision.
    acc = Accelerator(cpu=not torch.cuda.is_available())
    sharding.enable_fsdp_on_cpu(acc)
    if restart:  # every input is bound and loaded: a bad one has stopped the run before this deletes anything
        if acc.is_main_process:
            ckpt.discard_run(out)
        acc.wait_for_everyone()
    resume = ckpt.latest_checkpoint(out)
    reward = "reward_head" in spec.needs
    load = load_reward_model if reward else load_causal_lm
    model = load(start)
    reference = None
    if reference_needs_model(spec):
        ref_path = cfg.reference or start
        if resume is not None and (resume / "reference").is_dir():
            ref_path = str(resume / "reference")  # a moving reference resumes where it was
        if not cacheable(spec, cfg):
            reference = load_causal_lm(ref_path)
            reference.requires_grad_(False).eval()
    if cfg.lora_r:
        model = _lora(model, cfg, resume)
    elif resume is not None:
        model = load(str(resume))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if reward and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = pad_id
    cache, report, hidden = None, None, None
    if reference is not None:
        # the fill runs the reference as the step would (bf16 autocast included), on the device it would run on
        hidden, report = refhidden.build(
            reference.to(acc.device), spec, cfg.reference_cache, [s for ex in tok.examples for s in _seqs(ex)],
            pad_id, batch_size=max(2 * cfg.batch_size, 8), temperature=cfg.logit_temperature,
            autocast=lambda: torch.autocast(acc.device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16"))
        if hidden is not None:
            reference = None  # the head lives on in the cache; the rest of the reference is not needed again
    if cacheable(spec, cfg):
        # The key comes from the weight files, so a warm cache never loads the reference model at all.
        cache = ReferenceCache(store, model_fingerprint(ref_path), cfg.logit_temperature)
        seqs = [s for ex in tok.examples for s in _seqs(ex)]
        if acc.is_main_process:
            report = cache.fill(lambda: load_causal_lm(ref_path).eval().to(acc.device), seqs, pad_id,
                                batch_size=max(2 * cfg.batch_size, 8), progress=progress)
        acc.wait_for_everyone()
        if not acc.is_main_process:
            cache.values.update({k: v[0] for k, v in store.get_reference_logps([cache.key(s) for s in seqs]).items()})
    trainable = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.RMSprop(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(cfg))
    model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    if reference is not None:
        reference = reference.to(acc.device)
    return Prepared(acc, model, reference, tokenizer, optimizer, scheduler, tok.examples,
                    [example_length(e) for e in tok.examples], pad_id, cache, report, tok.truncated, len(tok.skipped),
                    hidden)


def _seqs(ex):
    if hasattr(ex, "seqs"):
        return ex.seqs
    return [s for s in (ex.chosen, ex.rejected, ex.augmented_chosen, ex.augmented_rejected) if s is not None]


def _lora(model, cfg: TrainConfig, resume: Path | None):
    from peft import LoraConfig, PeftModel, get_peft_model

    if resume is not None and (resume / "adapter").is_dir():
        return PeftModel.from_pretrained(model, str(resume / "adapter"), is_trainable=True)
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def schedule(cfg: TrainConfig):
    """Linear warm-up to lr, then constant, cosine or linear decay to 0 at max_steps."""
    warm, total = cfg.warmup_steps, cfg.max_steps

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.scheduler == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total - warm))
        if cfg.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor

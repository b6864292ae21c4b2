"""What the setup and the loop both ask of a loss: its tokenised examples and how its reference log-probs are had."""

from __future__ import annotations

from typing import Any

from evalharness.config import ConfigError, TrainConfig
from evalharness.scoring import KExample, tokenize
from trainers.spec import LossSpec


def prepare_examples(examples, tokenizer, cfg: TrainConfig, spec: LossSpec, params) -> Any:
    prefix = params.augment_prefix() if "prompt_augmented" in spec.needs else None
    tok = tokenize(examples, tokenizer, cfg.prompt_style, cfg.max_length, cfg.max_prompt_length, prefix)
    wants_k = "k_samples" in spec.needs
    for ex in tok.examples:
        if wants_k != isinstance(ex, KExample):
            kind, like = ("K scored completions per prompt", "synthetic-scored") if wants_k else \
                ("preference pairs", "synthetic")
            raise ConfigError(f"loss {spec.name!r} trains on {kind}; dataset {cfg.data.name!r} holds the other kind "
                              f"(one of {kind}: --data {like})")
    return tok


def reference_needs_model(spec: LossSpec) -> bool:
    return bool({"reference", "reference_logits", "moving_reference"} & spec.needs)


def cacheable(spec: LossSpec, cfg: TrainConfig) -> bool:
    return cfg.reference_cache and "reference" in spec.needs and not ({"reference_logits", "moving_reference"} & spec.needs)

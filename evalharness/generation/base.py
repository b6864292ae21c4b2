"""The generator contract: token-id prompts in, sampled token ids with their log-probs out.

A backend never renders chat templates and never touches the store: `evalharness.generate` does that. Every
request carries its own seed, so a sample is the same whichever batch it was drawn in (resume and re-runs reproduce).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

# Below this the sample is the argmax anyway, and logits divided by it overflow float32 (log-probs become NaN).
MIN_TEMPERATURE = 1e-4


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters; part of every generation's key. Defaults follow the seed papers' evaluation."""

    temperature: float = 0.8  # > 0; log-probs are taken at this temperature
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0  # base seed; request i of a prompt uses a seed derived from (seed, prompt, sample index)
    stop: tuple[str, ...] = ()  # extra stop strings (the plain HH format stops at "\n\nHuman:")

    def __post_init__(self):
        from evalharness.config import MAX_SEED, ConfigError  # a ValueError: callers catching that still do

        def real(x) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        def whole(x) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        if not (real(self.temperature) and self.temperature >= MIN_TEMPERATURE):
            raise ConfigError(f"temperature must be > 0 and finite (at least {MIN_TEMPERATURE:g}), got "
                              f"{self.temperature!r}")
        if not (real(self.top_p) and 0 < self.top_p <= 1):
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not (whole(self.max_new_tokens) and self.max_new_tokens >= 1):
            raise ConfigError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not (whole(self.seed) and 0 <= self.seed <= MAX_SEED):
            raise ConfigError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed!r}")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"stop must be a tuple of non-empty strings, got {self.stop!r}")


@dataclass(frozen=True)
class Request:
    prompt_ids: tuple[int, ...]
    seed: int  # the per-sample seed: sampling for this request depends on it alone


@dataclass
class Sample:
    token_ids: list[int]  # generated tokens, the stop/eos token included when one ended the sample
    text: str  # decoded generated text, without the stop string or special tokens
    token_logps: list[float]  # log π(y_t | x, y_<t) at the sampling temperature (before top-p), one per token id
    finish_reason: str  # "stop" (eos or a stop string) | "length"
    meta: dict = field(default_factory=dict)

    @property
    def logp(self) -> float:
        return float(sum(self.token_logps))


class Generator(Protocol):
    """``name``; ``generate(requests, sampling) -> samples`` in request order; ``close()`` frees the model."""

    name: str

    def generate(self, requests: list[Request], sampling: Sampling, progress=None) -> list[Sample]: ...

    def close(self) -> None: ...

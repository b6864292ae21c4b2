"""The generator contract: token-id prompts in, sampled token ids with their log-probs out.

A backend never renders chat templates and never touches the store: `evalharness.generate` does that. Every
request carries its own seed, so a sample is the same whichever batch it was drawn in (resume and re-runs reproduce).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Protocol

# Between 0 (greedy) and this the sample is the argmax anyway, and logits divided by it overflow float32.
MIN_TEMPERATURE = 1e-4
GREEDY = 0.0
RULES_FILE = Path(__file__).resolve().parent / "temperatures.toml"


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters; part of every generation's key. Defaults follow the seed papers' evaluation.

    ``temperature`` 0 is greedy decoding (the argmax at every step; ``top_p`` and the seed then change nothing). The
    log-probs of a sample are taken at its temperature, and for a greedy sample, where "the distribution at
    temperature 0" has no finite log-probs, at temperature 1: the model's own log-likelihood (``logprob_temperature``).
    A rule name (``"fastchat"``, see ``temperatures.toml``) samples each prompt at its category's temperature: the
    generation's key and stored sampling record the rule, and each request runs at ``for_category(category)``.
    """

    temperature: float | str = 0.8  # 0 (greedy), at least MIN_TEMPERATURE, or a rule of temperatures.toml
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

        if isinstance(self.temperature, str):
            if self.temperature not in temperature_rules():
                raise ConfigError(f"temperature must be a number or a rule ({', '.join(temperature_rules())}), got "
                                  f"{self.temperature!r}")
        elif not (real(self.temperature) and (self.temperature == GREEDY or self.temperature >= MIN_TEMPERATURE)):
            raise ConfigError(f"temperature must be > 0 and finite (at least {MIN_TEMPERATURE:g}), or 0 for greedy "
                              f"decoding, got {self.temperature!r}")
        if not (real(self.top_p) and 0 < self.top_p <= 1):
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not (whole(self.max_new_tokens) and self.max_new_tokens >= 1):
            raise ConfigError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not (whole(self.seed) and 0 <= self.seed <= MAX_SEED):
            raise ConfigError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed!r}")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"stop must be a tuple of non-empty strings, got {self.stop!r}")

    @property
    def rule(self) -> str | None:
        return self.temperature if isinstance(self.temperature, str) else None

    @property
    def greedy(self) -> bool:
        return self.temperature == GREEDY

    @property
    def logprob_temperature(self) -> float:
        """The temperature a sample's log-probs are at: its own, or 1 for a greedy sample."""
        if self.rule is not None:
            raise ValueError(f"sampling by rule {self.rule!r} has no single temperature: use for_category() first")
        return 1.0 if self.greedy else float(self.temperature)

    def for_category(self, category: str | None) -> Sampling:
        """The sampling one prompt of this category runs at: itself, or under a rule its category's temperature."""
        if self.rule is None:
            return self
        table = temperature_rules()[self.rule]
        return replace(self, temperature=float(table["categories"].get(category, table["default"])))


def parse_temperature(text: str) -> float | str:
    """A temperature as written on a command line: a number, or the name of a rule (checked by ``Sampling``).

    >>> parse_temperature("0"), parse_temperature(" 0.7 "), parse_temperature("fastchat")
    (0.0, 0.7, 'fastchat')
    """
    try:
        return float(text)
    except ValueError:
        return text.strip()


@cache
def temperature_rules() -> dict[str, dict]:
    """The rules of ``temperatures.toml``: name -> {"default": T, "categories": {category: T}}."""
    import tomllib

    with open(RULES_FILE, "rb") as f:
        return {name: {"default": rule["default"], "categories": dict(rule.get("categories", {}))}
                for name, rule in tomllib.load(f).items()}


@dataclass(frozen=True)
class Request:
    prompt_ids: tuple[int, ...]
    seed: int  # the per-sample seed: sampling for this request depends on it alone


@dataclass
class Sample:
    token_ids: list[int]  # generated tokens, the stop/eos token included when one ended the sample
    text: str  # decoded generated text, without the stop string or special tokens
    token_logps: list[float]  # log π(y_t | x, y_<t) at Sampling.logprob_temperature (before top-p), one per token
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

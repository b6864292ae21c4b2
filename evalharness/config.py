"""Typed configuration. Every default carries its reason; `validate` binds every parameter before anything heavy runs.

A training config comes from CLI flags or a TOML file:

    loss = "dpo"                 # or "sft->dpo" (stages) or "0.8*dpo + 1.0*sft" (a weighted sum)
    model = "smollm2-135m"
    [params]                     # loss parameters; for several losses, prefix with the loss: "dpo.beta"
    beta = 0.1
    [data]
    name = "hh-rlhf"
    path = "harmless-base-test.jsonl.gz"
    [train]
    max_steps = 20
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib


class ConfigError(ValueError):
    """A config file or flag that can't be bound."""


# A run name is a directory under runs/ and is typed back as RUN[:STEP], @run and name@step: one path component,
# nothing a shell or our own syntax reads specially (":" steps, "@" references, "=" and "," judge specs), no leading
# "." (hidden, "." and "..") or "-" (read as a flag). 100 characters leave room for recipe stage suffixes.
RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,99}")


def check_run_name(name: str) -> None:
    if not RUN_NAME.fullmatch(name):
        raise ConfigError(f"run name {name!r}: use 1-100 letters, digits and . _ + - (not starting with . or -)")


@dataclass
class DataConfig:
    name: str = "synthetic"  # the embedded task: runs offline with no third-party data
    path: str | None = None
    split: str | None = None  # hub split; None takes the preset's default
    columns: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    eval_fraction: float = 0.05  # held out by content hash for `evalharness eval`; 5% keeps most data for training

    def __post_init__(self):
        _check(self.limit is None or isinstance(self.limit, int) and not isinstance(self.limit, bool)
               and self.limit >= 1, f"data.limit must be a positive integer, got {self.limit!r}")
        for key in ("name", "path", "split"):
            check_text(f"data.{key}", getattr(self, key))
        for role, column in (self.columns.items() if isinstance(self.columns, dict) else ()):
            check_text("data.columns", role)
            check_text("data.columns", column)


@dataclass
class TrainConfig:
    loss: str = "dpo"
    model: str = "tiny-llama"  # runs anywhere; use smollm2-135m for a real model
    params: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    reference: str | None = None  # defaults to the model the policy starts from (seed papers' choice)
    init_from: str | None = None  # a run id/name or checkpoint path to start from (stage chaining)
    name: str | None = None
    max_steps: int = 100
    batch_size: int = 4  # pairs per micro-batch; 4 pairs x 128 tokens is what a CPU step fits comfortably
    grad_accum: int = 1
    lr: float = 5e-7  # DPO-family default (Rafailov et al. use 5e-7 at 1B+ scale); raise it for tiny models
    optimizer: str = "adamw"  # adamw | rmsprop (the DPO reference code uses RMSprop)
    weight_decay: float = 0.0
    scheduler: str = "constant"  # constant | cosine | linear, after warm-up
    warmup_steps: int = 0
    max_grad_norm: float = 10.0  # the DPO reference implementation clips at 10
    dtype: str = "float32"  # float32 | bfloat16 (autocast; master weights stay float32)
    seed: int = 0
    max_length: int = 512
    max_prompt_length: int = 256
    logit_temperature: float = 1.0  # EXO divides logits by τ=0.8 for policy and reference alike
    prompt_style: str = "auto"  # auto | chat | plain: how prompts are rendered (see evalharness.models)
    reference_cache: bool = True  # precompute reference log-probs once into the store where the loss allows it
    lora_r: int = 0  # 0 trains all weights; >0 trains LoRA adapters of this rank (peft)
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    save_every: int = 0  # 0: only the final checkpoint
    log_every: int = 1
    out: str | None = None  # default: runs/<name>-<run id prefix>

    def __post_init__(self):
        if isinstance(self.data, dict):
            self.data = bind(DataConfig, self.data, "[data]")
        _check(self.max_steps > 0, "max_steps must be > 0")
        _check(self.batch_size > 0, "batch_size must be > 0")
        _check(self.grad_accum > 0, "grad_accum must be > 0")
        _check(self.lr > 0, "lr must be > 0")
        _check(self.optimizer in {"adamw", "rmsprop"}, f"optimizer must be adamw or rmsprop, got {self.optimizer!r}")
        _check(self.scheduler in {"constant", "cosine", "linear"}, f"unknown scheduler {self.scheduler!r}")
        _check(self.dtype in {"float32", "bfloat16"}, f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        _check(self.max_prompt_length >= 1, f"max_prompt_length must be >= 1, got {self.max_prompt_length}")
        _check(self.max_prompt_length < self.max_length, "max_prompt_length must be < max_length")
        _check(0 <= self.seed <= MAX_SEED, f"seed must be in [0, 2**63 - 1], got {self.seed}")
        _check(self.weight_decay >= 0 and self.max_grad_norm > 0, "weight_decay must be >= 0 and max_grad_norm > 0")
        _check(self.lora_alpha >= 1 and 0 <= self.lora_dropout < 1, "lora_alpha must be >= 1, lora_dropout in [0, 1)")
        _check(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        _check(self.logit_temperature > 0, "logit_temperature must be > 0")
        _check(self.prompt_style in {"auto", "chat", "plain"}, f"unknown prompt_style {self.prompt_style!r}")
        _check(self.lora_r >= 0 and self.save_every >= 0 and self.warmup_steps >= 0, "counts must be >= 0")
        _check(0 <= self.data.eval_fraction < 1, "data.eval_fraction must be in [0, 1)")
        if self.name is not None:
            check_run_name(self.name)
        for key in ("loss", "model", "reference", "init_from", "out"):
            check_text(key, getattr(self, key))

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run: everything but where it is written and how it is logged."""
        d = dataclasses.asdict(self)
        for k in ("out", "log_every", "name"):
            d.pop(k)
        return d


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


MAX_SEED = 2**63 - 1  # torch's generators take a signed 64-bit seed; numpy's any non-negative one


def check_text(name: str, value: Any) -> None:
    """A string setting holds no NUL and no lone surrogate (what undecodable bytes in an argument become): either
    would fail only later, in a file name or the store, after work was done."""
    if not isinstance(value, str):
        return
    if "\x00" in value:
        raise ConfigError(f"{name} must not contain a NUL character, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConfigError(f"{name} is not valid UTF-8 text (undecodable byte at character {e.start + 1})") from None


def bind(cls: type, values: dict[str, Any], where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            tip = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{where}: unknown key {key!r}{tip}")
    _check_types(cls, values, where)
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _check_types(cls: type, values: dict[str, Any], where: str) -> None:
    """A value of the wrong kind (``loss = 0``, ``limit = "x"``, ``lr = nan``) is a one-line error, not a TypeError."""
    import math
    import typing

    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        allowed = _allowed(hints.get(key))
        if allowed is None or value is None and type(None) in allowed:
            continue
        if isinstance(value, dict) and dict in allowed or isinstance(value, list) and list in allowed:
            continue
        if isinstance(value, (dict, list)) and cls.__name__ == "TrainConfig" and key == "data":
            continue
        ok = any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in allowed
                 if t not in (dict, list, type(None)))
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            names = " or ".join(sorted({t.__name__ for t in allowed if t is not type(None)}))
            raise ConfigError(f"{where}: {key} must be {names}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")


def _allowed(hint) -> tuple | None:
    """The runtime classes a simple annotation admits (None: not checked here)."""
    import types
    import typing

    if hint is None or hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_allowed(a) for a in typing.get_args(hint)]
        if any(p is None for p in parts):
            return None
        return tuple(t for p in parts for t in p)
    if origin is not None:
        return (origin,)
    if hint is type(None):
        return (type(None),)
    return (hint,) if isinstance(hint, type) else None


def load_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8") from None


def train_config_from_dict(raw: dict[str, Any], where: str = "config") -> TrainConfig:
    """Flatten the TOML layout (top level + [train] + [params] + [data]) into a TrainConfig."""
    raw = dict(raw)
    flat: dict[str, Any] = {}
    train = raw.pop("train", {})
    if not isinstance(train, dict):
        raise ConfigError(f"{where}: [train] must be a table")
    flat.update(train)
    for key, value in raw.items():
        if key in flat:
            raise ConfigError(f"{where}: {key!r} is set twice (top level and [train])")
        flat[key] = value
    return bind(TrainConfig, flat, where)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["beta=0.1", "dpo.lam=0.5"]`` -> {"beta": "0.1", "dpo.lam": "0.5"}; values are coerced later by type."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out

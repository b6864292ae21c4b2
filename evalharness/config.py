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
    keep_last: int = 0  # intermediate checkpoints kept on disk, the newest ones (0: all); the final one always stays
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
        _check(self.lora_r >= 0 and self.save_every >= 0 and self.warmup_steps >= 0 and self.keep_last >= 0,
               "counts must be >= 0")
        _check(0 <= self.data.eval_fraction < 1, "data.eval_fraction must be in [0, 1)")
        if self.name is not None:
            check_run_name(self.name)
        for key in ("loss", "model", "reference", "init_from", "out"):
            check_text(key, getattr(self, key))

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run: everything but where it is written and how it is logged."""
        d = dataclasses.asdict(self)
        for k in ("out", "log_every", "name", "keep_last"):  # keep_last changes what stays on disk, not what trains
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
    """The one way a dict becomes a typed config: unknown keys get a "did you mean", every value is converted to its
    field's declared type by ``coerce`` (``Text`` from the command line is read; file values are only checked)."""
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            tip = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{where}: unknown key {key!r}{tip}")
    values = _typed(cls, values, where)
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _typed(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """A value of the wrong kind (``loss = 0``, ``limit = "x"``, ``lr = nan``) is a one-line error, not a TypeError."""
    import math

    hints = field_types(cls)
    out = dict(values)
    for key, value in values.items():
        if cls is TrainConfig and key == "data" and isinstance(value, dict):
            continue  # bound as a DataConfig by TrainConfig itself
        try:
            out[key] = coerce(value, hints.get(key))
        except ValueError as e:
            raise ConfigError(f"{where}: {key} must be {e}, got {value!r}") from None
        if isinstance(out[key], float) and not math.isfinite(out[key]):
            raise ConfigError(f"{where}: {key} must be a finite number, got {out[key]!r}")
    return out


# ---------------------------------------------------------------------------------------------- the value grammar
# Every value typed as text (``--set key=value``, a judge spec's ``k=v``, a loss parameter given as a string) is read
# by one grammar: a TOML literal (``0.1``, ``"x"``, ``true``, ``[1, 2]``, ``{beta = 0.1}``), else the bare text. The
# field it lands in then decides: ``.1`` and ``1e-1`` are 0.1 for a float, ``yes`` is true for a bool, and a str field
# keeps the text as typed.


class Text(str):
    """Text from the command line that TOML does not read as a value (``dpo``, ``.1``, ``gpt-4o``): its field's
    declared type decides what it becomes. A plain ``str`` is a string value (from a file or a quoted TOML string)."""


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def parse_value(text: str) -> Any:
    """A value in the ``--set`` grammar: a TOML literal, else the text itself (as ``Text``).

    >>> parse_value("2"), parse_value("1e-1"), parse_value('"x"'), parse_value("[1, 2]"), parse_value("gpt-4o")
    (2, 0.1, 'x', [1, 2], 'gpt-4o')
    >>> type(parse_value(".1")).__name__, type(parse_value("2024-01-01")).__name__
    ('Text', 'Text')
    """
    import datetime

    text = text.strip()
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return Text(text)
    value = parsed.get("v")
    # a newline in the text could define more keys; a date is no setting's type: both are text
    if len(parsed) != 1 or isinstance(value, (datetime.date, datetime.time)):
        return Text(text)
    return value


def coerce(value: Any, hint: Any, text: bool | None = None) -> Any:
    """``value`` as the annotation ``hint`` declares; raises ValueError naming the expected type.

    Text (``text=True``, or a ``Text`` value) is read by ``parse_value`` and then by the type: a number for a float
    field, ``1``/``yes``/``on`` for a bool, ``none`` for an optional field (TOML has no null), the text as typed for
    a str field. Any other value is only checked; an int is widened for a float field, so ``beta = 1`` in a file and
    ``beta=1.0`` on the command line are the same setting.

    >>> coerce(Text(".1"), float), coerce("1e-1", float, text=True), coerce(1, float), coerce(Text("4"), str)
    (0.1, 0.1, 1.0, '4')
    """
    allowed = _allowed(hint)
    if text is None:
        text = isinstance(value, Text)
    if not (text and isinstance(value, str)):
        if allowed is None or _fits(value, allowed):
            return _widen(value, allowed)
        raise ValueError(_describe(allowed))
    raw = value.strip()
    parsed = parse_value(raw)
    if allowed is None:
        return str(parsed) if isinstance(parsed, Text) else parsed
    if type(None) in allowed and raw.lower() in ("none", "null"):
        return None
    if not isinstance(parsed, Text) and _fits(parsed, allowed) and not (isinstance(parsed, str) and str not in allowed):
        return _widen(parsed, allowed)
    if str in allowed:
        return raw if isinstance(parsed, Text) or not isinstance(parsed, str) else parsed
    word = parsed if isinstance(parsed, str) else raw
    for kind in (int, float):
        if kind in allowed:
            try:
                return kind(word)
            except ValueError:
                pass
    if bool in allowed and word.lower() in _TRUE | _FALSE:
        return word.lower() in _TRUE
    raise ValueError(_describe(allowed))


def field_types(cls: type) -> dict[str, Any]:
    """The declared type of each field of a dataclass; a plugin whose annotations do not resolve has its values read
    by the grammar alone."""
    import typing

    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        return {}


def annotation_type(annotation: Any) -> Any:
    """An annotation written as text (``"float | None"``, under ``from __future__ import annotations``) as a type;
    one that names something else is left unchecked (None)."""
    import builtins
    import typing

    if not isinstance(annotation, str):
        return annotation
    names = {**{n: t for n, t in vars(builtins).items() if isinstance(t, type)}, **{n: getattr(typing, n) for n in ("Any", "Literal", "Optional", "Union")}}
    try:
        return eval(annotation, {"__builtins__": {}}, names)  # noqa: S307 - the annotation text of imported code
    except Exception:
        return None


def _fits(value: Any, allowed: tuple) -> bool:
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and float in allowed:
        return True
    return any(isinstance(value, t) for t in allowed if t is not type(None))


def _widen(value: Any, allowed: tuple | None) -> Any:
    if allowed and isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
        return float(value)
    if isinstance(value, Text):
        return str(value)
    return value


def _describe(allowed: tuple) -> str:
    return " or ".join(sorted({"None" if t is type(None) else t.__name__ for t in allowed}))


def _allowed(hint) -> tuple | None:
    """The runtime classes a simple annotation admits (None: not checked here). A Literal admits its values' types."""
    import types
    import typing

    if hint is None or hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return tuple({type(a) for a in typing.get_args(hint)})
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
    """``--set`` items → {dotted key: value}, each value read by ``parse_value`` (the last of a key given twice wins).

    >>> parse_overrides(["beta=.1", "max_steps=3", 'judge.judges=["oracle"]'])
    {'beta': '.1', 'max_steps': 3, 'judge.judges': ['oracle']}
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def train_path(key: str) -> tuple[str, ...]:
    """Where a ``--set`` key lands in a training config's TOML layout: a TrainConfig field, a [data] field, else a
    loss parameter (so ``beta=0.1`` and ``dpo.beta=0.1`` read as they always have; ``params.beta`` says it outright).

    >>> train_path("max_steps"), train_path("data.limit"), train_path("dpo.beta"), train_path("params.beta")
    (('max_steps',), ('data', 'limit'), ('params', 'dpo.beta'), ('params', 'beta'))
    """
    head, _, rest = key.partition(".")
    if head in ("data", "params"):
        if not rest or any(not part for part in rest.split(".")):
            raise ConfigError(f"--set {key}: [{head}] is a table; set {head}.KEY=VALUE")
        return (head, *rest.split(".")) if head == "data" else (head, rest)
    field_name = key.replace("-", "_")
    if field_name in _TRAIN_FIELDS:
        return (field_name,)
    return ("params", key)


_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "params"}


def set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any, key: str) -> None:
    """``tree[path[0]][path[1]]… = value``, making tables on the way (a value in the way is an error)."""
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"--set {key}: {part!r} is set to a value and used as a table")
    tree[path[-1]] = value

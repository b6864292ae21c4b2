"""What every part of `evalharness eval` shares: the bound config, metric rows and their keys, per-checkpoint reports.

Held-out pair metrics are computed in ``evaluation.pairs``, KL from the ``generations`` table in ``evaluation.samples``,
the statistics themselves in ``metrics``; ``evaluation.run`` runs the two parts for each checkpoint.

Every stored row is keyed by ``metric_id = hash(checkpoint, dataset, metric, settings)``, where ``dataset`` is the
dataset name plus a hash of what was read (the held-out pair ids, or the generation ids) and ``settings`` what changes
the number (truncation, reference, β, prompt prefix, sampling, bootstrap resamples and seed). A re-run computes only
missing rows and loads no model when none are missing. The stored ``settings`` JSON also holds the batch size (which
does not change the numbers, so it is not part of the key).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from evalharness.config import ConfigError, DataConfig
from evalharness.generate import Target
from evalharness.hashing import content_hash
from evalharness.metrics import METRICS, Estimate
from evalharness.store import Store, code_version, now
from evalharness.store_rows import MetricRecord


@dataclass
class EvalConfig:
    checkpoints: list[str]  # RUN[:STEP] from the store, or a model name/path
    # The held-out pairs: None measures each run on its own data and split (``evaluation.pairs.held_out_data``).
    data: DataConfig | None = None
    batch_size: int = 8  # pairs per forward (2x sequences): a CPU-sized default, raise it on a GPU
    max_length: int | None = None  # None: the run's own (what it trained with), else TrainConfig's 512
    max_prompt_length: int | None = None  # None: the run's own, else 256
    prompt_style: str | None = None  # None: the run's own, else "auto"
    bootstrap: int = 1000  # resamples for the percentile CI; 0 leaves the CI empty
    seed: int = 0
    metrics: tuple[str, ...] | None = None  # None: every metric that applies
    reference: str | None = None  # None: the run's reference (its starting weights); a plain model needs one
    prompts: str | None = None  # KL: only generations of this prompt set (None: every set found)
    judge: str | None = None  # NAME[:k=v]: correlate h with its scores of the held-out texts (None: the pairs' own)
    score_missing: bool = True  # generations without reference log-probs: score them now (True) or skip and count
    eval_fraction: float | None = None  # None: the run's own share (of its own data), else the data's

    def __post_init__(self):
        if not self.checkpoints:
            raise ConfigError("give at least one checkpoint (RUN[:STEP] or a model name/path)")
        if isinstance(self.data, dict):
            from evalharness.config import bind

            self.data = bind(DataConfig, self.data, "[data]")
        for name in ("batch_size", "max_length", "max_prompt_length"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.max_length and self.max_prompt_length and self.max_prompt_length >= self.max_length:
            raise ConfigError("max_prompt_length must be < max_length")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) or self.bootstrap < 0:
            raise ConfigError(f"bootstrap must be a count >= 0, got {self.bootstrap!r}")
        for name, value in (("data.eval_fraction", self.data.eval_fraction if self.data else None),
                            ("eval_fraction", self.eval_fraction)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value <= 1):
                raise ConfigError(f"{name} must be in (0, 1] (1 takes every pair), got {value!r}")
        if self.data and self.data.limit is not None and (
                isinstance(self.data.limit, bool) or not isinstance(self.data.limit, int) or self.data.limit < 1):
            raise ConfigError(f"limit must be a positive integer, got {self.data.limit!r}")
        if self.prompt_style is not None and self.prompt_style not in ("auto", "chat", "plain"):
            raise ConfigError(f"prompt_style must be auto, chat or plain, got {self.prompt_style!r}")
        if self.metrics is not None:
            self.metrics = tuple(parse_metrics(self.metrics))


def parse_metrics(names) -> list[str]:
    """``"ppl,kl"``-style names (a string or a list) checked against METRICS, with a "did you mean" hint."""
    from evalharness.registry import unknown_message

    items = names.split(",") if isinstance(names, str) else list(names)
    out = [m.strip() for m in items if m.strip()]
    for m in out:
        if m not in METRICS:
            raise ConfigError(unknown_message("metric", m, METRICS))
    if not out:
        raise ConfigError(f"no metric named; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(out))


@dataclass
class MetricRow:
    """One row of the ``metrics`` table, as computed now or read back (``cached``)."""

    metric_id: str
    checkpoint: str
    label: str
    dataset: str
    metric: str
    value: float
    n: int
    se: float | None
    ci_low: float | None
    ci_high: float | None
    settings: dict[str, Any]
    cached: bool = False
    note: str = ""

    def show(self, tag: str = "") -> str:
        ci = f" [{_g(self.ci_low)}, {_g(self.ci_high)}]" if self.ci_low is not None else ""
        note = f" ({self.note})" if self.note else ""
        return f"{self.metric}{tag} {_g(self.value)}{ci} n={self.n}{note}"


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


@dataclass
class CheckpointReport:
    label: str
    checkpoint: str
    rows: list[MetricRow] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line: every metric with its CI and n; several rows of one metric are tagged with their data."""
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.metric] = counts.get(r.metric, 0) + 1
        parts = [r.show(f"[{_data_tag(r)}]" if counts[r.metric] > 1 else "") for r in self.rows]
        cached = sum(r.cached for r in self.rows)
        tail = " (all from the store)" if self.rows and cached == len(self.rows) else (
            f" ({cached} from the store)" if cached else "")
        return f"{self.label}: " + (" | ".join(parts) if parts else "no metrics") + tail

    def detail_lines(self) -> list[str]:
        lines = [f"  note: {n}" for n in self.notes]
        by_reason: dict[str, list[str]] = {}
        for m, why in self.skipped.items():
            by_reason.setdefault(why, []).append(m)
        if by_reason:
            lines.append("  not computed: " + "; ".join(f"{', '.join(ms)} ({why})" for why, ms in by_reason.items()))
        return lines


def _data_tag(row: MetricRow) -> str:
    temp = row.settings.get("temperature")
    name = row.dataset.split("@")[0]
    return f"{name} T={temp:g}" if temp is not None and name else row.dataset


def metric_id(checkpoint: str, dataset: str, metric: str, settings: dict[str, Any]) -> str:
    return content_hash(["metric", checkpoint, dataset, metric, settings])


# ---------------------------------------------------------------------------------------------------- store I/O


def stored_rows(store: Store, ids: list[str]) -> dict[str, MetricRow]:
    out = {}
    for r in store.get_metrics(ids).values():
        settings = json.loads(r.settings) if isinstance(r.settings, str) else (r.settings or {})
        out[r.metric_id] = MetricRow(*r[:10], settings=settings, cached=True, note=settings.pop("note", ""))
    return out


def write_rows(store: Store, rows: list[MetricRow], extra: dict[str, Any]) -> None:
    """Insert new rows in one transaction (nothing partial); ``extra`` settings are stored but not hashed."""
    if not rows:
        return
    version, created = code_version(), now()
    store.insert_metrics([
        MetricRecord(r.metric_id, r.checkpoint, r.label, r.dataset, r.metric, r.value, r.n, r.se, r.ci_low, r.ci_high,
                     json.dumps({**r.settings, **extra, **({"note": r.note} if r.note else {})}, sort_keys=True),
                     version, created)
        for r in rows])


class Planned:
    """Metrics of one checkpoint on one dataset: their ids, which the store already has, and the new rows."""

    def __init__(self, store: Store, target: Target, dataset: str, settings: dict[str, dict[str, Any]]):
        self.target, self.dataset, self.settings = target, dataset, settings
        self.ids = {m: metric_id(target.key, dataset, m, s) for m, s in settings.items()}
        self.have = stored_rows(store, list(self.ids.values()))
        self.new: list[MetricRow] = []
        self.undefined: dict[str, str] = {}  # metric -> why it has no value (e.g. a correlation of constant data)

    @property
    def missing(self) -> list[str]:
        return [m for m, i in self.ids.items() if i not in self.have]

    def add(self, metric: str, est: Estimate) -> None:
        if metric not in self.missing:
            return
        if not math.isfinite(est.value):
            self.undefined[metric] = f"undefined on these data ({est.value})"
        else:
            t = self.target
            self.new.append(MetricRow(self.ids[metric], t.key, t.label, self.dataset, metric, est.value, est.n, est.se,
                                      est.ci_low, est.ci_high, self.settings[metric], note=est.note))

    def rows(self) -> list[MetricRow]:
        by_id = {**self.have, **{r.metric_id: r for r in self.new}}
        return [by_id[i] for i in self.ids.values() if i in by_id]


# ------------------------------------------------------------------------------------------------------- models


class LazyModel:
    """A causal LM with its tokenizer, loaded on first use (a fully cached checkpoint loads nothing)."""

    def __init__(self, path: str):
        self.path = path
        self._loaded: tuple | None = None

    def get(self):
        """(model in eval mode on the device, tokenizer, pad id)."""
        if self._loaded is None:
            import torch

            from evalharness.models import load_causal_lm, load_tokenizer

            tok = load_tokenizer(self.path)
            device = "cuda" if torch.cuda.is_available() else "cpu"
            model = load_causal_lm(self.path).to(device).eval()
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            self._loaded = (model, tok, pad)
        return self._loaded

    def tokenizer(self):
        if self._loaded is not None:
            return self._loaded[1]
        from evalharness.models import load_tokenizer

        return load_tokenizer(self.path)


def reference_key(path: str) -> str:
    """The reference's key as generations store it: ``model:<weights fingerprint>``."""
    from evalharness.models import model_fingerprint, resolve_model

    return "model:" + model_fingerprint(resolve_model(path))

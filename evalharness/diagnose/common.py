"""What every diagnostic shares: its config, settings binding, store units, targets, data, statistics and output.

A *unit* is one cacheable computation: (kind, checkpoint, dataset, settings). Its rows are written in one transaction
under ``diagnostic_id = hash(kind, checkpoint, dataset, settings, name)``, so a unit is either fully stored or absent,
and a re-run reads it back instead of computing it. Tables and figures are always rendered from stored rows.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalharness.config import ConfigError
from evalharness.hashing import canonical, canonical_json, content_hash
from evalharness.store import Store, code_version, now
from evalharness.store_rows import DiagnosticRecord
from trainers.spec import bind_params, check


@dataclass
class DiagnoseConfig:
    """What the CLI passes: where to read from, what to run on, and ``settings`` (``--set key=value``) for the kind."""

    checkpoints: list[str] = field(default_factory=list)  # RUN[:STEP] from the store, or model names / paths
    reference: str | None = None  # default: each run's reference (its starting weights); a plain model is its own
    losses: list[str] | None = None  # gradients: the losses to decompose; beta-sensitivity: which sweeps
    data: str = "synthetic"  # a dataset preset (pairs), or a prompt set for density-ratio
    path: str | None = None
    limit: int | None = None  # None: the kind's own default (small enough for a CPU in minutes)
    out: str = "diagnostics"  # where PNG files go
    settings: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 4  # pairs per forward; changes speed and memory, not the numbers (beyond float noise)

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class Encoding:
    """How pairs become token ids (evalharness.scoring's truncation rule); part of every pair diagnostic's settings."""

    max_length: int = 256  # the synthetic pairs and short HH turns fit whole; longer texts are cut, and counted
    max_prompt_length: int = 128
    prompt_style: str = "auto"  # auto | chat | plain, as in training

    def __post_init__(self):
        check(0 < self.max_prompt_length < self.max_length, "need 0 < max_prompt_length < max_length")
        check(self.prompt_style in ("auto", "chat", "plain"), f"unknown prompt_style {self.prompt_style!r}")


def bind_settings(cls: type, overrides: dict[str, Any], kind: str):
    """``--set`` values bound to the kind's settings dataclass: unknown keys get a "did you mean" ParamError."""
    return bind_params(cls, overrides, owner=f"diagnostic {kind!r}")


# ------------------------------------------------------------------------------------------------------ store


@dataclass
class Row:
    name: str
    value: float | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unit:
    kind: str  # as stored (e.g. "information-difference")
    checkpoint: str  # checkpoint key: a run checkpoint id or model:<weights fingerprint>
    dataset: str  # name:content-hash of what was read
    settings: dict[str, Any] = field(default_factory=dict, hash=False)

    def row_id(self, name: str) -> str:
        return content_hash([self.kind, self.checkpoint, self.dataset, canonical(self.settings), name])


def fetch_unit(store: Store, unit: Unit) -> dict[str, Row] | None:
    """The stored rows of ``unit`` by name, or None when it has not been computed."""
    want = canonical_json(unit.settings)
    rows = {r.name: Row(r.name, r.value, json.loads(r.data) if r.data else {})
            for r in store.get_diagnostics(unit.kind, unit.checkpoint, unit.dataset)
            if canonical_json(json.loads(r.settings)) == want}
    return rows or None


def store_unit(store: Store, unit: Unit, rows: list[Row]) -> None:
    """All rows of a unit in one transaction; ids that exist already are kept (INSERT OR IGNORE)."""
    if len({r.name for r in rows}) != len(rows):
        raise ValueError(f"{unit.kind}: duplicate row names")
    settings = json.dumps(canonical(unit.settings), sort_keys=True)
    version, created = code_version(), now()
    store.insert_diagnostics([
        DiagnosticRecord(unit.row_id(r.name), unit.kind, unit.checkpoint, unit.dataset, r.name, _finite(r.value),
                         json.dumps(jsonable(r.data), sort_keys=True, allow_nan=False), settings, version, created)
        for r in rows])


def cached(store: Store, unit: Unit, compute: Callable[[], list[Row]]) -> tuple[dict[str, Row], bool]:
    """(rows, computed_now): the stored rows of ``unit``, computing and storing them first when absent."""
    rows = fetch_unit(store, unit)
    if rows is not None:
        return rows, False
    store_unit(store, unit, compute())
    rows = fetch_unit(store, unit)
    assert rows is not None
    return rows, True


def jsonable(obj: Any) -> Any:
    """Lists, dicts and numbers ready for strict JSON: non-finite floats become null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return _finite(obj)
    return obj


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def nan_if_none(values: Iterable[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


# ---------------------------------------------------------------------------------------------- targets, models


@dataclass(frozen=True)
class Target:
    key: str  # checkpoint key in the store
    label: str
    path: str
    reference: str  # a model name or path


def resolve_targets(specs: Sequence[str], store: Store, reference: str | None) -> list[Target]:
    """``RUN[:STEP]`` from the store or a model name/path, each with its reference (the run's starting weights)."""
    from evalharness.generate import resolve_target

    if not specs:
        raise ConfigError("give at least one --checkpoint (RUN[:STEP] from the store, or a model name or path)")
    out = []
    for spec in specs:
        t = resolve_target(spec, store, reference)
        out.append(Target(t.key, t.label, t.path, str(t.reference)))
    return out


def model_key(path: str) -> str:
    """The store key of a model given by name or path: ``model:`` + the fingerprint of its weights."""
    from evalharness.models import model_fingerprint, resolve_model

    return "model:" + model_fingerprint(resolve_model(path))


def run_of_checkpoint(store: Store, checkpoint_key: str) -> dict[str, Any] | None:
    """The runs row behind a checkpoint key (None for a plain model), params parsed."""
    if checkpoint_key.startswith("model:") or not Path(store.path).exists():
        return None
    with store.connect() as con:
        cur = con.execute("SELECT r.* FROM checkpoints c JOIN runs r USING (run_id) WHERE c.checkpoint_id = ?",
                          [checkpoint_key])
        found = cur.fetchone()
        if found is None:
            return None
        row = dict(zip([d[0] for d in cur.description], found))
    for key in ("params", "config", "data"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


class TargetModels:
    """A target's tokenizer, policy and reference, each loaded on first use: a fully cached diagnostic loads nothing."""

    def __init__(self, target: Target):
        self.target = target

    @functools.cached_property
    def tokenizer(self):
        from evalharness.models import load_tokenizer

        return load_tokenizer(self.target.path)

    @functools.cached_property
    def pad(self) -> int:
        return pad_id(self.tokenizer)

    @functools.cached_property
    def policy(self):
        return load_lm(self.target.path)

    @functools.cached_property
    def reference_key(self) -> str:
        return model_key(self.target.reference)

    @functools.cached_property
    def reference(self):
        """The reference model; the policy object itself when both are the same weights (no second copy)."""
        if model_key(self.target.path) == self.reference_key:
            return self.policy
        ref = load_lm(self.target.reference)
        check_same_vocabulary(self.policy, ref)
        return ref


def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_lm(path: str):
    """A causal LM in eval mode on the diagnostics device, with no gradients on its weights."""
    from evalharness.models import load_causal_lm

    return load_causal_lm(path).eval().requires_grad_(False).to(device())


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def check_same_vocabulary(policy, reference, what: str = "reference") -> None:
    a, b = policy.get_output_embeddings().weight.shape[0], reference.get_output_embeddings().weight.shape[0]
    if a != b:
        raise ConfigError(f"the {what} has a vocabulary of {b} tokens, the policy {a}: they must share a tokenizer")


# ---------------------------------------------------------------------------------------------------------- data


def load_pairs(cfg: DiagnoseConfig, default_limit: int) -> tuple[list, str]:
    """(preference pairs, dataset key) from ``cfg.data``/``cfg.path``; the key hashes the ids of what was read."""
    from evalharness.data.loaders import DatasetSpec, load
    from evalharness.data.types import PreferencePair

    try:
        spec = DatasetSpec(name=cfg.data, path=cfg.path, limit=cfg.limit or default_limit)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    examples = load(spec).examples
    if not examples:
        raise ConfigError(f"dataset {cfg.data!r} gave no pairs")
    if not all(isinstance(e, PreferencePair) for e in examples):
        raise ConfigError(f"dataset {cfg.data!r} holds scored samples; this diagnostic needs preference pairs")
    return examples, dataset_key(cfg.data, [e.id for e in examples])


def dataset_key(name: str, ids: Sequence[str]) -> str:
    return f"{name}:{content_hash(list(ids), size=6)}"


def encode_pairs(examples, tokenizer, enc: Encoding, prefix: str | None = None) -> tuple[list, int]:
    """PairExamples under the training truncation rule, and how many pairs were skipped (nothing left to score)."""
    from evalharness.scoring import tokenize

    tok = tokenize(examples, tokenizer, enc.prompt_style, enc.max_length, enc.max_prompt_length, prefix)
    if not tok.examples:
        raise ConfigError(f"no pair has a response left within max_length={enc.max_length}")
    return tok.examples, len(tok.skipped)


def chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ---------------------------------------------------------------------------------------------------- statistics


def mean_ci(values: Sequence[float], resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """{"mean", "n", "ci_low", "ci_high"} over the finite values: the mean with a percentile-bootstrap CI (NaN bounds
    when n < 2).

    The bootstrap makes no normality assumption (margins and gradients are skewed) and is what seaborn's error bars,
    the usual source of such figures, draw. Deterministic in ``seed``: every resample comes from one generator call
    (``chunk=resamples``), the draws the stored figures were made with.
    """
    from evalharness import stats

    x = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(x) < 2:
        return {"mean": x[0] if x else math.nan, "n": len(x), "ci_low": math.nan, "ci_high": math.nan}
    mean, lo, hi = stats.mean_ci(x, resamples, seed, level, chunk=resamples)
    return {"mean": mean, "n": len(x), "ci_low": lo, "ci_high": hi}


def ci_row(name: str, values: Sequence[float], **extra) -> Row:
    stats = mean_ci(values)
    return Row(name, stats["mean"], {**stats, **extra})


# -------------------------------------------------------------------------------------------------------- output


@dataclass
class Report:
    kind: str
    table: str
    png: Path
    computed: int = 0  # units computed by this call
    cached: int = 0  # units read back from the store
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [self.table, *self.notes, f"{self.computed} computed, {self.cached} from the store; figure: {self.png}"]


def fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{max(digits - 2, 1)}e}"
    return f"{x:.{digits}g}"


def fmt_ci(stats: dict[str, Any]) -> str:
    if stats.get("ci_low") is None or math.isnan(stats.get("ci_low", math.nan)):
        return fmt(stats.get("mean"))
    return f"{fmt(stats['mean'])} [{fmt(stats['ci_low'])}, {fmt(stats['ci_high'])}]"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table: numbers right-aligned, text left-aligned."""
    cells = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(not isinstance(row[i], str) for row in rows) if rows else False for i in range(len(headers))]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def new_figure(ncols: int, nrows: int = 1, width: float = 4.8, height: float = 3.8):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend switch) and its axes array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig, out_dir: str, kind: str, parts: Sequence[Any], label: str = "") -> Path:
    """Write ``fig`` as ``<out>/<kind>[-label]-<hash of parts>.png`` (atomically); the same inputs give the same name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:40].strip("_")
    name = f"{kind}{'-' + slug if slug else ''}-{content_hash(canonical(list(parts)), size=4)}.png"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=out)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, out / name)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out / name


def settings_dict(settings) -> dict[str, Any]:
    return dataclasses.asdict(settings)

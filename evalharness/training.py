"""Library functions behind `evalharness train` and `evalharness validate`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evalharness.config import (
    ConfigError,
    TrainConfig,
    check_text,
    load_toml,
    parse_overrides,
    set_path,
    train_config_from_dict,
    train_path,
)


def build_train_config(config: Path | None, flags: dict[str, Any], data: str | None, path: str | None,
                       limit: int | None, overrides: list[str] | None) -> TrainConfig:
    """A TOML file (optional) overlaid with the CLI flags that were given, then with ``--set`` (``train_path``: a
    TrainConfig field, ``data.KEY``, else a loss parameter). A setting given both as a flag and by ``--set`` is an
    error rather than a silent choice."""
    raw: dict[str, Any] = load_toml(config) if config else {}
    raw.setdefault("data", {})
    if not isinstance(raw["data"], dict):
        raise ConfigError(f"{config}: [data] must be a table")
    if raw["data"].get("path") is not None and not isinstance(raw["data"]["path"], str):
        raise ConfigError(f"{config}: [data] path must be a string, got {raw['data']['path']!r}")
    check_text(f"{config}: [data] path", raw["data"].get("path"))  # before it is resolved: a NUL fails in the OS call
    if config and raw["data"].get("path") and not Path(raw["data"]["path"]).is_absolute():
        raw["data"]["path"] = str((Path(config).parent / raw["data"]["path"]).resolve())
    train = raw.setdefault("train", {})
    if not isinstance(train, dict):
        raise ConfigError(f"{config}: [train] must be a table")
    given = {key: value for key, value in flags.items() if value is not None}
    given.update({f"data.{key}": value for key, value in (("name", data), ("path", path), ("limit", limit))
                  if value is not None})
    params = raw.pop("params", {}) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{config}: [params] must be a table")
    raw["params"] = dict(params)
    sets = [(key, train_path(key), value) for key, value in parse_overrides(overrides).items()]
    for key, where, _ in sets:
        if ".".join(where) in given:
            raise ConfigError(f"--set {key}: {'.'.join(where)} is also given as a flag; give it once")
    for key, value in given.items():  # a flag that was given overrides the file
        sets.append((key, tuple(key.split(".")), value))
    for key, where, value in sets:
        if len(where) == 1:
            raw.pop(where[0], None)  # the top level and [train] are one table
            train[where[0]] = value
        else:
            set_path(raw, where, value, key)
    return train_config_from_dict(raw, str(config or "flags"))


def validate_config(cfg: TrainConfig) -> list[str]:
    """Bind the loss expression, every loss parameter, the dataset preset and the model name; load nothing heavy."""
    from evalharness.plugins import registry
    from trainers.recipes import build_stage, check_overrides, parse_stages

    check_overrides(cfg.loss, cfg.params)
    lines = []
    for i, terms in enumerate(parse_stages(cfg.loss), 1):
        spec, params = build_stage(terms, cfg.params)
        lines.append(f"stage {i}: {spec.name}  needs={sorted(spec.needs) or '[]'}  params={_show(params)}")
    registry("datasets").entry(cfg.data.name.partition(":")[0])
    if ":" in cfg.data.name:  # options are the loader's to check: one example binds them all
        from evalharness.data.loaders import DatasetSpec, load

        load(DatasetSpec(cfg.data.name, path=cfg.data.path, limit=1))
    if cfg.data.path and not Path(cfg.data.path).exists():
        raise ConfigError(f"data path {cfg.data.path}: no such file")
    if not cfg.init_from:
        from evalharness.models import check_model_name

        check_model_name(cfg.model)
    lines.append(f"data: {cfg.data.name} {cfg.data.path or ''}".rstrip())
    lines.append(f"model: {cfg.model}; {cfg.max_steps} steps x {cfg.batch_size} pairs x {cfg.grad_accum} accum")
    lines.append("ok")
    return lines


def _show(params) -> str:
    import dataclasses

    if hasattr(params, "parts"):
        return "; ".join(f"{p.weight:g}*{p.spec.name}({_show(p.params)})" for p in params.parts)
    return ", ".join(f"{f.name}={getattr(params, f.name)!r}" for f in dataclasses.fields(params)
                     if not isinstance(getattr(params, f.name), str) or len(getattr(params, f.name)) < 40)


def train_command(cfg: TrainConfig, store_path: str, restart: bool = False, progress: bool = True) -> Iterator[str]:
    """``restart`` discards each stage's checkpoints in its own run directory once its inputs are checked
    (``trainers.loop.train_stage``); a directory that is not the run's is refused."""
    from evalharness.store import Store
    from trainers.loop import train

    validate_config(cfg)
    store = Store(store_path)
    last = None
    for r in train(cfg, store, progress=progress, restart=restart):
        last = r
        if r.status == "already-finished":
            yield f"run {r.run_id[:12]} ({r.name}) already finished at step {r.steps}: {r.checkpoint}"
            yield from (f"  {note}" for note in r.notes)
            continue
        yield f"run {r.run_id[:12]} ({r.name}): {r.steps} steps, {r.examples} training examples" + (
            f", resumed from step {r.resumed_from}" if r.resumed_from else "")
        if r.truncated or r.skipped:
            yield f"  truncated {r.truncated} examples (prompt from the left, response from the right); skipped {r.skipped}"
        if r.reference_cache:
            c = r.reference_cache
            if c.kind == "hidden states":
                yield (f"  reference hidden states (its logits from its LM head each step), held in memory: "
                       f"{c.sequences} sequences computed in {c.seconds:.1f}s")
            else:
                yield (f"  reference log-probs: {c.sequences} sequences, {c.hits} from the store cache, {c.computed} "
                       f"computed in {c.seconds:.1f}s")
        m = r.last_metrics
        shown = [k for k in ("loss", "rewards/chosen", "rewards/rejected", "margin", "accuracy", "grad_norm",
                             "tokens_per_s") if k in m] + sorted(k for k in m if k.startswith("state/"))
        if shown:
            yield "  last step: " + "  ".join(f"{k}={m[k]:.4g}" for k in shown)
        yield f"  checkpoint: {r.checkpoint}"
        yield from (f"  {note}" for note in r.notes)
    if last is not None:
        yield next_command(cfg, last, store_path)


def next_command(cfg: TrainConfig, result, store_path: str) -> str:
    """The command that judges the run just trained (the last stage of a recipe), each choice left to its rule."""
    import shlex

    store = "" if str(store_path) == "evalharness.duckdb" else f" --store {shlex.quote(str(store_path))}"
    if cfg.loss.strip() == "bradley-terry":
        return f"next: evalharness judge{store}   (judges every run with this reward model)"
    return f"next: evalharness judge --models {shlex.quote(result.run_id[:12])}{store}"

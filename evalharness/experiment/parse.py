"""Reading an experiment file: scales and ``--set`` merged over it, every section bound, grids expanded, every
reference between entries checked, every run's parameters bound. Loads no model.

``--set`` keys are dotted paths into the file (``evalharness.config`` reads the values): a key whose first part names a
section goes there (``generate.limit=2``, ``judge.judges=["oracle"]``); ``runs.NAME.…`` and ``pairs.NAME.…`` address
an entry by name; anything else is a ``[defaults]`` setting of every run. Within ``[defaults]`` and a run, keys read
as on ``evalharness train`` (``config.train_path``): a training field (``max_steps=2``), ``data.KEY``, else a loss
parameter (``beta=0.1``, ``dpo.beta=0.1``, ``params.beta=0.1``). A scale runs under its own name (``<name>-<scale>``)
unless it sets ``name``, so its runs and pair files never meet the default's.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from pathlib import Path
from typing import Any

from evalharness.config import (
    ConfigError,
    check_run_name,
    load_toml,
    parse_value,
    train_config_from_dict,
    train_path,
)
from evalharness.experiment.schema import (
    BASE,
    REFERENCE,
    SECTIONS,
    EvalSpec,
    Experiment,
    GenerateSpec,
    JudgeEntry,
    JudgeSpec,
    LeaderboardSpec,
    PairsSpec,
    RunEntry,
    bind_spec,
    check_judge_spec,
    check_seeds,
    check_shapes,
    pairs_preset,
    run_refs,
)

__all__ = ["load_experiment", "parse_experiment", "parse_value", "nest_overrides", "merge_tables", "apply_scale"]

def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None,
                    scale: str | list[str] | None = None) -> Experiment:
    raw = load_toml(path)
    return parse_experiment(raw, str(path), overrides, scale)


def parse_experiment(raw: dict[str, Any], source: str = "experiment", overrides: dict[str, Any] | None = None,
                     scale: str | list[str] | None = None) -> Experiment:
    """Bind every section; expand grids; check every reference between entries. Loads no model.

    ``scale`` merges ``[scales.<scale>]`` over the file (several: in order), then ``overrides`` (``--set``: dotted
    keys, see the module docstring) over that.
    """
    unknown = set(raw) - SECTIONS
    if unknown:
        raise ConfigError(f"{source}: unknown section {sorted(unknown)[0]!r} (known: {', '.join(sorted(SECTIONS))})")
    check_shapes(raw, source)
    for name in [scale] if isinstance(scale, str) else scale or []:
        raw = apply_scale(raw, name, source)
    if overrides:
        raw = merge_tables(raw, nest_overrides(overrides), f"{source} --set")
    unknown = set(raw) - SECTIONS
    if unknown:
        raise ConfigError(f"{source}: unknown section {sorted(unknown)[0]!r} (known: {', '.join(sorted(SECTIONS))})")
    check_shapes(raw, source)
    name = str(raw.get("name") or Path(source).stem)
    _check_name("the experiment's name", name, source, "" if raw.get("name") else '; set name = "…" in the file')
    defaults = copy.deepcopy(raw.get("defaults", {}))
    if not raw.get("runs"):
        raise ConfigError(f"{source}: an experiment needs at least one [[runs]] entry")
    pairs = [bind_spec(PairsSpec, dict(p), f"{source} [[pairs]] {p.get('name', i + 1)}")
             for i, p in enumerate(raw.get("pairs", []))]
    for p in pairs:
        _check_name("[[pairs]] name", p.name, source)
    pair_kinds = {p.name: p.kind for p in pairs}
    runs: list[RunEntry] = []
    for i, entry in enumerate(raw["runs"]):
        runs += _expand(entry, defaults, f"{source} [[runs]] {entry.get('name', i + 1)}", set(pair_kinds))
    names = [r.name for r in runs] + [p.name for p in pairs] + list(dict.fromkeys(r.group for r in runs if r.group))
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"{source}: entry name {sorted(dupes)[0]!r} is used twice")
    _link_replicates(runs, source)
    _link(runs, pairs, source)
    gen = bind_spec(GenerateSpec, dict(raw.get("generate", {})), f"{source} [generate]")
    ev = bind_spec(EvalSpec, dict(raw["eval"]), f"{source} [eval]") if "eval" in raw else None
    judge = bind_spec(JudgeSpec, dict(raw.get("judge", {})), f"{source} [judge]")
    if not isinstance(judge.judges, list) or not judge.judges:
        raise ConfigError(f"{source} [judge]: judges must be a non-empty list")
    for i, j in enumerate(judge.judges):
        if not isinstance(j, str | dict) or (isinstance(j, dict) and not isinstance(
                bind_spec(JudgeEntry, dict(j), f"{source} [judge] judges[{i}]").spec, str)):
            raise ConfigError(f"{source} [judge] judges[{i}]: expected a spec string or a table {{spec, limit, "
                              f"samples}}, got {j!r}")
    board = bind_spec(LeaderboardSpec, dict(raw.get("leaderboard", {})), f"{source} [leaderboard]")
    policies = {r.name for r in runs if not r.reward_model}
    baselines = judge.baselines
    if not baselines or not all(isinstance(b, str) for b in baselines) or len(set(baselines)) < len(baselines):
        raise ConfigError(f"{source} [judge]: baseline must be a name or a list of distinct names, got "
                          f"{judge.baseline!r}")
    for baseline in baselines:
        if baseline not in policies | {BASE, REFERENCE}:
            raise ConfigError(f"{source} [judge]: baseline {baseline!r} is not a run of this experiment, "
                              f"'base' or 'reference'{_one_replicate(baseline, runs)}")
    if BASE in baselines and not gen.base:
        raise ConfigError(f"{source}: the baseline is the base model but [generate] base = false")
    reward_models = {r.name for r in runs if r.reward_model}
    for where, spec in ([("[judge]", e.spec) for e in judge.entries]
                        + [(f"[[pairs]] {p.name}", p.judge) for p in pairs]):
        for ref in run_refs(spec):
            if ref not in reward_models:
                raise ConfigError(f"{source} {where}: {spec!r} names @{ref}, which is not a reward-model run here")
        check_judge_spec(spec, f"{source} {where} {spec!r}")
    for r in runs:
        ref = str(r.config.data.name)
        if ref.startswith("@") and pair_kinds[ref[1:]] == "scored" and r.reward_model:
            raise ConfigError(f"{source}: run {r.name!r} trains a reward model on scored samples {ref!r}")
    base_model = runs[0].config.model if not runs[0].config.init_from else str(defaults.get("model", "tiny-llama"))
    claims = _claims(raw, source, runs)
    exp = Experiment(name, source, runs, pairs, gen, ev, judge, board, base_model, raw, claims=claims)
    _validate_runs(exp)
    return exp


def _claims(raw: dict[str, Any], source: str, runs: list[RunEntry]) -> list:
    """The [[claims]], each naming configurations of this experiment: a policy run (its seed replicates together)
    or, in the matched and frontier forms, a grid's runs."""
    from evalharness.claim_eval import grid, groups
    from leaderboards.claims import ClaimError, parse_claims

    claims = parse_claims(raw, source)
    found = groups({r.name: r.name for r in runs if not r.reward_model})
    for i, c in enumerate(claims):
        for name in (c.a, c.b):
            configs = grid(name, found)
            where = f"{source}: claims[{i}] ({c.text!r})"
            if not configs:
                raise ClaimError(f"{where}: {name!r} is not a policy run of this experiment (runs: "
                                 f"{', '.join(sorted(found))})")
            if configs != [name] and c.form not in ("matched", "frontier"):
                raise ClaimError(f"{where}: {name!r} names a grid ({', '.join(configs)}); a {c.form} claim compares "
                                 "one configuration a side (name one, or use matched = QUANTITY)")
    return claims


def _check_name(what: str, name: str, source: str, tip: str = "") -> None:
    """The experiment's name and a [[pairs]] entry's become directories and files beside the store
    (``runs/<experiment>/``, ``experiments/<experiment>/<pairs>.jsonl``): the run-name rule keeps them there."""
    try:
        check_run_name(name)
    except ConfigError as e:
        raise ConfigError(f"{source}: {what} {str(e).removeprefix('run name ')}{tip}") from None


# ------------------------------------------------------------------------------------------ scales and --set


def nest_overrides(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted ``--set`` keys → the nested tables of an experiment file (the module docstring has the rules).

    >>> nest_overrides({"max_steps": 1, "beta": 0.1, "generate.limit": 2})
    {'defaults': {'max_steps': 1, 'params': {'beta': 0.1}}, 'generate': {'limit': 2}}
    >>> nest_overrides({"runs.sft-dpo.dpo.beta": 0.5, "runs.dpo.grid.dpo.beta": [0.1]})
    {'runs': {'sft-dpo': {'params': {'dpo.beta': 0.5}}, 'dpo': {'grid': {'dpo.beta': [0.1]}}}}
    """
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        if any(not p for p in parts) or len(parts) < {"runs": 3, "pairs": 3, "defaults": 2}.get(parts[0], 1):
            raise ConfigError(f"--set {key}: expected SECTION.KEY, runs.NAME.KEY or a [defaults] field")
        if parts[0] == "runs" and parts[2] not in ("grid", "data", "name"):
            path = (*parts[:2], *_train_path(".".join(parts[2:])))
        elif parts[0] == "defaults" or parts[0] not in SECTIONS - {"scales"}:
            path = ("defaults", *_train_path(".".join(parts[1:] if parts[0] == "defaults" else parts)))
        else:
            path = tuple(parts)
            for i, part in enumerate(parts[:-1]):
                if part == "grid":  # a parameter name may hold a dot (dpo.beta)
                    path = (*parts[:i + 1], ".".join(parts[i + 1:]))
                    break
        table = out
        for part in path[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {key}: {part!r} is set to a value and used as a table")
        table[path[-1]] = value
    return out


def _train_path(key: str) -> tuple[str, ...]:
    """``config.train_path``, but ``seeds`` is the experiment's own key of a run (its replicates), not a loss's."""
    return ("seeds",) if key == "seeds" else train_path(key)


def merge_tables(base: dict[str, Any], over: dict[str, Any], where: str, top: bool = True) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: tables merge key by key, any other value replaces. At the top level,
    ``runs`` and ``pairs`` in ``over`` are tables of entry name → fields, merged into the entry of that name."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if top and key in ("runs", "pairs"):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {key} must map entry names to tables of fields")
            out[key] = _merge_entries(out.get(key, []), value, f"{where} {key}")
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_tables(out[key], value, f"{where} {key}", top=False)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_entries(entries: list[dict[str, Any]], over: dict[str, Any], where: str) -> list[dict[str, Any]]:
    by_name = {e.get("name"): i for i, e in enumerate(entries)}
    out = list(entries)
    for name, fields in over.items():
        if name not in by_name:
            raise ConfigError(f"{where}: no entry named {name!r} (entries: {', '.join(map(str, by_name)) or 'none'})")
        if not isinstance(fields, dict) or "name" in fields:
            raise ConfigError(f"{where}.{name}: expected a table of fields (an entry keeps its name)")
        out[by_name[name]] = merge_tables(out[by_name[name]], fields, f"{where}.{name}", top=False)
    return out


def _unset(raw: dict[str, Any], key: str, where: str) -> None:
    """Remove a dotted key; ``runs.NAME`` / ``pairs.NAME`` remove a whole entry (a smaller scale drops a variant)."""
    parts = key.split(".")
    if len(parts) == 2 and parts[0] in ("runs", "pairs"):
        entries = raw.get(parts[0], [])
        kept = [e for e in entries if not (isinstance(e, dict) and e.get("name") == parts[1])]
        if len(kept) == len(entries):
            raise ConfigError(f"{where}: no {parts[0]} entry named {parts[1]!r}")
        raw[parts[0]] = kept
        return
    table: Any = raw
    for i, part in enumerate(parts[:-1]):
        if i == 1 and parts[0] in ("runs", "pairs"):
            table = next((e for e in table if isinstance(e, dict) and e.get("name") == part), None)
        else:
            table = table.get(part) if isinstance(table, dict) else None
        if table is None:
            break
    if not isinstance(table, dict) or parts[-1] not in table:
        raise ConfigError(f"{where}: {key!r} is not set in the file")
    del table[parts[-1]]


def apply_scale(raw: dict[str, Any], scale: str, source: str) -> dict[str, Any]:
    """The file with ``[scales.<scale>]`` merged over it, named ``<name>-<scale>`` unless the scale names itself
    (so a scale's runs, run directories and pair files never meet the default's)."""
    scales = raw.get("scales") or {}
    if scale not in scales or not isinstance(scales[scale], dict):
        known = ", ".join(sorted(scales)) or "none"
        raise ConfigError(f"{source}: no scale {scale!r} (its [scales.*] tables: {known})")
    table = dict(scales[scale])
    where = f"{source} [scales.{scale}]"
    if "scales" in table:
        raise ConfigError(f"{where}: a scale cannot define scales")
    merged = copy.deepcopy(raw)
    unset = table.pop("unset", [])
    if not isinstance(unset, list) or not all(isinstance(k, str) for k in unset):
        raise ConfigError(f"{where}: unset must be a list of dotted keys")
    for key in unset:  # TOML has no null: a scale removes a setting (a file's limit, a local path) this way
        _unset(merged, key, f"{where} unset")
    merged = merge_tables(merged, table, where)
    if "name" not in table:
        merged["name"] = f"{raw.get('name') or Path(source).stem}-{scale}"
    return merged


def _expand(entry: dict[str, Any], defaults: dict[str, Any], where: str, pair_names: set[str]) -> list[RunEntry]:
    entry = copy.deepcopy(entry)
    name = entry.pop("name", None)
    if not name:
        raise ConfigError(f"{where}: every run needs a name")
    grid = entry.pop("grid", {}) or {}
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise ConfigError(f"{where}: grid must map parameter names to non-empty lists")
    base = copy.deepcopy(defaults)
    base_data = dict(base.pop("data", {}) or {})
    params = dict(base.pop("params", {}) or {})
    data = entry.pop("data", None)
    if isinstance(data, str):  # "@onpolicy" (a [[pairs]] entry) or a preset name
        data = {"name": data}
    base_data.update(data or {})
    params.update(entry.pop("params", {}) or {})
    base.update(entry)
    seeds = base.pop("seeds", None)
    if seeds is not None:
        seeds = check_seeds(seeds, where)
        if "seed" in base:  # which of the two a replicate trains with would be a guess
            raise ConfigError(f"{where}: set seeds (the replicates) or seed (one run), not both")
    out = []
    keys = sorted(grid)
    for values, seed in itertools.product(itertools.product(*(grid[k] for k in keys)), seeds or [None]):
        suffix = "".join(f"-{k}{v}" for k, v in zip(keys, values))
        p = dict(params)
        p.update(dict(zip(keys, values)))
        group = name + suffix
        flat = dict(base, params=p, data=dict(base_data), name=group if seed is None else f"{group}-seed{seed}")
        if seed is not None:
            flat["seed"] = seed
        after = []
        if str(flat["data"].get("name", "")).startswith("@"):
            ref = flat["data"]["name"][1:]
            if ref not in pair_names:
                raise ConfigError(f"{where}: data {flat['data']['name']!r} is not a [[pairs]] entry")
            after.append(ref)
        if flat.get("init_from"):
            after.append(str(flat["init_from"]))
        cfg = train_config_from_dict(flat, where)
        out.append(RunEntry(flat["name"], cfg, after, _is_reward_model(cfg.loss, where),
                            None if seed is None else group))
    return out


def _is_reward_model(loss: str, where: str) -> bool:
    from evalharness.plugins import registry
    from trainers.recipes import parse_stages

    try:
        last = parse_stages(loss)[-1]
        return any("reward_head" in registry("losses").get(n).needs for _, n in last)
    except (ValueError, LookupError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _link(runs: list[RunEntry], pairs: list[PairsSpec], source: str) -> None:
    """Check references and order the runs so each comes after what it needs."""
    known = {r.name for r in runs}
    for r in runs:
        init = r.config.init_from
        if init and init in known:
            if runs[[x.name for x in runs].index(init)].reward_model:
                raise ConfigError(f"{source}: run {r.name!r} starts from {init!r}, a reward model")
        elif init and not Path(init).exists():
            raise ConfigError(f"{source}: run {r.name!r} init_from {init!r} is neither a run of this experiment "
                              "nor a checkpoint directory")
    for p in pairs:
        if p.policy not in known:
            raise ConfigError(f"{source}: [[pairs]] {p.name!r} policy {p.policy!r} is not a run of this experiment"
                              + _one_replicate(p.policy, runs))


def _link_replicates(runs: list[RunEntry], source: str) -> None:
    """``init_from`` naming a replicated run: a replicate starts from the replicate of its own seed (dpo-seed1 from
    sft-seed1), so the seeds stay independent end to end; a run that is not replicated the same way must name one."""
    names = {r.name for r in runs}
    groups = {r.group for r in runs if r.group}
    for i, r in enumerate(runs):
        init = r.config.init_from
        if init not in groups:
            continue
        own = f"{init}-seed{r.config.seed}"
        if r.group is None or own not in names:
            raise ConfigError(f"{source}: run {r.name!r} init_from {init!r}, which is replicated over seeds: give it "
                              f"the same seeds{_one_replicate(init, runs)}")
        runs[i] = dataclasses.replace(r, config=dataclasses.replace(r.config, init_from=own),
                                      after=[own if a == init else a for a in r.after])


def _one_replicate(name: str, runs: list[RunEntry]) -> str:
    members = [r.name for r in runs if r.group == name]
    return f" ({name!r} is replicated over seeds as {', '.join(members)}; name one)" if members else ""


def _validate_runs(exp: Experiment) -> None:
    from evalharness.training import validate_config

    for r in exp.runs:
        cfg = r.config
        if str(cfg.data.name).startswith("@") or (cfg.init_from and cfg.init_from in {x.name for x in exp.runs}):
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name=pairs_preset(exp, cfg.data.name),
                                                                    path=None)
                                      if str(cfg.data.name).startswith("@") else cfg.data, init_from=None)
        try:
            validate_config(cfg)
        except (ValueError, LookupError) as e:
            raise ConfigError(f"{exp.source} run {r.name!r}: {e}") from None

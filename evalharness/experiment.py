"""`evalharness run EXPERIMENT.toml`: train → (on-policy pairs) → generate → eval → judge → leaderboard, resumably.

An experiment declares runs (losses, recipes, parameter grids), optional on-policy pair sets, sampling, metrics, judges
and a baseline. Every step is keyed by content in the store, so running it again does only what is missing, and
``--dry-run`` prints the plan with counts before anything heavy is loaded. The layout::

    name = "beta-sweep"
    [defaults]                 # TrainConfig fields every run starts from (model, max_steps, lr, [defaults.data]…)
    model = "smollm2-135m"
    [[runs]]
    name = "sft"
    loss = "sft"
    [[runs]]
    name = "dpo"
    loss = "dpo"
    init_from = "sft"          # another run of this experiment: starts from its final checkpoint
    grid = { beta = [0.1, 0.5] }   # one run per value: dpo-beta0.1, dpo-beta0.5
    [[runs]]
    name = "rm"
    loss = "bradley-terry"     # a reward model: not sampled; judges name it "@rm"
    [[pairs]]                  # on-policy pairs: sample a run, label best/worst by a judge, train on "@onpolicy"
    name = "onpolicy"
    policy = "sft"
    kind = "pairs"             # or "scored": all n samples with their scores, for exo-rw / dpo-rw
    [generate]                 # GenerateConfig fields; base = true also samples the base model ("base")
    [eval]                     # evaluation data for the statistical metrics (omit the table to skip)
    [judge]
    judges = ["oracle", "reward-model:path=@rm"]   # or a table: {spec = "gpt-4", limit = 100, samples = 1}
    baseline = "base"          # "base", a run name, "reference" (the prompt set's reference answers), or a list
    [leaderboard]
    judge = "oracle"
    plot = "plots"
    [scales.smoke]             # `--scale smoke`: tables merged over the file (runs and pairs addressed by name)
    defaults = { model = "tiny-llama", max_steps = 1 }
    runs.dpo.grid = { beta = [0.1] }
    unset = ["generate.limit"] # keys removed before the merge (TOML has no null); "runs.NAME" drops an entry

Overrides (``--set``) use the same merge: ``generate.limit=2``, ``runs.dpo.params.beta=0.5``,
``judge.judges=["oracle"]``; a key that names no section sets a ``[defaults]`` field (``max_steps=2``). A scale runs
under its own name (``<name>-<scale>``) unless it sets ``name``, so its runs and pair files never meet the default's.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from evalharness.config import ConfigError, TrainConfig, load_toml, train_config_from_dict
from evalharness.experiment_spec import (
    BASE,
    PAIR_KINDS,
    REFERENCE,
    SECTIONS,
    EvalSpec,
    GenerateSpec,
    JudgeEntry,
    JudgeSpec,
    LeaderboardSpec,
    PairsSpec,
    bind_spec,
    check_judge_spec,
    check_shapes,
)
from evalharness.hashing import content_hash
from evalharness.store import Store, code_version, now


@dataclass
class RunEntry:
    name: str  # entry name, grid suffix included
    config: TrainConfig
    after: list[str]  # run or pairs entries it needs first
    reward_model: bool


@dataclass
class Experiment:
    name: str
    source: str
    runs: list[RunEntry]
    pairs: list[PairsSpec]
    generate: GenerateSpec
    eval: EvalSpec | None
    judge: JudgeSpec
    leaderboard: LeaderboardSpec
    base_model: str
    raw: dict[str, Any]

    @property
    def experiment_id(self) -> str:
        return content_hash(["experiment", self.resolved()])

    def resolved(self) -> dict[str, Any]:
        return {"name": self.name,
                "runs": {r.name: dataclasses.asdict(r.config) for r in self.runs},
                "pairs": [dataclasses.asdict(p) for p in self.pairs],
                "generate": dataclasses.asdict(self.generate),
                "eval": dataclasses.asdict(self.eval) if self.eval else None,
                "judge": dataclasses.asdict(self.judge),
                "leaderboard": dataclasses.asdict(self.leaderboard)}

    def entry(self, name: str) -> RunEntry:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)


# --------------------------------------------------------------------------------------------------------- loading


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
    defaults = copy.deepcopy(raw.get("defaults", {}))
    if not raw.get("runs"):
        raise ConfigError(f"{source}: an experiment needs at least one [[runs]] entry")
    pairs = [bind_spec(PairsSpec, dict(p), f"{source} [[pairs]] {p.get('name', i + 1)}")
             for i, p in enumerate(raw.get("pairs", []))]
    pair_kinds = {p.name: p.kind for p in pairs}
    runs: list[RunEntry] = []
    for i, entry in enumerate(raw["runs"]):
        runs += _expand(entry, defaults, f"{source} [[runs]] {entry.get('name', i + 1)}", set(pair_kinds))
    names = [r.name for r in runs] + [p.name for p in pairs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"{source}: entry name {sorted(dupes)[0]!r} is used twice")
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
                              f"'base' or 'reference'")
    if BASE in baselines and not gen.base:
        raise ConfigError(f"{source}: the baseline is the base model but [generate] base = false")
    reward_models = {r.name for r in runs if r.reward_model}
    for where, spec in ([("[judge]", e.spec) for e in judge.entries]
                        + [(f"[[pairs]] {p.name}", p.judge) for p in pairs]):
        for ref in _run_refs(spec):
            if ref not in reward_models:
                raise ConfigError(f"{source} {where}: {spec!r} names @{ref}, which is not a reward-model run here")
        check_judge_spec(spec, f"{source} {where} {spec!r}")
    for r in runs:
        ref = str(r.config.data.name)
        if ref.startswith("@") and pair_kinds[ref[1:]] == "scored" and r.reward_model:
            raise ConfigError(f"{source}: run {r.name!r} trains a reward model on scored samples {ref!r}")
    base_model = runs[0].config.model if not runs[0].config.init_from else str(defaults.get("model", "tiny-llama"))
    exp = Experiment(name, source, runs, pairs, gen, ev, judge, board, base_model, raw)
    _validate_runs(exp)
    return exp


# ------------------------------------------------------------------------------------------ scales and --set


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML literal (``2``, ``0.1``, ``true``, ``["oracle"]``, ``{beta = [0.1]}``), else the text.

    >>> parse_value("2"), parse_value("1e-3"), parse_value("tiny-llama"), parse_value('["a", "b"]')
    (2, 0.001, 'tiny-llama', ['a', 'b'])
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def nest_overrides(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted ``--set`` keys → the nested tables of an experiment file.

    A key whose first part is not a section goes under ``[defaults]``; ``runs.NAME.…`` and ``pairs.NAME.…`` address an
    entry by name; after ``params`` or ``grid`` the rest is one parameter name (it may hold a dot, ``dpo.beta``).

    >>> nest_overrides({"max_steps": 1, "generate.limit": 2, "runs.sft-dpo.params.dpo.beta": 0.5})
    {'defaults': {'max_steps': 1}, 'generate': {'limit': 2}, 'runs': {'sft-dpo': {'params': {'dpo.beta': 0.5}}}}
    """
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        if parts[0] not in SECTIONS - {"scales"}:
            parts = ["defaults", *parts]
        for i, part in enumerate(parts[:-1]):
            if part in ("params", "grid"):
                parts = parts[:i + 1] + [".".join(parts[i + 1:])]
                break
        if any(not p for p in parts) or (parts[0] in ("runs", "pairs") and len(parts) < 3):
            raise ConfigError(f"--set {key}: expected SECTION.KEY, runs.NAME.KEY or a [defaults] field")
        table = out
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {key}: {part!r} is set to a value and used as a table")
        table[parts[-1]] = value
    return out


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
    out = []
    keys = sorted(grid)
    for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        suffix = "".join(f"-{k}{v}" for k, v in zip(keys, values))
        p = dict(params)
        p.update(dict(zip(keys, values)))
        flat = dict(base, params=p, data=dict(base_data), name=name + suffix)
        after = []
        if str(flat["data"].get("name", "")).startswith("@"):
            ref = flat["data"]["name"][1:]
            if ref not in pair_names:
                raise ConfigError(f"{where}: data {flat['data']['name']!r} is not a [[pairs]] entry")
            after.append(ref)
        if flat.get("init_from"):
            after.append(str(flat["init_from"]))
        cfg = train_config_from_dict(flat, where)
        out.append(RunEntry(name + suffix, cfg, after, _is_reward_model(cfg.loss, where)))
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
            raise ConfigError(f"{source}: [[pairs]] {p.name!r} policy {p.policy!r} is not a run of this experiment")


def _run_refs(spec: str) -> list[str]:
    return [part.split("@", 1)[1].split(",")[0] for part in spec.split("=")[1:] if part.startswith("@")]


def _pairs_preset(exp: Experiment, ref: str) -> str:
    """The dataset preset that reads the file of the [[pairs]] entry ``ref`` ("@name")."""
    return PAIR_KINDS[next(p.kind for p in exp.pairs if p.name == ref[1:])]


def _validate_runs(exp: Experiment) -> None:
    from evalharness.training import validate_config

    for r in exp.runs:
        cfg = r.config
        if str(cfg.data.name).startswith("@") or (cfg.init_from and cfg.init_from in {x.name for x in exp.runs}):
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name=_pairs_preset(exp, cfg.data.name),
                                                                    path=None)
                                      if str(cfg.data.name).startswith("@") else cfg.data, init_from=None)
        try:
            validate_config(cfg)
        except (ValueError, LookupError) as e:
            raise ConfigError(f"{exp.source} run {r.name!r}: {e}") from None


# --------------------------------------------------------------------------------------------------------- running


@dataclass
class Step:
    kind: str  # train | pairs | generate | eval | judge
    name: str
    todo: bool  # False: already in the store
    detail: str


def order(exp: Experiment) -> list[str]:
    """Run and pairs entries in an order where each comes after what it needs (a cycle is an error)."""
    needs: dict[str, list[str]] = {r.name: r.after for r in exp.runs}
    needs.update({p.name: [p.policy, *_run_refs(p.judge)] for p in exp.pairs})
    done: list[str] = []
    visiting: set[str] = set()

    def visit(n: str):
        if n in done:
            return
        if n in visiting:
            raise ConfigError(f"{exp.source}: entries depend on each other in a cycle through {n!r}")
        visiting.add(n)
        for m in needs.get(n, []):
            if m in needs:
                visit(m)
        visiting.discard(n)
        done.append(n)

    for n in needs:
        visit(n)
    return done


def pairs_path(exp: Experiment, spec: PairsSpec, store: Store) -> Path:
    return Path(store.path).resolve().parent / "experiments" / exp.name / f"{spec.name}.jsonl"


def build_pairs(exp: Experiment, spec: PairsSpec, store: Store, policy_run_id: str, progress: bool,
                judge_spec: str | None = None) -> tuple[str, str]:
    """Sample the policy, score every sample with the judge, and write the training file: ``kind = "pairs"`` keeps best
    vs worst per prompt (ties skipped), ``kind = "scored"`` keeps all n samples with their scores (prompts with fewer
    than n non-empty samples skipped, since K must be the same on every row).

    ``judge_spec`` is ``spec.judge`` with its ``@run`` references bound to checkpoint paths. Written as jsonl that the
    ``jsonl`` ({prompt, chosen, rejected}) or ``scored-samples`` ({prompt, completions, rewards}) preset reads; the
    file name carries nothing run-specific, and re-building gives identical bytes.
    """
    from evalharness.generate import GenerateConfig, generate
    from evalharness.generation.base import Sampling
    from judges.base import build_judge, can_score

    judge = build_judge(judge_spec or spec.judge)
    if not can_score(judge):
        raise ConfigError(f"[[pairs]] {spec.name!r}: judge {spec.judge!r} does not score single responses")
    sampling = Sampling(spec.temperature, 1.0, spec.max_new_tokens, spec.seed)
    gen_cfg = GenerateConfig([policy_run_id], spec.prompts, spec.path, spec.limit, n=spec.n, sampling=sampling,
                             backend=spec.backend, max_prompt_length=spec.max_prompt_length, score_reference=False)
    generate(gen_cfg, store, progress=progress)
    with store.connect() as con:
        rows = con.execute(
            "SELECT g.prompt_id, g.sample_index, g.text, p.messages FROM generations g JOIN prompts p USING "
            "(prompt_id) WHERE g.checkpoint = (SELECT checkpoint_id FROM checkpoints WHERE run_id = ? AND is_final) "
            "AND p.prompt_set = ? AND g.sampling = ? AND g.sample_index < ? AND g.turn = 1 "
            "ORDER BY g.prompt_id, g.sample_index",
            [policy_run_id, spec.prompts, json.dumps(dataclasses.asdict(sampling)), spec.n]).fetchall()
    from evalharness.data.types import Message

    by_prompt: dict[str, list] = {}
    for pid, _, text, msgs in rows:
        by_prompt.setdefault(pid, []).append((text, msgs))
    lines, skipped, empty = [], 0, 0
    need = spec.n if spec.kind == "scored" else 2
    for pid in sorted(by_prompt):
        samples = [s for s in by_prompt[pid] if s[0].strip()]  # an empty answer is no training example
        empty += len(by_prompt[pid]) - len(samples)
        if len(samples) < need:
            skipped += 1
            continue
        prompt = json.loads(samples[0][1])
        messages = tuple(Message(m["role"], m["content"]) for m in prompt)
        scores = judge.score([(messages, t) for t, _ in samples])
        if spec.kind == "scored":
            lines.append(json.dumps({"prompt": prompt, "completions": [t for t, _ in samples],
                                     "rewards": [float(x) for x in scores]}, sort_keys=True))
            continue
        best, worst = max(range(len(samples)), key=scores.__getitem__), min(range(len(samples)), key=scores.__getitem__)
        if scores[best] == scores[worst]:
            skipped += 1
            continue
        lines.append(json.dumps({"prompt": prompt, "chosen": samples[best][0], "rejected": samples[worst][0],
                                 "score_chosen": scores[best], "score_rejected": scores[worst]}, sort_keys=True))
    if not lines:
        why = (f"no prompt has {spec.n} non-empty samples" if spec.kind == "scored"
               else f"every prompt's samples scored the same under {spec.judge!r}")
        raise ConfigError(f"[[pairs]] {spec.name!r}: {why}")
    path = pairs_path(exp, spec, store)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    if spec.kind == "scored":
        return str(path), (f"{len(lines)} prompts x {spec.n} scored samples from {len(by_prompt)} prompts "
                           f"({skipped} skipped: fewer than {spec.n} non-empty; {empty} empty samples)")
    return str(path), (f"{len(lines)} pairs from {len(by_prompt)} prompts ({skipped} skipped: all samples tied or "
                       f"fewer than two non-empty; {empty} empty samples)")


class Runner:
    """Binds the experiment's references as entries complete, and runs (or plans) each step."""

    def __init__(self, exp: Experiment, store: Store, progress: bool = True, echo=print):
        self.exp, self.store, self.progress, self.echo = exp, store, progress, echo
        self.run_ids: dict[str, str] = {}  # entry name -> final run id
        self.judge_ids: dict[str, str] = {}  # judge spec -> the id its judgments are stored under
        self.baseline_keys: dict[str, str] = {}  # baseline name -> its checkpoint key in generations
        self.pair_files: dict[str, str] = {p.name: str(pairs_path(exp, p, store)) for p in exp.pairs}

    def bound(self, entry: RunEntry) -> TrainConfig:
        """The entry's config with init_from → the named run's final run id and "@pairs" → the pairs file."""
        cfg = entry.config
        if cfg.out is None:  # beside the store, so two experiments (or stores) never share a run directory
            cfg = dataclasses.replace(cfg, out=str(Path(self.store.path).resolve().parent / "runs" / self.exp.name
                                                   / entry.name))
        if cfg.init_from in self.run_ids:
            cfg = dataclasses.replace(cfg, init_from=self.run_ids[cfg.init_from])
        if str(cfg.data.name).startswith("@"):
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name=_pairs_preset(self.exp,
                                                                                                 cfg.data.name),
                                                                    path=self.pair_files[cfg.data.name[1:]]))
        return cfg

    def bound_judge(self, spec: str) -> str:
        """A judge spec with each ``@run`` (a reward-model run of this experiment) → its final checkpoint's path."""
        for ref in _run_refs(spec):
            final = [c for c in self.store.checkpoints(self.run_ids[ref]) if c["is_final"]]
            spec = spec.replace(f"@{ref}", final[-1]["path"])
        return spec

    def final_run_id(self, entry: RunEntry) -> str:
        from trainers.loop import plan_stages, run_id_of

        return run_id_of(plan_stages(self.bound(entry))[-1][0])

    def finished(self, run_id: str) -> bool:
        run = self.store.get_run(run_id) if Path(self.store.path).exists() else None
        return bool(run and run["status"] == "finished")

    # ------------------------------------------------------------------------------------------------ steps
    def plan(self) -> list[Step]:
        steps = []
        for name in order(self.exp):
            if name in self.pair_files:
                spec = next(p for p in self.exp.pairs if p.name == name)
                built = Path(self.pair_files[name]).exists()
                what = "scored" if spec.kind == "scored" else "best vs worst"
                steps.append(Step("pairs", name, not built, f"{spec.n} samples x {spec.limit} prompts of "
                                  f"{spec.prompts!r} from {spec.policy!r}, {what} by {spec.judge}"))
                continue
            entry = self.exp.entry(name)
            rid = self.final_run_id(entry)
            self.run_ids[name] = rid
            cfg = entry.config
            what = "reward model" if entry.reward_model else "policy"
            steps.append(Step("train", name, not self.finished(rid),
                              f"{what}: {cfg.loss} {_params(cfg.params)}{cfg.max_steps} steps x {cfg.batch_size} "
                              f"from {cfg.init_from or cfg.model} (run {rid[:12]})"))
        g = self.exp.generate
        policies = [r.name for r in self.exp.runs if not r.reward_model] + ([BASE] if g.base else [])
        every = ", every saved checkpoint" if g.every_checkpoint else ""
        steps.append(Step("generate", g.prompts, True, f"{len(policies)} models{every} x {g.limit or 'all'} prompts "
                          f"x {g.n} samples, T={g.temperature}, {g.max_new_tokens} new tokens (missing ones only)"))
        if self.exp.eval:
            e = self.exp.eval
            data = {**dataclasses.asdict(self.exp.runs[0].config.data), **e.data}
            steps.append(Step("eval", data["name"], True, f"{len(policies)} models on the held-out "
                              f"{data['eval_fraction']:.0%} of {data['limit'] or 'all'} pairs: perplexity, agility, "
                              f"margins, KL ({e.bootstrap} bootstrap resamples)"))
        j = self.exp.judge
        for e in j.entries:
            for i, baseline in enumerate(j.baselines):
                others = _opponents(policies, j.baselines, i)
                steps.append(Step("judge", e.spec, True, f"{len(others)} models vs {baseline} x "
                                  f"{e.limit or g.limit or 'all'} prompts x {e.samples or j.samples} samples x 2 "
                                  "orders (stored verdicts are reused)"))
        return steps

    def run(self) -> None:
        self._store_experiment("running")
        try:
            for name in order(self.exp):
                if name in self.pair_files:
                    self._pairs(next(p for p in self.exp.pairs if p.name == name))
                else:
                    self._train(self.exp.entry(name))
            models = self._generate()
            if self.exp.eval:
                self._eval(models)
            self._judge(models)
        except BaseException:
            self._store_experiment("failed")
            raise
        self._store_experiment("finished")

    def _train(self, entry: RunEntry) -> None:
        from trainers.loop import train

        cfg = self.bound(entry)
        results = train(cfg, self.store, progress=self.progress)
        self.run_ids[entry.name] = results[-1].run_id
        r = results[-1]
        state = "already trained" if r.status == "already-finished" else f"trained {r.steps} steps"
        last = " ".join(f"{k}={v:.4g}" for k, v in r.last_metrics.items() if k in ("loss", "margin", "accuracy"))
        self.echo(f"train {entry.name}: {state} ({r.run_id[:12]}) {last}".rstrip())

    def _pairs(self, spec: PairsSpec) -> None:
        path = Path(self.pair_files[spec.name])
        if path.exists():
            self.echo(f"pairs {spec.name}: already built ({path.name})")
            return
        _, line = build_pairs(self.exp, spec, self.store, self.run_ids[spec.policy], self.progress,
                              self.bound_judge(spec.judge))
        self.echo(f"pairs {spec.name}: {line}")

    def _generate(self) -> dict[str, str]:
        """Sample every policy (and the base model); returns entry name → the spec the judge resolves."""
        from evalharness.generate import GenerateConfig, generate
        from evalharness.generation.base import Sampling

        g = self.exp.generate
        models = {}
        for r in self.exp.runs:
            if r.reward_model:
                continue
            if g.every_checkpoint:  # RUN:STEP, labelled name@step; the final one stays under the run's own name
                for c in self.store.checkpoints(self.run_ids[r.name]):
                    if not c["is_final"]:
                        models[f"{r.name}@{c['step']}"] = f"{self.run_ids[r.name]}:{c['step']}"
            models[r.name] = self.run_ids[r.name]
        if g.base:
            models[BASE] = self.exp.base_model
        sampling = Sampling(g.temperature, g.top_p, g.max_new_tokens, g.seed)
        cfg = GenerateConfig(list(models.values()), g.prompts, g.path, g.limit, n=g.n, sampling=sampling,
                             backend=g.backend, max_prompt_length=g.max_prompt_length, batch_size=g.batch_size)
        for report in generate(cfg, self.store, progress=self.progress):
            self.echo("generate " + report.line())
        return models

    def _eval(self, models: dict[str, str]) -> None:
        from evalharness.metrics_eval import EvalConfig, evaluate

        e = self.exp.eval
        data = {**dataclasses.asdict(self.exp.runs[0].config.data), **e.data}
        cfg = EvalConfig(checkpoints=list(models.values()), data=data, batch_size=e.batch_size,
                         bootstrap=e.bootstrap, seed=e.seed, prompts=self.exp.generate.prompts)
        for report in evaluate(cfg, self.store, progress=self.progress):
            self.echo(f"eval {report.line()}")

    def _judge(self, models: dict[str, str]) -> None:
        from evalharness.generate import resolve_target
        from evalharness.judging import JudgeConfig, judge

        j, g = self.exp.judge, self.exp.generate
        for baseline in j.baselines:
            self.baseline_keys[baseline] = (f"{REFERENCE}:{g.prompts}" if baseline == REFERENCE
                                            else resolve_target(models[baseline], self.store, None).key)
        for e in j.entries:
            bound = self.bound_judge(e.spec)
            for i, baseline in enumerate(j.baselines):
                others = [models[name] for name in _opponents(list(models), j.baselines, i)]
                if not others:
                    self.echo(f"judge {e.spec} vs {baseline}: nothing left to compare (every model was a baseline)")
                    continue
                mode: dict[str, Any] = {"vs_reference": True} if baseline == REFERENCE else {
                    "baseline": models[baseline]}
                cfg = JudgeConfig(bound, others, prompts=g.prompts, path=g.path, limit=e.limit or g.limit,
                                  samples=e.samples or j.samples, **mode)
                report = judge(cfg, self.store, progress=self.progress)
                self.judge_ids[e.spec] = report.judge
                self.echo("judge " + report.line() + (f" (vs {baseline})" if len(j.baselines) > 1 else ""))

    def leaderboard(self) -> list[str]:
        """The [leaderboard] section after a run: one judge's board on the sampled prompt set, one per baseline (plots,
        if asked, from the first)."""
        from leaderboards.board import LeaderboardConfig, build_leaderboard, leaderboard_table
        from leaderboards.render import render

        spec = self.exp.leaderboard
        name = spec.judge or self.exp.judge.entries[0].spec
        # the baseline named explicitly: the store may hold other experiments' pairs under the same judge and prompts
        keys = [self.baseline_keys[b] for b in self.exp.judge.baselines]
        boards = [build_leaderboard(self.store.path, LeaderboardConfig(self.judge_ids.get(name, name), baseline=key,
                                                                       prompt_set=self.exp.generate.prompts))
                  for key in keys]
        lines: list[str] = []
        for board in boards:
            lines += ([""] if lines else []) + render(leaderboard_table(board), spec.format).splitlines()
        board = boards[0]
        if spec.plot:
            from leaderboards.plots import write_plots

            plot_dir = Path(self.store.path).resolve().parent / spec.plot
            lines += [f"wrote {p}" for p in write_plots(self.store.path, board.rows, plot_dir, board.meta.get("judge"),
                                                        log=self.echo)]
        return lines

    def _store_experiment(self, status: str) -> None:
        exp = self.exp
        row = [exp.experiment_id, exp.name, exp.source, json.dumps(exp.resolved(), sort_keys=True, default=str),
               json.dumps(self.run_ids, sort_keys=True), code_version(), status]
        with self.store.transaction() as con:
            if con.execute("SELECT 1 FROM experiments WHERE experiment_id = ?", [row[0]]).fetchone():
                con.execute("UPDATE experiments SET runs = ?, status = ?, updated_at = ? WHERE experiment_id = ?",
                            [row[4], status, now(), row[0]])
            else:
                con.execute("INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row + [now(), now()])


def _opponents(names: list[str], baselines: list[str], i: int) -> list[str]:
    """The models judged against ``baselines[i]``: all but it, and (unless it is the reference answers) but the earlier
    baselines, whose games against it were judged in their own round (with the roles swapped, which counts the same).

    >>> _opponents(["dpo", "ipo", "sr-dpo"], ["dpo", "ipo"], 1)
    ['sr-dpo']
    """
    earlier = set() if baselines[i] == REFERENCE else set(baselines[:i])
    return [n for n in names if n != baselines[i] and n not in earlier]


def _params(params: dict[str, Any]) -> str:
    return "".join(f"{k}={v} " for k, v in sorted(params.items()))

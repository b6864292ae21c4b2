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
    [generate]                 # GenerateConfig fields; base = true also samples the base model ("base")
    [eval]                     # evaluation data for the statistical metrics (omit the table to skip)
    [judge]
    judges = ["oracle", "reward-model:path=@rm"]
    baseline = "base"          # "base", a run name, or "reference" (the prompt set's reference answers)
    [leaderboard]
    judge = "oracle"
    plot = "plots"
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalharness.config import ConfigError, TrainConfig, bind, load_toml, train_config_from_dict
from evalharness.hashing import content_hash
from evalharness.store import Store, code_version, now

SECTIONS = {"name", "defaults", "runs", "pairs", "generate", "eval", "judge", "leaderboard", "description"}
BASE = "base"


@dataclass
class PairsSpec:
    """On-policy preference pairs: ``n`` samples per prompt from ``policy``, best vs worst under ``judge``."""

    name: str
    policy: str
    prompts: str = "synthetic"
    limit: int | None = 64
    n: int = 4
    judge: str = "oracle"  # a pointwise judge (it must score responses on their own)
    temperature: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0


@dataclass
class GenerateSpec:
    prompts: str = "synthetic"
    path: str | None = None
    limit: int | None = 32
    n: int = 4  # seed 004's M = 4 samples per prompt for the Monte-Carlo KL
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0
    backend: str = "auto"
    batch_size: int = 16
    base: bool = True  # sample the starting model too: the usual baseline


@dataclass
class EvalSpec:
    """Statistical metrics on the held-out pairs: by default the runs' own data and split (``[defaults.data]``)."""

    data: dict[str, Any] = field(default_factory=dict)  # DataConfig fields over the runs' data config
    batch_size: int = 8
    bootstrap: int = 1000
    seed: int = 0


@dataclass
class JudgeSpec:
    judges: list[str] = field(default_factory=lambda: ["oracle"])
    baseline: str = BASE
    samples: int = 1


@dataclass
class LeaderboardSpec:
    judge: str | None = None  # default: the first judge
    format: str = "table"
    plot: str | None = None  # a directory for PNGs


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


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> Experiment:
    raw = load_toml(path)
    return parse_experiment(raw, str(path), overrides)


def parse_experiment(raw: dict[str, Any], source: str = "experiment", overrides: dict[str, Any] | None = None
                     ) -> Experiment:
    """Bind every section; expand grids; check every reference between entries. Loads no model."""
    unknown = set(raw) - SECTIONS
    if unknown:
        raise ConfigError(f"{source}: unknown section {sorted(unknown)[0]!r} (known: {', '.join(sorted(SECTIONS))})")
    name = str(raw.get("name") or Path(source).stem)
    defaults = copy.deepcopy(raw.get("defaults", {}))
    for key, value in (overrides or {}).items():  # --set max_steps=2 applies to every run
        defaults[key] = value
    if not raw.get("runs"):
        raise ConfigError(f"{source}: an experiment needs at least one [[runs]] entry")
    pairs = [bind(PairsSpec, dict(p), f"{source} [[pairs]] {p.get('name', i + 1)}")
             for i, p in enumerate(raw.get("pairs", []))]
    pair_names = {p.name for p in pairs}
    runs: list[RunEntry] = []
    for i, entry in enumerate(raw["runs"]):
        runs += _expand(entry, defaults, f"{source} [[runs]] {entry.get('name', i + 1)}", pair_names)
    names = [r.name for r in runs] + [p.name for p in pairs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"{source}: entry name {sorted(dupes)[0]!r} is used twice")
    _link(runs, pairs, source)
    gen = bind(GenerateSpec, dict(raw.get("generate", {})), f"{source} [generate]")
    ev = bind(EvalSpec, dict(raw["eval"]), f"{source} [eval]") if "eval" in raw else None
    judge = bind(JudgeSpec, dict(raw.get("judge", {})), f"{source} [judge]")
    board = bind(LeaderboardSpec, dict(raw.get("leaderboard", {})), f"{source} [leaderboard]")
    policies = {r.name for r in runs if not r.reward_model}
    if judge.baseline not in policies | {BASE, "reference"}:
        raise ConfigError(f"{source} [judge]: baseline {judge.baseline!r} is not a run of this experiment, "
                          f"'base' or 'reference'")
    if judge.baseline == BASE and not gen.base:
        raise ConfigError(f"{source}: the baseline is the base model but [generate] base = false")
    for spec in judge.judges:
        for ref in _run_refs(spec):
            if ref not in {r.name for r in runs if r.reward_model}:
                raise ConfigError(f"{source} [judge]: {spec!r} names @{ref}, which is not a reward-model run here")
    base_model = runs[0].config.model if not runs[0].config.init_from else str(defaults.get("model", "tiny-llama"))
    exp = Experiment(name, source, runs, pairs, gen, ev, judge, board, base_model, raw)
    _validate_runs(exp)
    return exp


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


def _validate_runs(exp: Experiment) -> None:
    from evalharness.training import validate_config

    for r in exp.runs:
        cfg = r.config
        if str(cfg.data.name).startswith("@") or (cfg.init_from and cfg.init_from in {x.name for x in exp.runs}):
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name="jsonl", path=None)
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
    needs.update({p.name: [p.policy] for p in exp.pairs})
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


def build_pairs(exp: Experiment, spec: PairsSpec, store: Store, policy_run_id: str, progress: bool) -> tuple[str, str]:
    """Sample the policy, score every sample with the judge, keep best vs worst per prompt (ties skipped).

    Written as a jsonl file of {prompt, chosen, rejected} (messages), so the pairs are an ordinary dataset the
    ``jsonl`` preset reads; the file name carries nothing run-specific, and re-building gives identical bytes.
    """
    from evalharness.generate import GenerateConfig, generate
    from evalharness.generation.base import Sampling
    from judges.base import build_judge, can_score

    judge = build_judge(spec.judge)
    if not can_score(judge):
        raise ConfigError(f"[[pairs]] {spec.name!r}: judge {spec.judge!r} does not score single responses")
    sampling = Sampling(spec.temperature, 1.0, spec.max_new_tokens, spec.seed)
    gen_cfg = GenerateConfig([policy_run_id], spec.prompts, None, spec.limit, n=spec.n, sampling=sampling,
                             score_reference=False)
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
    for pid in sorted(by_prompt):
        samples = [s for s in by_prompt[pid] if s[0].strip()]  # an empty answer is no training example
        empty += len(by_prompt[pid]) - len(samples)
        if len(samples) < 2:
            skipped += 1
            continue
        messages = tuple(Message(m["role"], m["content"]) for m in json.loads(samples[0][1]))
        scores = judge.score([(messages, t) for t, _ in samples])
        best, worst = max(range(len(samples)), key=scores.__getitem__), min(range(len(samples)), key=scores.__getitem__)
        if scores[best] == scores[worst]:
            skipped += 1
            continue
        lines.append(json.dumps({"prompt": json.loads(samples[0][1]), "chosen": samples[best][0],
                                 "rejected": samples[worst][0], "score_chosen": scores[best],
                                 "score_rejected": scores[worst]}, sort_keys=True))
    if not lines:
        raise ConfigError(f"[[pairs]] {spec.name!r}: every prompt's samples scored the same under {spec.judge!r}")
    path = pairs_path(exp, spec, store)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return str(path), (f"{len(lines)} pairs from {len(by_prompt)} prompts ({skipped} skipped: all samples tied or "
                       f"fewer than two non-empty; {empty} empty samples)")


class Runner:
    """Binds the experiment's references as entries complete, and runs (or plans) each step."""

    def __init__(self, exp: Experiment, store: Store, progress: bool = True, echo=print):
        self.exp, self.store, self.progress, self.echo = exp, store, progress, echo
        self.run_ids: dict[str, str] = {}  # entry name -> final run id
        self.judge_ids: dict[str, str] = {}  # judge spec -> the id its judgments are stored under
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
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name="jsonl",
                                                                    path=self.pair_files[cfg.data.name[1:]]))
        return cfg

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
                steps.append(Step("pairs", name, not built, f"{spec.n} samples x {spec.limit} prompts of "
                                  f"{spec.prompts!r} from {spec.policy!r}, labelled by {spec.judge}"))
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
        steps.append(Step("generate", g.prompts, True, f"{len(policies)} models x {g.limit or 'all'} prompts x "
                          f"{g.n} samples, T={g.temperature}, {g.max_new_tokens} new tokens (missing ones only)"))
        if self.exp.eval:
            e = self.exp.eval
            data = {**dataclasses.asdict(self.exp.runs[0].config.data), **e.data}
            steps.append(Step("eval", data["name"], True, f"{len(policies)} models on the held-out "
                              f"{data['eval_fraction']:.0%} of {data['limit'] or 'all'} pairs: perplexity, agility, "
                              f"margins, KL ({e.bootstrap} bootstrap resamples)"))
        j = self.exp.judge
        others = [p for p in policies if p != j.baseline]
        for spec in j.judges:
            steps.append(Step("judge", spec, True, f"{len(others)} models vs {j.baseline} x {g.limit or 'all'} "
                              f"prompts x {j.samples} samples x 2 orders (stored verdicts are reused)"))
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
        _, line = build_pairs(self.exp, spec, self.store, self.run_ids[spec.policy], self.progress)
        self.echo(f"pairs {spec.name}: {line}")

    def _generate(self) -> dict[str, str]:
        """Sample every policy (and the base model); returns entry name → the spec the judge resolves."""
        from evalharness.generate import GenerateConfig, generate
        from evalharness.generation.base import Sampling

        g = self.exp.generate
        models = {r.name: self.run_ids[r.name] for r in self.exp.runs if not r.reward_model}
        if g.base:
            models[BASE] = self.exp.base_model
        sampling = Sampling(g.temperature, g.top_p, g.max_new_tokens, g.seed)
        cfg = GenerateConfig(list(models.values()), g.prompts, g.path, g.limit, n=g.n, sampling=sampling,
                             backend=g.backend, batch_size=g.batch_size)
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
        from judges.runner import JudgeConfig, judge

        j, g = self.exp.judge, self.exp.generate
        others = [spec for name, spec in models.items() if name != j.baseline]
        mode: dict[str, Any] = {"vs_reference": True} if j.baseline == "reference" else {
            "baseline": models[j.baseline]}
        for spec in j.judges:
            bound = spec
            for ref in _run_refs(spec):
                final = [c for c in self.store.checkpoints(self.run_ids[ref]) if c["is_final"]]
                bound = bound.replace(f"@{ref}", final[-1]["path"])
            cfg = JudgeConfig(bound, others, prompts=g.prompts, path=g.path, limit=g.limit, samples=j.samples,
                              **mode)
            report = judge(cfg, self.store, progress=self.progress)
            self.judge_ids[spec] = report.judge
            self.echo("judge " + report.line())

    def leaderboard(self) -> list[str]:
        """The [leaderboard] section after a run: one judge's board on the sampled prompt set, plots if asked."""
        from leaderboards.board import LeaderboardConfig, build_leaderboard, leaderboard_table
        from leaderboards.render import render

        spec = self.exp.leaderboard
        name = spec.judge or self.exp.judge.judges[0]
        board = build_leaderboard(self.store.path, LeaderboardConfig(self.judge_ids.get(name, name),
                                                                     prompt_set=self.exp.generate.prompts))
        lines = render(leaderboard_table(board), spec.format).splitlines()
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


def _params(params: dict[str, Any]) -> str:
    return "".join(f"{k}={v} " for k, v in sorted(params.items()))

"""Running an experiment: train → (on-policy pairs) → generate → eval → judge → leaderboard, each step resumable."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from evalharness.experiment.pairs import build_pairs
from evalharness.experiment.plan import Plan, _opponents, order
from evalharness.experiment.schema import BASE, REFERENCE, Experiment, PairsSpec, RunEntry
from evalharness.store import Store, code_version


class Runner(Plan):
    """Runs each step of the plan, binding the experiment's references as entries complete."""

    def __init__(self, exp: Experiment, store: Store, progress: bool = True, echo=print):
        super().__init__(exp, store, progress, echo)
        self.judge_ids: dict[str, str] = {}  # judge spec -> the id its judgments are stored under
        self.baseline_keys: dict[str, str] = {}  # baseline name -> its checkpoint key in generations
        # the held-out data this experiment's eval measured: a model shared with another experiment (one SFT run) may
        # also hold metrics on that one's held-out pairs, which this experiment's board must not mix in
        self.held_out: str | None = None
        self.board_models: tuple[str, ...] = ()  # the checkpoint keys this experiment judged (set by its judge step)

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
        line = build_pairs(spec, self.store, self.run_ids[spec.policy], path, self.progress,
                           self.bound_judge(spec.judge))
        self.echo(f"pairs {spec.name}: {line}")

    def _generate(self) -> dict[str, str]:
        """Sample every policy (and the base model); returns entry name → the spec the judge resolves."""
        from evalharness.generate import ENGINE_SETTINGS, GenerateConfig, generate

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
        sampling = self.sampling()
        cfg = GenerateConfig(list(models.values()), g.prompts, g.path, g.limit, n=g.n, sampling=sampling,
                             backend=g.backend, max_prompt_length=g.max_prompt_length, batch_size=g.batch_size,
                             **{k: getattr(g, k) for k in ENGINE_SETTINGS})
        for report in generate(cfg, self.store, progress=self.progress):
            self.echo("generate " + report.line())
        return models

    def sampling(self):
        """The experiment's one sampling setting: what it generates, judges and shows on its board (on-policy pairs
        sample at their own settings, which the store also holds for the same models)."""
        from evalharness.generation.base import Sampling

        g = self.exp.generate
        return Sampling(g.temperature, g.top_p, g.max_new_tokens, g.seed)

    def _eval(self, models: dict[str, str]) -> None:
        from evalharness.evaluation import EvalConfig, evaluate
        from leaderboards.selection import HELD_OUT_METRICS, HeldOutKey

        e = self.exp.eval
        data = {**dataclasses.asdict(self.exp.runs[0].config.data), **e.data}
        cfg = EvalConfig(checkpoints=list(models.values()), data=data, batch_size=e.batch_size,
                         bootstrap=e.bootstrap, seed=e.seed, prompts=self.exp.generate.prompts)
        datasets = set()
        for report in evaluate(cfg, self.store, progress=self.progress):
            self.echo(f"eval {report.line()}")
            datasets |= {HeldOutKey(r.dataset, r.settings.get("max_length"), r.settings.get("max_prompt_length"),
                                    r.settings.get("prompt_style")) for r in report.rows if r.metric in HELD_OUT_METRICS}
        self.held_out = datasets.pop().name if len(datasets) == 1 else None

    def _judge(self, models: dict[str, str]) -> None:
        from evalharness.generate import resolve_target
        from evalharness.judging import JudgeConfig, judge

        j, g = self.exp.judge, self.exp.generate
        for baseline in j.baselines:
            self.baseline_keys[baseline] = (f"{REFERENCE}:{g.prompts}" if baseline == REFERENCE
                                            else resolve_target(models[baseline], self.store, None).key)
        # The board shows this experiment's models alone: a store other experiments share holds their pairs under
        # the same judge, prompts and baseline too.
        self.board_models = tuple(sorted({resolve_target(spec, self.store, None).key for spec in models.values()}
                                         | set(self.baseline_keys.values())))
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
                                  samples=e.samples or j.samples, generate={"sampling": self.sampling()}, **mode)
                report = judge(cfg, self.store, progress=self.progress)
                self.judge_ids[e.spec] = report.judge
                self.echo("judge " + report.line() + (f" (vs {baseline})" if len(j.baselines) > 1 else ""))

    def leaderboard(self) -> list[str]:
        """The [leaderboard] section after a run: one judge's board on the sampled prompt set, one per baseline (plots,
        if asked, from the first)."""
        from evalharness.evalkey import canonical, sampling_id
        from leaderboards.board import LeaderboardConfig, build_leaderboard, leaderboard_table
        from leaderboards.render import render

        spec = self.exp.leaderboard
        name = spec.judge or self.exp.judge.entries[0].spec
        # the baseline named explicitly: the store may hold other experiments' pairs under the same judge and prompts
        keys = [self.baseline_keys[b] for b in self.exp.judge.baselines]
        sid = sampling_id(canonical(dataclasses.asdict(self.sampling())))
        boards = [build_leaderboard(self.store.path, LeaderboardConfig(self.judge_ids.get(name, name), baseline=key,
                                                                       prompt_set=self.exp.generate.prompts,
                                                                       sampling=sid, held_out=self.held_out,
                                                                       models=self.board_models or None))
                  for key in keys]
        lines: list[str] = []
        for board in boards:
            lines += ([""] if lines else []) + render(leaderboard_table(board), spec.format).splitlines()
        board = boards[0]
        lines += self.claims(board.meta)
        if spec.plot:
            from leaderboards.plots import write_plots

            plot_dir = Path(self.store.path).resolve().parent / spec.plot
            lines += [f"wrote {p}" for p in write_plots(self.store.path, board.rows, plot_dir, board.meta.get("judge"),
                                                        log=self.echo)]
        return lines

    def claims(self, meta: dict[str, Any]) -> list[str]:
        """The [[claims]] evaluated on the board whose meta is ``meta``, stored, and the lines that say their
        verdicts."""
        from evalharness.claim_eval import evaluate_on_board, store_verdicts
        from leaderboards.claims import render_verdicts

        if not self.exp.claims:
            return []
        verdicts = evaluate_on_board(self.store.path, meta, self.exp.claims)
        store_verdicts(self.store, self.exp.experiment_id, meta, verdicts)
        return [""] + render_verdicts(verdicts)

    def _store_experiment(self, status: str) -> None:
        from evalharness.store_rows import ExperimentRecord

        exp = self.exp
        self.store.upsert_experiment(ExperimentRecord(
            exp.experiment_id, exp.name, exp.source, json.dumps(exp.resolved(), sort_keys=True, default=str),
            json.dumps(self.run_ids, sort_keys=True), code_version(), status))

"""The plan of an experiment against a store: the order of its entries, where each writes, each run's id, and what is
already done (``evalharness run --dry-run``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalharness.config import ConfigError, TrainConfig
from evalharness.experiment.schema import BASE, REFERENCE, Experiment, PairsSpec, RunEntry, pairs_preset, run_refs
from evalharness.store import Store


@dataclass
class Step:
    """One line of the plan."""

    kind: str  # train | pairs | generate | eval | judge
    name: str
    todo: bool  # False: already in the store
    detail: str


def order(exp: Experiment) -> list[str]:
    """Run and pairs entries in an order where each comes after what it needs (a cycle is an error)."""
    needs: dict[str, list[str]] = {r.name: r.after for r in exp.runs}
    needs.update({p.name: [p.policy, *run_refs(p.judge)] for p in exp.pairs})
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
    """Beside the store, under the experiment's and the entry's names (both checked by the run-name rule)."""
    return Path(store.path).resolve().parent / "experiments" / exp.name / f"{spec.name}.jsonl"


class Plan:
    """Binds the experiment's references (run names to run ids, ``@pairs`` to files, ``@run`` to checkpoints) and
    lists the steps with what the store already holds."""

    def __init__(self, exp: Experiment, store: Store, progress: bool = True, echo=print):
        self.exp, self.store, self.progress, self.echo = exp, store, progress, echo
        self.run_ids: dict[str, str] = {}  # entry name -> final run id
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
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name=pairs_preset(self.exp,
                                                                                                 cfg.data.name),
                                                                    path=self.pair_files[cfg.data.name[1:]]))
        return cfg

    def bound_judge(self, spec: str) -> str:
        """A judge spec with each ``@run`` (a reward-model run of this experiment) and each ``path=RUN`` (a run in the
        store) → that run's final checkpoint directory, by the lookup ``judge`` and ``eval`` use
        (``evalharness.checkpoints``): the weights checked against the run's fingerprint, a name of several runs an
        error listing them. ``@run`` is looked up by the entry's own run id, so another experiment's run of the same
        name never stands in for it."""
        from evalharness.checkpoints import final_checkpoint, with_run_checkpoints

        for ref in run_refs(spec):
            run_id = self.run_ids.get(ref) or self.final_run_id(self.exp.entry(ref))
            try:
                found = final_checkpoint(run_id, self.store)
            except ConfigError as e:
                raise ConfigError(f"{self.exp.source} {spec!r}: @{ref}: {e}") from None
            if found is None:
                raise ConfigError(f"{self.exp.source} {spec!r}: @{ref}: run {run_id[:12]} is not in the store "
                                  "(train it first: evalharness run)")
            spec = spec.replace(f"@{ref}", found)
        try:
            return with_run_checkpoints(spec, self.store)
        except ConfigError as e:
            raise ConfigError(f"{self.exp.source}: {spec!r}: {e}") from None

    def final_run_id(self, entry: RunEntry) -> str:
        from trainers.loop import plan_stages, run_id_of

        return run_id_of(plan_stages(self.bound(entry))[-1][0])

    def finished(self, run_id: str) -> bool:
        run = self.store.get_run(run_id) if Path(self.store.path).exists() else None
        return bool(run and run["status"] == "finished")

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
            seed = f"seed {cfg.seed} of {entry.group}, " if entry.group else ""
            steps.append(Step("train", name, not self.finished(rid),
                              f"{what}: {seed}{cfg.loss} {_params(cfg.params)}{cfg.max_steps} steps x "
                              f"{cfg.batch_size} from {cfg.init_from or cfg.model} (run {rid[:12]})"))
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

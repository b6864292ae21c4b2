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
``judge.judges=["oracle"]``; a key that names no section is a ``[defaults]`` setting, read as on ``evalharness train``
(``max_steps=2``, ``data.limit=8``, ``beta=0.1``); see ``parse``.

The package: ``schema`` (the sections as typed specs, the parsed ``Experiment``) ← ``parse`` (scales, ``--set``, grids,
references) ← ``plan`` (order, where each entry writes, run ids, ``--dry-run``) ← ``runner`` (``Runner``), which also
uses ``pairs`` (on-policy pairs).
"""

from evalharness.config import parse_value
from evalharness.experiment.pairs import build_pairs
from evalharness.experiment.parse import apply_scale, load_experiment, merge_tables, nest_overrides, parse_experiment
from evalharness.experiment.plan import Plan, Step, order, pairs_path
from evalharness.experiment.runner import Runner
from evalharness.experiment.schema import (
    BASE,
    PAIR_KINDS,
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
    check_judge_spec,
)

__all__ = ["BASE", "PAIR_KINDS", "REFERENCE", "SECTIONS", "EvalSpec", "Experiment", "GenerateSpec", "JudgeEntry",
           "JudgeSpec", "LeaderboardSpec", "PairsSpec", "Plan", "RunEntry", "Runner", "Step", "apply_scale",
           "build_pairs", "check_judge_spec", "load_experiment", "merge_tables", "nest_overrides", "order",
           "pairs_path", "parse_experiment", "parse_value"]

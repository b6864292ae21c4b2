"""The schema of an experiment: its sections as typed specs, each checked when it is bound, and the bound experiment.

Every value of every section is in range once ``parse_experiment`` returns, so ``evalharness run --dry-run`` refuses
what a real run would fail on after minutes of training: ``[generate] max_new_tokens = 0``, ``temperature = -2``,
``n = -3``, ``runs = 5``, a judge spec with ``timeout=nan``. Each error is one line naming the file and the section.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from evalharness import limits
from evalharness.config import ConfigError, DataConfig, TrainConfig, bind, check_text
from evalharness.hashing import content_hash

SECTIONS = {"name", "defaults", "runs", "pairs", "generate", "eval", "judge", "leaderboard", "description", "scales",
            "claims"}
BASE = "base"
REFERENCE = "reference"
PAIR_KINDS = {"pairs": "jsonl", "scored": "scored-samples"}  # kind -> the dataset preset that reads its file
_TABLES = ("defaults", "generate", "eval", "judge", "leaderboard", "scales")
_LISTS_OF_TABLES = ("runs", "pairs")


def limit_setting(value: Any) -> int | None:
    """A prompt count: a positive integer, or "all" (TOML has no null)."""
    if value is None or value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"limit must be a positive integer or \"all\", got {value!r}")
    return value


def check_shapes(raw: dict[str, Any], source: str) -> None:
    """Each section has the shape its binder reads (``runs = 5`` would otherwise be a TypeError)."""
    for key in ("name", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{source}: {key} must be a string, got {raw[key]!r}")
        check_text(f"{source}: {key}", raw.get(key))
    for key in _TABLES:
        if key in raw and not isinstance(raw[key], dict):
            raise ConfigError(f"{source}: [{key}] must be a table, got {raw[key]!r}")
    for key in _LISTS_OF_TABLES:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            raise ConfigError(f"{source}: {key} must be a list of tables ([[{key}]] entries), got {value!r}")
        for i, entry in enumerate(value):
            name = entry.get("name")
            if name is not None and not isinstance(name, str):
                raise ConfigError(f"{source} [[{key}]] {i + 1}: name must be a string, got {name!r}")


def check_seeds(value: Any, where: str) -> list[int]:
    """``seeds = [0, 1, 2]``: the training seeds a run is replicated over, distinct and in TrainConfig's range."""
    if not isinstance(value, list) or not value or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers, got {value!r}")
    if len(set(value)) < len(value):
        raise ConfigError(f"{where}: seeds must be distinct, got {value!r}")
    for v in value:
        try:
            limits.seed("seeds", v)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return list(value)


def bind_spec(cls: type, values: dict[str, Any], where: str):
    """``config.bind`` with the spec's own range errors prefixed by where they are, like the binder's own."""
    try:
        return bind(cls, values, where)
    except (ConfigError, LookupError) as e:  # LookupError: an unknown backend, with its "did you mean"
        if str(e).startswith(where):
            raise
        raise ConfigError(f"{where}: {e}") from None


def _check_sampling(spec: Any, top_p: float = 1.0) -> None:
    from evalharness.generation.base import Sampling

    Sampling(spec.temperature, top_p, spec.max_new_tokens, spec.seed)  # GenerateConfig's own checks, now
    limits.count("max_prompt_length", spec.max_prompt_length)
    check_text("backend", spec.backend)
    check_text("prompts", spec.prompts)
    check_text("path", spec.path)
    if spec.backend != "auto":
        from evalharness.plugins import registry

        registry("generators").entry(spec.backend)


def check_judge_spec(spec: str, where: str) -> None:
    """A judge spec's name is registered and, where the judge can check its arguments without being built (the llm
    judge: no key, no network), they are in range."""
    from evalharness.plugins import registry
    from judges.base import parse_judge_spec

    check_text(where, spec)
    try:
        name, args = parse_judge_spec(spec)
        factory = registry("judges").get(name)
        check = getattr(factory, "check_spec", None)
        if check is not None:
            check(args)
    except (ValueError, LookupError) as e:
        raise ConfigError(f"{where}: {e}") from None


@dataclass
class PairsSpec:
    """On-policy preference pairs: ``n`` samples per prompt from ``policy``, best vs worst under ``judge``."""

    name: str
    policy: str
    prompts: str = "synthetic"
    path: str | None = None  # the prompt set's file, for sets read from disk (hh-rlhf, jsonl)
    limit: int | str | None = 64  # "all": every prompt of the set
    n: int = 4
    judge: str = "oracle"  # a pointwise judge (it must score responses on their own); "reward-model:path=@rm" works
    kind: str = "pairs"  # "pairs": best vs worst per prompt; "scored": all n samples with their scores (K = n)
    temperature: float = 1.0
    max_new_tokens: int = 64
    max_prompt_length: int = 1024  # longer prompts keep their last tokens (GenerateConfig's rule)
    seed: int = 0
    backend: str = "auto"

    def __post_init__(self):
        self.limit = limit_setting(self.limit)
        if self.kind not in PAIR_KINDS:
            raise ConfigError(f"kind must be one of {', '.join(PAIR_KINDS)}, got {self.kind!r}")
        if self.n < 2:
            raise ConfigError(f"n must be at least 2 (a pair needs two samples), got {self.n}")
        _check_sampling(self)


@dataclass
class GenerateSpec:
    prompts: str = "synthetic"
    path: str | None = None
    limit: int | str | None = 32  # "all": every prompt of the set
    n: int = 4  # seed 004's M = 4 samples per prompt for the Monte-Carlo KL
    temperature: float | str = 0.8  # 0: greedy; a rule of temperatures.toml ("fastchat"): per prompt category
    top_p: float = 1.0
    max_new_tokens: int = 64
    max_prompt_length: int = 1024  # longer prompts keep their last tokens (GenerateConfig's rule)
    seed: int = 0
    backend: str = "auto"
    batch_size: int = 16
    base: bool = True  # sample the starting model too: the usual baseline
    every_checkpoint: bool = False  # also sample each run's saved intermediate checkpoints (a frontier over training)
    # Engine settings, as generate's flags (GenerateConfig): how the samples are computed, not which.
    data_parallel: int = 1
    dtype: str | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    ray_address: str | None = None

    def __post_init__(self):
        from evalharness.generate import check_engine
        from evalharness.generation.base import parse_temperature

        self.limit = limit_setting(self.limit)
        if isinstance(self.temperature, str):  # a rule stays a name (Sampling refuses any other word); --set's ".5"
            self.temperature = parse_temperature(self.temperature)  # arrives as text and is a number
        limits.count("n (samples per prompt)", self.n)  # 0 would sample nothing and judge nothing, silently
        limits.count("batch_size", self.batch_size)
        _check_sampling(self, self.top_p)
        check_engine(self)


@dataclass
class EvalSpec:
    """Statistical metrics on the held-out pairs: by default the runs' own data and split (``[defaults.data]``)."""

    data: dict[str, Any] = field(default_factory=dict)  # DataConfig fields over the runs' data config
    batch_size: int = 8
    bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self):
        limits.count("batch_size", self.batch_size)
        limits.count("bootstrap", self.bootstrap, 0, limits.MAX_BOOTSTRAP)
        limits.seed("seed", self.seed)
        bind(DataConfig, dict(self.data), "data")  # the fields and their ranges; merged over the runs' data later


@dataclass
class JudgeEntry:
    """One judge of [judge] judges: a spec string, or a table {spec, limit, samples} for a judge that sees fewer
    prompts or samples than the others (seed 004 asks GPT-4 about 100 prompts, its reward model about 512 x 4)."""

    spec: str
    limit: int | None = None  # None: [generate] limit
    samples: int | None = None  # None: [judge] samples

    def __post_init__(self):
        self.limit = limit_setting(self.limit)
        limits.count("samples", self.samples, none=True)


@dataclass
class JudgeSpec:
    judges: list[str | dict[str, Any]] = field(default_factory=lambda: ["oracle"])
    baseline: str | list[str] = BASE  # a list judges every model against each (a paper table's several columns)
    samples: int = 1

    def __post_init__(self):
        limits.count("samples", self.samples)

    @property
    def baselines(self) -> list[str]:
        return [self.baseline] if isinstance(self.baseline, str) else list(self.baseline)

    @property
    def entries(self) -> list[JudgeEntry]:
        return [JudgeEntry(j) if isinstance(j, str) else JudgeEntry(**j) for j in self.judges]


@dataclass
class LeaderboardSpec:
    judge: str | None = None  # default: the first judge
    format: str = "table"
    plot: str | None = None  # a directory for PNGs

    def __post_init__(self):
        from leaderboards.render import FORMATS

        if self.format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        check_text("judge", self.judge)
        check_text("plot", self.plot)


@dataclass
class RunEntry:
    """One run of the experiment (one per grid point)."""

    name: str  # entry name, grid suffix included
    config: TrainConfig
    after: list[str]  # run or pairs entries it needs first
    reward_model: bool
    group: str | None = None  # a seed replicate's configuration (``<group>-seed<k>``); None: not replicated


@dataclass
class Experiment:
    """A parsed experiment: every section bound, grids expanded, references between entries checked."""

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
    # [[claims]] (leaderboards.claims.Claim), evaluated on the board after a run; not part of the experiment's id,
    # so adding or editing a claim re-evaluates it without re-running anything
    claims: list[Any] = field(default_factory=list)

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


def run_refs(spec: str) -> list[str]:
    """The runs a judge spec names by ``@run`` (reward models of this experiment).

    >>> run_refs("reward-model:path=@rm,batch_size=8")
    ['rm']
    """
    return [part.split("@", 1)[1].split(",")[0] for part in spec.split("=")[1:] if part.startswith("@")]


def pairs_preset(exp: Experiment, ref: str) -> str:
    """The dataset preset that reads the file of the [[pairs]] entry ``ref`` ("@name")."""
    return PAIR_KINDS[next(p.kind for p in exp.pairs if p.name == ref[1:])]

"""What a bare `evalharness judge` judges: each missing choice made from the store by a stated rule.

- models: every finished run's final checkpoint (reward models aside), each against its own baseline: the run given
  as its ``init_from`` for a stage run, else its reference (the model it started from). Runs judged before are kept:
  their stored verdicts are reused, so a re-run makes no new call and prints the board again.
- judge: the newest ``bradley-terry`` run of this store; else PairRM when its weights resolve offline; else the
  synthetic task's oracle for runs trained on it; else an LLM judge when ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is
  set; else a ``ConfigError`` saying how to supply one.
- prompts: held-out prompts of the data the runs trained on, never a training prompt: the synthetic task's prompt set;
  HH-RLHF's test split (the hub's, or the ``test`` file beside a local ``train`` file); otherwise the eval split of
  the run's data (``evalharness.data.split``) less any prompt a training pair also has, as a prompt set named by its
  content hash. At most ``DEFAULT_PROMPTS`` of them unless a limit is given.

Runs that differ in data or baseline get a board each. Every explicit choice overrides its rule.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalharness.config import ConfigError
from evalharness.hashing import content_hash
from evalharness.store import Store

DEFAULT_PROMPTS = 64
REWARD_LOSS = "bradley-terry"
SYNTHETIC = ("synthetic", "synthetic-scored")
LLM_JUDGE = "gpt-4o"
NO_JUDGE = ("no judge for {what}: train a reward model (`evalharness train --loss bradley-terry`), put PairRM in the "
            "HF cache (`huggingface-cli download llm-blender/PairRM-hf`), set OPENAI_API_KEY or OPENAI_BASE_URL for "
            "an LLM judge, or pass --judge")


@dataclass
class Board:
    models: list[str]  # RUN_ID:STEP of each final checkpoint
    labels: list[str]
    baseline: str
    baseline_label: str
    prompts: str
    path: str | None
    prompt_list: list | None  # the held-out prompts themselves, where no preset loads them
    limit: int | None
    judge: str
    choices: list[str] = field(default_factory=list)  # the rule behind each choice, one line each

    def lines(self, samples: int) -> list[str]:
        n = len(self.prompt_list) if self.prompt_list is not None else self.limit
        count = f"{n} prompts" if n is not None else "every prompt"
        calls = 2 * n * samples * len(self.models) if n is not None else None
        return [f"board: {', '.join(self.labels)} vs {self.baseline_label}",
                *(f"  {c}" for c in self.choices),
                f"  {count} x {samples} sample(s) per model; "
                + (f"at most {calls}" if calls is not None else "2 per prompt and model")
                + " judge calls (stored verdicts reused, no call)",
                f"  cost: {judge_cost(self.judge, calls)}"]


# A paid judge's call, as an upper bound: the template with the question and two answers of the default 256 new
# tokens each, and the judge's whole max_tokens back.
PROMPT_TOKENS = 1500


def judge_cost(judge: str, calls: int | None) -> str:
    name, _, args = judge.partition(":")
    if name not in ("llm", "gpt-4", "gpt-4o"):
        return "none (a local judge)"
    opts = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
    try:
        price_in, price_out = float(opts.get("price_in", 0)), float(opts.get("price_out", 0))
        max_tokens = int(opts.get("max_tokens", 1024))
    except ValueError:
        price_in = price_out = 0.0
    if not (price_in or price_out) or calls is None:
        return "paid per call at the endpoint's price (give the judge price_in and price_out to have it estimated)"
    most = calls * (PROMPT_TOKENS * price_in + max_tokens * price_out) / 1e6
    return f"at most {most:.2f} ({calls} calls of about {PROMPT_TOKENS}+{max_tokens} tokens)"


def plan(store: Store, judge: str | None = None, models: list[str] | None = None, baseline: str | None = None,
         prompts: str | None = None, path: str | None = None, limit: int | None = None) -> list[Board]:
    runs = _policy_runs(store, models)
    if not runs:
        raise ConfigError("no finished run to judge in this store: train one (`evalharness train --loss dpo`) or "
                          "pass --judge and --models")
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    lists: dict[str, list | None] = {}
    seen: dict[str, tuple] = {}
    for run, ckpt in runs:  # the judge before the prompts: a missing judge is said before any data is read
        cfg = _config(run)
        base, base_label, why_base = (baseline, baseline, "given") if baseline else _baseline(store, cfg)
        data = cfg.get("data") or {}
        spec, why_judge = (judge, "given") if judge else choose_judge(store, data, base_label)
        if prompts:
            p_name, p_path, p_list, why_prompts = prompts, path, None, "given"
        else:  # each distinct data read once
            dkey = json.dumps(data, sort_keys=True)
            seen[dkey] = seen.get(dkey) or held_out_prompts(data)
            p_name, p_path, p_list, why_prompts = seen[dkey]
        lists[p_name] = p_list
        key = (base, base_label, why_base, spec, why_judge, p_name, p_path, why_prompts)
        groups.setdefault(key, []).append((run, ckpt))
    boards = []
    for (base, base_label, why_base, spec, why_judge, p_name, p_path, why_prompts), members in groups.items():
        p_list = lists[p_name]
        n = limit if limit is not None else DEFAULT_PROMPTS
        if p_list is not None:
            p_list = p_list[:n]
        board = Board([f"{r['run_id']}:{c['step']}" for r, c in members], [f"{r['name']}:{c['step']}" for r, c in
                      members], base, base_label, p_name, p_path, p_list, None if p_list is not None else n, spec)
        board.choices = [f"models: {why_models(models)}",
                         f"baseline: {base_label} ({why_base})",
                         f"judge: {spec} ({why_judge})",
                         f"prompts: {p_name}{' ' + p_path if p_path else ''} ({why_prompts}; "
                         f"{'first ' + str(n) if limit is not None else f'at most {n}, the default'})"]
        boards.append(board)
    if len(boards) > 1:
        differ = [what for what, attr in (("baseline", "baseline"), ("judge", "judge"), ("held-out prompts (their "
                  "training data)", "prompts")) if len({getattr(b, attr) for b in boards}) > 1]
        for i, b in enumerate(boards, 1):
            b.choices.insert(0, f"group {i} of {len(boards)}: the runs differ in {' and '.join(differ)}, so each "
                                "group gets a board of its own")
    return boards


def why_models(models: list[str] | None) -> str:
    if models:
        return "given"
    return ("every finished run's final checkpoint, reward models aside; those judged before are read from the "
            "store")


# ---------------------------------------------------------------------------------------------------------- runs


def _config(run: dict[str, Any]) -> dict[str, Any]:
    return json.loads(run["config"]) if isinstance(run["config"], str) else (run["config"] or {})


def _final(store: Store, run: dict[str, Any]) -> dict[str, Any] | None:
    finals = [c for c in store.checkpoints(run["run_id"]) if c["is_final"]]
    return finals[-1] if finals else None


def _policy_runs(store: Store, names: list[str] | None) -> list[tuple[dict, dict]]:
    if names:
        out = []
        for name in names:
            run = store.get_run(name.partition(":")[0])
            ckpt = _final(store, run) if run else None
            if ckpt is None:
                raise ConfigError(f"{name!r} is not a finished run of this store; pass --judge and --baseline to "
                                  "judge plain models")
            out.append((run, ckpt))
        return out
    runs = [r for r in store.runs() if r["status"] == "finished" and r["loss"] != REWARD_LOSS]
    return [(r, c) for r in runs if (c := _final(store, r)) is not None]


def _baseline(store: Store, cfg: dict[str, Any]) -> tuple[str, str, str]:
    """(spec, label, why) of the model a run is measured against."""
    init = cfg.get("init_from")
    if init and not Path(init).is_dir():
        run = store.get_run(init)
        ckpt = _final(store, run) if run else None
        if ckpt is None:
            raise ConfigError(f"the run's init_from {init!r} has no final checkpoint to be its baseline")
        return f"{run['run_id']}:{ckpt['step']}", f"{run['name']}:{ckpt['step']}", "the run it was initialised from"
    ref = cfg.get("reference") or init or cfg.get("model")
    return ref, ref, "its reference, the model it started from"


# --------------------------------------------------------------------------------------------------------- judge


def pairrm_offline() -> str | None:
    """PairRM's checkpoint directory when it resolves with no network, else None."""
    from evalharness.models import ModelError, resolve_model
    from judges.pairrm import HUB_ID

    try:
        return str(resolve_model(HUB_ID, offline=True))
    except (ModelError, OSError):
        return None


def choose_judge(store: Store, data: dict[str, Any], what: str = "these runs") -> tuple[str, str]:
    rms = [r for r in store.runs() if r["status"] == "finished" and r["loss"] == REWARD_LOSS]
    rms = [(r, c) for r in rms if (c := _final(store, r)) is not None]
    if rms:
        run, ckpt = max(rms, key=lambda rc: (rc[0]["created_at"], rc[1]["step"]))
        return f"reward-model:path={ckpt['path']}", f"the newest {REWARD_LOSS} run of this store, {run['name']}"
    found = pairrm_offline()
    if found:
        return f"pairrm:path={found}", "PairRM, found offline"
    if synthetic_task(data):
        return "oracle", "the synthetic task's gold reward; no reward model or PairRM here"
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        return LLM_JUDGE, "an LLM judge: OPENAI_API_KEY or OPENAI_BASE_URL is set"
    raise ConfigError(NO_JUDGE.format(what=f"runs trained on {data.get('name')!r} (against {what})"))


# ------------------------------------------------------------------------------------------------------- prompts


def synthetic_task(data: dict[str, Any]) -> bool:
    """Whether ``data`` is the embedded review task (its pairs or its scored samples), whose items are its prompts."""
    return data.get("name", "synthetic") in SYNTHETIC and not data.get("path")


def held_out_prompts(data: dict[str, Any]) -> tuple[str, str | None, list | None, str]:
    """(prompt set, its file, the prompts where no preset loads them, why) for runs trained on ``data``."""
    name, path = data.get("name", "synthetic"), data.get("path")
    if synthetic_task(data):
        return "synthetic", None, None, "the synthetic task's evaluation prompts"
    if name == "hh-rlhf":
        if not path:
            return "hh-rlhf", None, None, "HH-RLHF's test split (the hub's)"
        test = _test_beside(Path(path))
        if test is not None:
            return "hh-rlhf", str(test), None, "HH-RLHF's test split beside the training file"
    return _eval_split(data)


def _test_beside(train: Path) -> Path | None:
    if "train" not in train.name:
        return None
    test = train.with_name(train.name.replace("train", "test"))
    return test if test.is_file() else None


def _eval_split(data: dict[str, Any]) -> tuple[str, None, list, str]:
    from evalharness.config import DataConfig, bind
    from evalharness.data.loaders import DatasetSpec, load
    from evalharness.data.prompts import make_prompt
    from evalharness.data.split import split_examples
    from evalharness.data.types import as_messages

    cfg = bind(DataConfig, data, "[data]")
    try:
        spec = DatasetSpec(name=cfg.name, path=cfg.path, split=cfg.split, columns=dict(cfg.columns), limit=cfg.limit)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    train, held = split_examples(load(spec).examples, cfg.eval_fraction, seed=0)
    seen = {as_messages(_prompt_of(ex)) for ex in train}
    messages = []
    for ex in held:
        m = as_messages(_prompt_of(ex))
        if m not in seen:
            seen.add(m)
            messages.append(m)
    if not messages:
        raise ConfigError(f"the runs' data {cfg.name!r} holds out no prompt that training did not see "
                          f"(eval_fraction={cfg.eval_fraction}); pass --prompts")
    set_name = f"held-out:{cfg.name}@{content_hash(['held-out-prompts', messages], 8)}"
    prompts = [make_prompt(set_name, None, i, True, messages=m) for i, m in enumerate(messages)]
    return set_name, None, prompts, f"the eval split of the runs' data ({cfg.eval_fraction:g} held out)"


def _prompt_of(example) -> Any:
    return example.x_pos if hasattr(example, "x_pos") else example.x

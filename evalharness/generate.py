"""`evalharness generate`: sample checkpoints on a prompt set into the store, resumably.

Each sample is keyed by hash(checkpoint, prompt, turn, sampling, backend, sample index), so a re-run generates only
what is missing and an interrupted run resumes where it stopped (rows are written every chunk). Each request has its
own seed derived from (seed, prompt, turn, sample index): a sample does not depend on the batch it was drawn in.
Multi-turn sets (MT-Bench) condition turn t on this sample's own answer at turn t-1. After sampling, every sample is
scored by the reference model at the same temperature, so KL needs no re-generation.

Temperature 0 decodes greedily; its log-probs (policy and reference) are at temperature 1, and the ``temperature``
column of a generation holds the temperature its log-probs are at (``Sampling.logprob_temperature``), which is what
reference scoring and KL read. A greedy sample is not a draw from the policy, so KL over greedy samples is not a
Monte-Carlo estimate of KL(π || ref). A temperature rule (``--temperature fastchat``) samples each prompt at its
category's temperature; the rule's name is in the sampling JSON and the key, each row's column has its own temperature.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalharness.checkpoints import checkpoint_path
from evalharness.config import ConfigError
from evalharness.data.types import Message, Prompt
from evalharness.generation.base import Request, Sampling
from evalharness.hashing import content_hash
from evalharness.store import Store, now
from evalharness.store_rows import GenerationRecord, PromptRecord


@dataclass
class GenerateConfig:
    checkpoints: list[str]  # RUN[:STEP] (a run id, prefix or name) or a model name/path
    prompts: str = "synthetic"
    path: str | None = None
    limit: int | None = None
    columns: dict[str, str] = field(default_factory=dict)
    n: int = 4  # samples per prompt: seed 004 uses 4 for its Monte-Carlo KL
    sampling: Sampling = field(default_factory=Sampling)
    backend: str = "auto"
    reference: str | None = None  # default: the run's reference (its starting weights); a plain model is its own
    max_prompt_length: int = 1024
    prompt_style: str = "auto"
    batch_size: int = 16
    chunk: int = 64  # requests per write: an interruption loses at most this many samples
    score_reference: bool = True
    prompt_list: list[Prompt] | None = None  # the prompts themselves, where no preset loads them (held-out ones)
    # Engine settings: how samples are computed, not which (none is part of a sample's key).
    data_parallel: int = 1  # engines in worker processes, the requests dealt between them (one GPU or TP group each)
    dtype: str | None = None  # None: the backend's own default (float32)
    tensor_parallel_size: int | None = None  # vllm only: GPUs per engine
    gpu_memory_utilization: float | None = None  # vllm only: sizes the KV cache (otherwise a fixed 256 MiB)
    max_model_len: int | None = None  # vllm only: None keeps the backend's 2048, capped at the model's maximum
    ray_address: str | None = None  # the engines run as actors on this Ray cluster ("auto", "local", host:port)

    def __post_init__(self):
        from evalharness import limits
        from evalharness.config import check_text

        if not isinstance(self.checkpoints, list) or not self.checkpoints:
            raise ConfigError("give at least one checkpoint (RUN[:STEP] or a model name/path)")
        for name in ("checkpoints", "prompts", "path", "backend", "reference"):
            for value in self.checkpoints if name == "checkpoints" else [getattr(self, name)]:
                check_text(name, value)
        limits.count("limit", self.limit, none=True)  # 0 prompts would store nothing and say nothing
        limits.count("n (samples per prompt)", self.n)
        for name in ("max_prompt_length", "batch_size", "chunk"):
            limits.count(name, getattr(self, name))
        if not isinstance(self.sampling, Sampling):
            raise ConfigError(f"sampling must be a Sampling, got {self.sampling!r}")
        if self.prompt_style not in ("auto", "chat", "plain"):
            raise ConfigError(f"prompt_style must be auto, chat or plain, got {self.prompt_style!r}")
        check_engine(self)


VLLM_ONLY = ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len")
ENGINE_SETTINGS = ("data_parallel", "dtype", *VLLM_ONLY, "ray_address")  # the same keys in an experiment's [generate]


def check_engine(cfg) -> None:
    """The engine settings of a GenerateConfig or an experiment's [generate]: ranges and names, before anything runs."""
    from evalharness import limits
    from evalharness.models import DTYPES

    limits.count("data_parallel", cfg.data_parallel)
    limits.count("tensor_parallel_size", cfg.tensor_parallel_size, none=True)
    limits.count("max_model_len", cfg.max_model_len, 2, none=True)
    if cfg.dtype is not None and cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {cfg.dtype!r}")
    u = cfg.gpu_memory_utilization
    if u is not None and not (isinstance(u, (int, float)) and not isinstance(u, bool) and 0 < u <= 1):
        raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {u!r}")
    from evalharness.generation.ray_parallel import check_ray_address

    check_ray_address(cfg.ray_address)


def engine_kwargs(cfg: GenerateConfig, backend: str) -> dict[str, Any]:
    """What the backend's constructor gets. vLLM-only settings on another backend are refused, not ignored."""
    kw: dict[str, Any] = {"batch_size": cfg.batch_size}
    if cfg.dtype is not None:
        kw["dtype"] = cfg.dtype
    vllm = {k: getattr(cfg, k) for k in VLLM_ONLY if getattr(cfg, k) is not None}
    if vllm and backend != "vllm":
        raise ConfigError(f"{', '.join(vllm)} only apply to the vllm backend, and this generation runs on {backend}")
    if "gpu_memory_utilization" in vllm:
        kw["kv_cache_memory_bytes"] = None  # vLLM sizes the cache from the fraction only when no byte count is given
    return {**kw, **vllm}


def open_generator(backend: str, model_path: str, cfg: GenerateConfig, kw: dict[str, Any]):
    """One engine in this process, or ``cfg.data_parallel`` engines in worker processes or Ray actors behind the same
    contract."""
    from evalharness.generation.backends import load_generator

    if cfg.ray_address is not None:  # even one engine: the cluster may be where the GPUs are
        from evalharness.generation.ray_parallel import RayGenerator

        return RayGenerator(cfg.ray_address, cfg.data_parallel, backend, model_path,
                            cfg.tensor_parallel_size or 1, **kw)
    if cfg.data_parallel == 1:
        return load_generator(backend, model_path, **kw)
    import torch

    from evalharness.generation.parallel import ParallelGenerator, device_groups

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    devices = device_groups(cfg.data_parallel, cfg.tensor_parallel_size or 1, gpus)
    return ParallelGenerator(cfg.data_parallel, backend, model_path, devices, **kw)


@dataclass
class Target:
    key: str  # checkpoint key in the store
    label: str
    path: str
    reference: str | None  # a model name/path


@dataclass
class Report:
    label: str
    prompts: int = 0
    samples: int = 0
    generated: int = 0
    cached: int = 0
    tokens: int = 0
    truncated: int = 0
    seconds: float = 0.0
    backend: str = ""
    scored: int = 0

    def line(self) -> str:
        rate = f", {self.generated / self.seconds:.2f} samples/s" if self.generated and self.seconds else ""
        mean = f", mean length {self.tokens / self.samples:.1f} tokens" if self.samples else ""
        return (f"{self.label}: {self.prompts} prompts, {self.samples} samples ({self.generated} new, "
                f"{self.cached} from the store){mean}, {self.truncated} prompts truncated, "
                f"{self.scored} reference-scored, backend {self.backend}{rate}")


def resolve_target(spec: str, store: Store, reference: str | None) -> Target:
    """``RUN[:STEP]`` from the store, else a model name or path (keyed by its weights' fingerprint)."""
    from evalharness.models import model_fingerprint, resolve_model

    name, _, step = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    run = store.get_run(name) if Path(store.path).exists() else None
    if run is not None:
        ckpts = store.checkpoints(run["run_id"])
        if step:
            ckpts = [c for c in ckpts if str(c["step"]) == step.lstrip("0") or c["step"] == int(step)]
        elif ckpts:
            ckpts = [ckpts[-1]]
        if not ckpts:
            raise ConfigError(f"run {name!r} has no checkpoint{' at step ' + step if step else ''}")
        c = ckpts[-1]
        cfg = json.loads(run["config"]) if isinstance(run["config"], str) else run["config"]
        ref = reference or cfg.get("reference") or _run_start(cfg, store)
        label = f"{run['name']}:{c['step']}"
        return Target(c["checkpoint_id"], label, _policy(checkpoint_path(c, store, f"run {label}"), f"run {label}",
                                                          run["name"]), ref)
    path = resolve_model(spec)
    return Target("model:" + model_fingerprint(path), spec, _policy(str(path), spec, spec), reference or str(path))


def _policy(path: str, what: str, name: str) -> str:
    """A reward model scores texts and writes none: sampling it would store the noise of a head it does not have."""
    from evalharness.models import has_reward_head

    if has_reward_head(path):
        raise ConfigError(f"{what} is a reward model, not a policy: it scores responses and is not sampled; use it "
                          f"as a judge (--judge reward-model:path={name})")
    return path


def _run_start(cfg: dict[str, Any], store: Store) -> str:
    init = cfg.get("init_from")
    if not init:
        return cfg["model"]
    if Path(init).is_dir():
        return init
    run = store.get_run(init)
    finals = [c for c in store.checkpoints(run["run_id"]) if c["is_final"]] if run else []
    if not finals:
        raise ConfigError(f"the run's init_from {init!r} has no final checkpoint")
    return checkpoint_path(finals[-1], store, f"the run's init_from {init!r}")


def request_seed(seed: int, prompt_id: str, turn: int, index: int) -> int:
    return int(content_hash(["seed", seed, prompt_id, turn, index], 8)[:8], 16) & 0x7FFFFFFF


def generation_key(target: Target, prompt_id: str, turn: int, sampling: Sampling, backend: str, index: int) -> str:
    return content_hash(["generation", target.key, prompt_id, turn, dataclasses.asdict(sampling), backend, index])


def load_prompt_set(cfg: GenerateConfig) -> list[Prompt]:
    from evalharness.data.prompts import PromptSetSpec, load_prompts

    if cfg.prompt_list is not None:
        return list(cfg.prompt_list)[: cfg.limit]
    try:
        spec = PromptSetSpec(name=cfg.prompts, path=cfg.path, columns=dict(cfg.columns), limit=cfg.limit)
    except ValueError as e:  # a flag the spec refuses (--limit -1): bad input, one line
        raise ConfigError(str(e)) from None
    return list(load_prompts(spec).prompts)


def turns_of(prompt: Prompt) -> list[str]:
    turns = prompt.meta.get("turns") if prompt.meta else None
    return list(turns) if turns and len(turns) > 1 else []


def generate(cfg: GenerateConfig, store: Store, progress: bool = True) -> list[Report]:
    from evalharness.generation.ray_parallel import ray_session

    with ray_session(cfg.ray_address, cfg.data_parallel, cfg.tensor_parallel_size or 1):
        return _generate(cfg, store, progress)


def _generate(cfg: GenerateConfig, store: Store, progress: bool) -> list[Report]:
    from evalharness.generation.backends import resolve_backend

    prompts = load_prompt_set(cfg)  # bad input fails here, before anything is written
    targets = [resolve_target(c, store, cfg.reference) for c in cfg.checkpoints]
    backend = resolve_backend(cfg.backend)
    engine = engine_kwargs(cfg, backend)
    _store_prompts(store, cfg.prompts, prompts)
    reports = []
    for target in targets:
        report = Report(target.label, prompts=len(prompts), backend=backend)
        start = time.perf_counter()
        generator, tokenizer = None, None
        max_turns = max([len(turns_of(p)) for p in prompts] + [1])
        try:
            for turn in range(1, max_turns + 1):
                todo = _missing(store, target, prompts, cfg, backend, turn)
                if not todo:
                    continue
                if generator is None:
                    from evalharness.models import load_tokenizer

                    tokenizer = load_tokenizer(target.path)
                    generator = open_generator(backend, target.path, cfg, engine)
                _run_turn(store, target, todo, turn, cfg, backend, generator, tokenizer, report, progress)
        finally:  # worker processes of a parallel generator must not outlive an interrupted run
            if generator is not None:
                generator.close()
        report.seconds = time.perf_counter() - start
        if cfg.score_reference and target.reference:
            report.scored = score_reference(store, target, cfg, progress)
        _totals(store, target, prompts, cfg, backend, report)
        reports.append(report)
    return reports


def _store_prompts(store: Store, set_name: str, prompts: list[Prompt]) -> None:
    store.insert_prompts([
        PromptRecord(p.id, set_name, str(p.meta.get("source_id", "")) if p.meta else "",
                     json.dumps([m._asdict() for m in p.messages]), p.reference, json.dumps(p.meta or {}, default=str))
        for p in prompts])


def _keys(target, prompts, cfg, backend, turn):
    return {generation_key(target, p.id, turn, cfg.sampling, backend, i): (p, i)
            for p in prompts if turn == 1 or len(turns_of(p)) >= turn for i in range(cfg.n)}


def _missing(store, target, prompts, cfg, backend, turn):
    keys = _keys(target, prompts, cfg, backend, turn)
    have = store.stored_ids(GenerationRecord, list(keys))
    return [(k, p, i) for k, (p, i) in keys.items() if k not in have]


def _conversation(store: Store, target, prompt: Prompt, turn: int, index: int, cfg, backend) -> tuple[Message, ...]:
    """Turn t's messages: the earlier user turns with this sample's own earlier answers between them."""
    if turn == 1:
        return tuple(prompt.messages)
    turns = turns_of(prompt)
    msgs = list(prompt.messages)
    with store.connect() as con:
        for t in range(1, turn):
            key = generation_key(target, prompt.id, t, cfg.sampling, backend, index)
            row = con.execute("SELECT text FROM generations WHERE generation_id = ?", [key]).fetchone()
            msgs.append(Message("assistant", row[0]))
            msgs.append(Message("user", turns[t]))
    return tuple(msgs)


def _run_turn(store, target, todo, turn, cfg, backend, generator, tokenizer, report, progress) -> None:
    from tqdm.auto import tqdm

    from evalharness.models import render_prompt

    bar = tqdm(total=len(todo), desc=f"{target.label} turn {turn}", unit="sample", disable=not progress)
    for start in range(0, len(todo), cfg.chunk):
        part = todo[start : start + cfg.chunk]
        requests, meta = [], []
        for key, prompt, index in part:
            messages = _conversation(store, target, prompt, turn, index, cfg, backend)
            text = render_prompt(tokenizer, messages, cfg.prompt_style)
            ids = tokenizer(text, add_special_tokens=not getattr(tokenizer, "chat_template", None))["input_ids"]
            cut = len(ids) > cfg.max_prompt_length
            ids = ids[-cfg.max_prompt_length :] if cut else ids
            requests.append(Request(tuple(ids), request_seed(cfg.sampling.seed, prompt.id, turn, index)))
            meta.append((key, prompt, index, text, ids, cut))
        samplings = [cfg.sampling.for_category(m[1].meta.get("category") if m[1].meta else None) for m in meta]
        samples = _generate_by_sampling(generator, requests, samplings)
        rows = []
        for (key, prompt, index, text, ids, cut), s, sampling in zip(meta, samples, samplings):
            rows.append(GenerationRecord(
                key, target.key, target.label, target.path, prompt.id, turn, index,
                json.dumps(dataclasses.asdict(cfg.sampling)), sampling.logprob_temperature, backend, text, list(ids),
                s.text, list(s.token_ids), len(s.token_ids), s.finish_reason, cut, s.logp, list(s.token_logps),
                created_at=now()))
            report.generated += 1
            report.truncated += int(cut)
        store.insert_generations(rows)
        bar.update(len(part))
    bar.close()


def _generate_by_sampling(generator, requests: list[Request], samplings: list[Sampling]) -> list:
    """Samples in request order; one backend call per distinct sampling (a temperature rule mixes temperatures)."""
    out: list = [None] * len(requests)
    groups: dict[Sampling, list[int]] = {}
    for i, sampling in enumerate(samplings):
        groups.setdefault(sampling, []).append(i)
    for sampling, idx in groups.items():
        for i, sample in zip(idx, generator.generate([requests[i] for i in idx], sampling)):
            out[i] = sample
    return out


def score_reference(store: Store, target: Target, cfg: GenerateConfig, progress: bool) -> int:
    """Fill reference_logp for this checkpoint's samples that lack it (resumable, batched, no gradients)."""
    import torch
    from tqdm.auto import tqdm

    from evalharness.models import load_causal_lm, load_tokenizer, model_fingerprint, resolve_model
    from evalharness.scoring import Seq, sequence_logps

    with store.connect() as con:
        rows = con.execute(
            "SELECT generation_id, prompt_ids, token_ids, temperature FROM generations "
            "WHERE checkpoint = ? AND reference_logp IS NULL AND n_tokens > 0", [target.key]).fetchall()
    if not rows:
        return 0
    ref_path = resolve_model(target.reference)
    model = load_causal_lm(ref_path).eval()
    pad = load_tokenizer(ref_path).pad_token_id or 0
    ref_key = "model:" + model_fingerprint(model)
    rows.sort(key=lambda r: len(r[1]) + len(r[2]))
    done = 0
    bar = tqdm(total=len(rows), desc=f"{target.label} reference log-probs", unit="sample", disable=not progress)
    with torch.no_grad():
        for start in range(0, len(rows), cfg.batch_size):
            part = rows[start : start + cfg.batch_size]
            by_temp: dict[float, list] = {}
            for r in part:
                by_temp.setdefault(r[3], []).append(r)
            updates = []
            for temp, group in by_temp.items():
                seqs = [Seq(tuple(r[1]), tuple(r[2])) for r in group]
                lps = sequence_logps(model, seqs, pad, temperature=temp).summed.tolist()
                updates += [(r[0], ref_key, lp) for r, lp in zip(group, lps)]
            store.set_reference_logps(updates)
            done += len(part)
            bar.update(len(part))
    bar.close()
    return done


def _totals(store, target, prompts, cfg, backend, report) -> None:
    keys = [k for t in range(1, max([len(turns_of(p)) for p in prompts] + [1]) + 1)
            for k in _keys(target, prompts, cfg, backend, t)]
    with store.connect() as con:
        n, tokens = con.execute("SELECT count(*), coalesce(sum(n_tokens), 0) FROM generations "
                                "JOIN (SELECT unnest(?) AS k) ON generation_id = k", [keys]).fetchone()
    report.samples, report.tokens = n, int(tokens)
    report.cached = n - report.generated

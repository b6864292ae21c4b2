"""The one training loop. It reads ``LossSpec.needs`` to decide what to compute and never branches on loss names.

Single process by default; the same code runs under ``accelerate launch`` (DDP/FSDP). A step is ``grad_accum``
micro-batches per rank; the loss is the mean over the whole global batch, and loss state (e-DPO's β) is updated from
statistics gathered over every micro-batch on every rank.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from evalharness.checkpoints import locate
from evalharness.config import RUN_NAME, ConfigError, TrainConfig
from evalharness.hashing import content_hash
from evalharness.models import model_fingerprint
from evalharness.scoring import PairExample, sequence_logps, sequence_scores, shared_prompt_logps
from evalharness.store import Store, code_version
from evalharness.threads import ThreadGovernor
from trainers import checkpointing as ckpt
from trainers import sharding
from trainers.batching import batch_order, example_length
from trainers.recipes import build_stage, params_record, parse_stages
from trainers.refcache import CacheReport
from trainers.setup import Prepared, prepare
from trainers.spec import Diverged, LossInputs, LossSpec

METRICS_FLUSH_S = 30.0  # between checkpoints, how often a run's metrics reach the store
RUN_ROOT = Path("runs")  # where a run without --out is written: runs/<name>, relative to the working directory


@dataclass
class TrainResult:
    run_id: str
    name: str
    out_dir: str
    checkpoint: str
    steps: int
    status: str  # finished | already-finished
    last_metrics: dict[str, float] = field(default_factory=dict)
    truncated: int = 0
    skipped: int = 0
    examples: int = 0
    resumed_from: int | None = None
    reference_cache: CacheReport | None = None
    notes: list[str] = field(default_factory=list)  # what the user should know beyond the numbers (a name's meaning)


class StopTraining(Exception):
    """Raised by an ``on_step`` callback to stop cleanly (tests interrupt runs with it)."""


def run_id_of(cfg: TrainConfig) -> str:
    """The hash of the bound, canonical config: ``--set beta=.1``, ``beta = 0.1`` in a file and DPO's default are one
    run, trained once."""
    return content_hash(["train", bound_config(cfg)])


def bound_config(cfg: TrainConfig) -> dict[str, Any]:
    """What makes two runs the same run (``TrainConfig.identity``), with the loss expression as the registry names it
    and the loss parameters of each stage bound to their dataclass: defaults filled, values of the declared types, and
    a parameter meant for another stage's loss (``dpo.beta`` in an sft stage) left out."""
    identity = cfg.identity()
    stages = [build_stage(terms, cfg.params) for terms in parse_stages(cfg.loss)]
    identity["loss"] = " -> ".join(spec.name for spec, _ in stages)
    params = [params_record(p) for _, p in stages]
    identity["params"] = params[0] if len(params) == 1 else params
    return identity


def train(cfg: TrainConfig, store: Store, progress: bool = True, on_step=None, restart: bool = False
          ) -> list[TrainResult]:
    """Train every stage of ``cfg.loss`` ("sft->dpo" is two runs, the second starting from the first).

    ``restart``: each stage discards its earlier checkpoints instead of resuming (``train_stage``)."""
    planned = plan_stages(cfg)
    results = [train_stage(stage_cfg, store, terms, progress=progress, on_step=on_step, restart=restart)
               for stage_cfg, terms in planned]
    if len(planned) > 1 and cfg.name:
        # `-c NAME` then means what the recipe made: its last stage (each stage keeps its own NAME-stageK-loss)
        store.add_alias(cfg.name, results[-1].run_id)
        results[-1].notes.append(f"{cfg.name!r} names the last stage, run {results[-1].run_id[:12]} "
                                 f"({results[-1].name})")
    return results


def plan_stages(cfg: TrainConfig) -> list[tuple[TrainConfig, list]]:
    """The config of each stage of ``cfg.loss``: a later stage starts from (and is referenced to) the one before."""
    stages = parse_stages(cfg.loss)
    planned, init_from = [], cfg.init_from
    for i, terms in enumerate(stages):
        expr = " + ".join(f"{w:g}*{n}" if w != 1.0 else n for w, n in terms)
        stage_cfg = dataclasses.replace(cfg, loss=expr, init_from=init_from)
        if len(stages) > 1:
            stage_cfg.name = f"{cfg.name or 'run'}-stage{i + 1}-{terms[0][1]}"
            if cfg.out:
                stage_cfg.out = str(Path(cfg.out) / f"stage{i + 1}-{terms[0][1]}")
            if i > 0:
                stage_cfg.reference = None  # a later stage's reference is where it starts (seed 000's SFT+DPO)
        planned.append((stage_cfg, terms))
        init_from = run_id_of(stage_cfg)
    return planned


def train_stage(cfg: TrainConfig, store: Store, terms, progress: bool = True, on_step=None, restart: bool = False
                ) -> TrainResult:
    """Train one run into ``cfg.out`` (default ``runs/<name>``), resuming from its latest checkpoint there.

    ``restart``: start again from step 0, discarding the run's checkpoints in its directory; refused (nothing
    touched) unless that directory is this run's, and done only once every input has been loaded and bound."""
    spec, params = build_stage(terms, cfg.params)
    run_id = run_id_of(cfg)
    name = _run_name(cfg, run_id)
    out = Path(cfg.out) if cfg.out else RUN_ROOT / name
    existing = store.get_run(run_id)
    if existing and existing["status"] == "finished" and not restart:
        done = [c for c in store.checkpoints(run_id) if c["is_final"]]
        final = locate(done[-1], store) if done else None
        if final is not None:
            result = TrainResult(run_id, existing["name"], existing["out_dir"], str(final),
                                 existing["final_step"], "already-finished")
            result.notes += _alias_for(store, cfg, existing)
            return result

    _check_out_dir(out, run_id, restart, cfg)
    # loads data and models, raising before anything is written (or, with restart, deleted)
    p = prepare(cfg, spec, params, store, out, progress, restart=restart)
    main = p.accelerator.is_main_process  # one process writes the store; the others only read
    if main:
        # The run directory first: a full or read-only disk stops here, before the store lists a run that never ran.
        config = bound_config(cfg)
        ckpt.write_json(out / "config.json", {"run_id": run_id, "name": name, "loss": spec.name,
                                              "config": config, "code_version": code_version()})
        store.upsert_run(dict(
        run_id=run_id, name=name, loss=spec.name, params=params_record(params),
        base_model=cfg.model, init_from=cfg.init_from, data=dataclasses.asdict(cfg.data), config=config,
        code_version=code_version(), status="running", out_dir=str(out.resolve()), final_step=None,
        ))
    notes = _alias_for(store, cfg, existing) if existing and main else []
    try:
        result = _loop(cfg, spec, params, p, store, run_id, name, out, progress, on_step)
        result.notes += notes
    except BaseException as e:
        status = "interrupted" if isinstance(e, (KeyboardInterrupt, StopTraining)) else "failed"
        if main:
            store.set_run_status(run_id, status)
        raise
    if main:
        store.set_run_status(run_id, "finished", final_step=result.steps)
    return result


def _alias_for(store: Store, cfg: TrainConfig, existing: dict[str, Any]) -> list[str]:
    """A name asked for a config that already ran under another name becomes an alias of that run: keeping the old
    name silently would leave the new one naming nothing."""
    if not cfg.name or cfg.name == existing["name"]:
        return []
    store.add_alias(cfg.name, existing["run_id"])
    return [f"this config already ran as {existing['name']!r} (run {existing['run_id'][:12]}); {cfg.name!r} now "
            "names that run too"]


def _run_name(cfg: TrainConfig, run_id: str) -> str:
    if cfg.name:
        return cfg.name  # checked when the config was bound
    name = f"{cfg.loss.replace('*', 'x').replace(' ', '')}-{run_id[:8]}"
    return name if RUN_NAME.fullmatch(name) else f"run-{run_id[:8]}"  # a plugin loss's name may hold anything


def _check_out_dir(out: Path, run_id: str, restart: bool = False, cfg: TrainConfig | None = None) -> None:
    """Resuming from another run's checkpoints would silently train the wrong thing, and ``restart`` deletes
    checkpoints: refuse a directory that is another run's, and with ``restart`` any non-empty one not this run's."""
    marker = out / "config.json"
    other = None
    if marker.exists():
        try:
            written = json.loads(marker.read_text())
            other = written.get("run_id")
        except (OSError, ValueError, AttributeError):
            other = None
        if other and other != run_id and cfg is not None and _same_config(written.get("config"), cfg):
            other = run_id  # this run, written when run ids hashed the unbound parameters: resumed, not refused
        if other and other != run_id:
            raise ConfigError(f"{out} holds run {other[:12]}, not this run ({run_id[:12]}): choose another --out "
                              "or delete that directory")
    if restart and other != run_id and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: --restart deletes only a run directory whose config.json names this run "
                          f"({run_id[:12]}), and this one has none: choose another --out")


def _same_config(recorded: Any, cfg: TrainConfig) -> bool:
    """Whether a run directory's recorded config is ``cfg`` once bound (its run id may predate canonical ids)."""
    from evalharness.config import bind
    from evalharness.hashing import canonical_json

    if not isinstance(recorded, dict):
        return False
    try:
        old = bind(TrainConfig, {k: v for k, v in recorded.items() if k not in ("out", "log_every", "name")},
                   "config.json")
        return canonical_json(bound_config(old)) == canonical_json(bound_config(cfg))
    except (ValueError, LookupError, TypeError):
        return False


def _loop(cfg, spec: LossSpec, params, p: Prepared, store: Store, run_id, name, out: Path, progress, on_step):
    acc, model = p.accelerator, p.model
    world, rank = acc.num_processes, acc.process_index
    n_batches = len(batch_order(p.lengths, cfg.batch_size, cfg.seed, 0))
    if n_batches < world:
        raise ValueError(f"{len(p.examples)} examples make {n_batches} batches of {cfg.batch_size}; need >= {world}")
    state = spec.initial_state(params)
    start_step, resumed = 0, None
    last = ckpt.latest_checkpoint(out)
    if last is not None:
        saved = ckpt.load_state(last, acc.unwrap_model(model))
        if "optimizer" in saved:  # a final checkpoint holds none: its run has no step left to train
            sharding.load_optimizer(acc, model, p.optimizer, saved["optimizer"])
        p.scheduler.load_state_dict(saved["scheduler"])
        state, start_step, resumed = dict(saved["loss_state"]), saved["step"], saved["step"]
        if acc.is_main_process:  # a kill after saving, before the store heard of it, loses no checkpoint row
            store.add_checkpoint(content_hash(["checkpoint", run_id, start_step]), run_id, start_step, str(last),
                                 start_step >= cfg.max_steps, model_fingerprint(last))
    pending: list[tuple[int, str, float]] = []
    flushed = time.monotonic()
    bar = tqdm(total=cfg.max_steps, initial=start_step, desc=name, unit="step",
               disable=not progress or not acc.is_main_process)
    orders: dict[int, list[list[int]]] = {}
    metrics: dict[str, float] = {}
    governor = ThreadGovernor() if acc.device.type == "cpu" else None
    model.train()
    for step in range(start_step, cfg.max_steps):
        if governor is not None:  # other jobs come and go on a shared machine: threads follow the free cores
            governor.tick()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        stats: dict[str, list[torch.Tensor]] = {}
        tokens = 0
        global_examples = cfg.batch_size * cfg.grad_accum * world
        for a in range(cfg.grad_accum):
            g = (step * cfg.grad_accum + a) * world + rank  # global micro-batch index: fixes the data position
            epoch, within = divmod(g, n_batches)
            if epoch not in orders:
                orders = {epoch: batch_order(p.lengths, cfg.batch_size, cfg.seed, epoch)}
            batch = [p.examples[i] for i in orders[epoch][within]]
            sync = a == cfg.grad_accum - 1
            with (acc.no_sync(model) if not sync and world > 1 else _null()):
                with torch.autocast(acc.device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16"):
                    inputs, n_tok = build_inputs(spec.needs, batch, p, state, cfg.logit_temperature)
                    output = spec.fn(inputs, params)
                # Sum over the micro-batch / size of the global batch: the gradient of the global-batch mean
                # (DDP averages over ranks, hence the world factor).
                loss = output.losses.sum() * world / global_examples
                acc.backward(loss)
            tokens += n_tok
            _accumulate(sums, stats, output)
        grad_norm = acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        lr_used = p.scheduler.get_last_lr()[0]  # the rate this step applied (the scheduler moves on below)
        p.optimizer.step()
        p.scheduler.step()
        p.optimizer.zero_grad(set_to_none=True)
        gathered = {k: acc.gather(torch.cat(v)).float() for k, v in stats.items()}
        if spec.update_state is not None:
            state = spec.update_state(state, gathered, params)
        if spec.reference_update is not None:
            alpha = spec.reference_update(params, step + 1)
            if alpha:
                _move_reference(p.reference, acc.unwrap_model(model), alpha)
        n_micro = cfg.grad_accum
        metrics = {k: _mean_over_ranks(acc, v / n_micro) for k, v in sums.items()}
        metrics.update(
            grad_norm=float(grad_norm), lr=lr_used,
            tokens_per_s=_mean_over_ranks(acc, tokens) * world / max(time.perf_counter() - t0, 1e-9),
        )
        metrics.update({f"state/{k}": float(v) for k, v in state.items()})
        if not all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)):
            bad = [k for k, v in metrics.items() if not math.isfinite(v)]
            raise Diverged(f"training diverged at step {step + 1}: non-finite {', '.join(bad)}; lower the learning "
                           "rate or check the data (checkpoints written before this step are kept)")
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.max_steps:
            pending += [(step + 1, k, v) for k, v in metrics.items()]
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", **({"acc": f"{metrics['accuracy']:.2f}"} if "accuracy" in metrics else {}))
        final = step + 1 == cfg.max_steps
        if final or (cfg.save_every and (step + 1) % cfg.save_every == 0):
            # Under FSDP every rank takes part in gathering the full weights and optimizer state; rank 0 writes them.
            to_save, optimizer_to_save = sharding.for_saving(acc, model, p.optimizer)
            if acc.is_main_process:
                # Metrics first: a checkpoint on disk means its steps' metrics are stored, whenever a kill comes.
                store.add_metrics(run_id, pending)
                pending = []
                path = ckpt.save(out, step + 1, to_save, p.tokenizer, optimizer_to_save, p.scheduler, state,
                                 reference=p.reference if spec.reference_update is not None else None,
                                 dtype=getattr(torch, cfg.dtype), keep_last=cfg.keep_last, is_final=final)
                store.add_checkpoint(content_hash(["checkpoint", run_id, step + 1]), run_id, step + 1, str(path), final,
                                     model_fingerprint(path))
            acc.wait_for_everyone()
            flushed = time.monotonic()
        elif pending and acc.is_main_process and time.monotonic() - flushed >= METRICS_FLUSH_S:
            # Between checkpoints, metrics reach the store every METRICS_FLUSH_S for anyone watching the run. Each
            # write opens the store and commits (tens of ms): by the clock, not by row count, it stays a rounding
            # error on fast steps. A kill loses nothing by it: the steps after the last checkpoint are redone.
            store.add_metrics(run_id, pending)
            pending, flushed = [], time.monotonic()
        if on_step is not None:
            on_step(step + 1, metrics)
    bar.close()
    final_path = ckpt.checkpoint_dir(out, cfg.max_steps)
    return TrainResult(run_id, name, str(out), str(final_path), cfg.max_steps, "finished", metrics,
                       p.truncated, p.skipped, len(p.examples), resumed, p.cache_report)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_LOOP_METRICS = {"loss", "rewards/chosen", "rewards/rejected", "margin", "accuracy", "grad_norm", "lr", "tokens_per_s"}


def _accumulate(sums: dict[str, float], stats: dict[str, list], out) -> None:
    sums["loss"] = sums.get("loss", 0.0) + float(out.losses.detach().mean())
    if out.chosen_rewards is not None:
        c, r = out.chosen_rewards.detach().float(), out.rejected_rewards.detach().float()
        for k, v in (("rewards/chosen", c.mean()), ("rewards/rejected", r.mean()),
                     ("margin", (c - r).mean()), ("accuracy", (c > r).float().mean())):
            sums[k] = sums.get(k, 0.0) + float(v)
    for k, v in out.metrics.items():
        if k in _LOOP_METRICS:  # the loop's own names win; a loss's same-named metric is kept beside them
            k = f"loss/{k}"
        sums[k] = sums.get(k, 0.0) + float(torch.as_tensor(v).detach().float().mean())
    for k, v in out.step_stats.items():
        stats.setdefault(k, []).append(v.detach().float().reshape(-1))


def _mean_over_ranks(acc, value: float) -> float:
    if acc.num_processes == 1:
        return float(value)
    t = torch.tensor([float(value)], device=acc.device)
    return float(acc.gather(t).mean())


@torch.no_grad()
def _move_reference(reference, policy, alpha: float) -> None:
    """ref ← α·π + (1-α)·ref (α=1 copies): TR-DPO's soft and hard updates."""
    for r, q in zip(reference.parameters(), policy.parameters()):
        r.mul_(1 - alpha).add_(q.detach().to(r.dtype), alpha=alpha)


def build_inputs(needs, batch, p: Prepared, state: dict[str, float], temperature: float) -> tuple[LossInputs, int]:
    """Compute exactly what the loss declared it needs."""
    inp = LossInputs()
    pad = p.pad_id
    if "state" in needs:
        inp.state = dict(state)
    if "k_samples" in needs:
        seqs = [s for ex in batch for s in ex.seqs]
        k = len(batch[0].seqs)
        fwd = sequence_logps(p.model, seqs, pad, temperature, share_prompts=True)
        inp.policy_logps_k = fwd.summed.view(len(batch), k)
        inp.lengths_k = fwd.lengths.view(len(batch), k)
        if "reference" in needs:
            inp.reference_logps_k = _reference(p, seqs, temperature).view(len(batch), k)
        if "rewards" in needs:
            inp.rewards_k = torch.tensor([ex.rewards for ex in batch], dtype=torch.float32, device=fwd.summed.device)
        return inp, fwd.tokens
    assert all(isinstance(ex, PairExample) for ex in batch)
    seqs = [ex.chosen for ex in batch] + [ex.rejected for ex in batch]
    b = len(batch)
    if "reward_head" in needs:
        scores, n_tok = sequence_scores(p.model, seqs, pad)
        inp.chosen_scores, inp.rejected_scores = scores[:b], scores[b:]
        lengths = torch.tensor([float(len(s.response)) for s in seqs], device=scores.device)
        inp.chosen_lengths, inp.rejected_lengths = lengths[:b], lengths[b:]
        return inp, n_tok
    live_logits = "reference_logits" in needs
    # x+ = x- for most pairs: each prompt is computed once and continued into both responses (CausalDialogue's
    # x+ != x- pairs take the concatenated forward)
    fwd = sequence_logps(p.model, seqs, pad, temperature, keep_logits=live_logits, share_prompts=True)
    inp.policy_chosen_logps, inp.policy_rejected_logps = fwd.summed[:b], fwd.summed[b:]
    inp.chosen_lengths, inp.rejected_lengths = fwd.lengths[:b], fwd.lengths[b:]
    if "token_logps" in needs or live_logits:
        inp.policy_chosen_token_logps, inp.policy_rejected_token_logps = fwd.token_logps[:b], fwd.token_logps[b:]
        inp.chosen_mask, inp.rejected_mask = fwd.mask[:b], fwd.mask[b:]
    if live_logits:
        ref = _reference_logits(p, seqs, fwd, temperature)
        inp.policy_chosen_logits, inp.policy_rejected_logits = fwd.logits[:b], fwd.logits[b:]
        inp.reference_chosen_logits, inp.reference_rejected_logits = ref.logits[:b], ref.logits[b:]
        inp.chosen_labels, inp.rejected_labels = fwd.labels[:b], fwd.labels[b:]
        inp.reference_chosen_logps, inp.reference_rejected_logps = ref.summed[:b], ref.summed[b:]
    elif "reference" in needs:
        ref_lp = _reference(p, seqs, temperature)
        inp.reference_chosen_logps, inp.reference_rejected_logps = ref_lp[:b], ref_lp[b:]
    if "prompt_augmented" in needs:
        aug = [ex.augmented_chosen for ex in batch] + [ex.augmented_rejected for ex in batch]
        with torch.no_grad():  # Δ is a stop-gradient term: the live policy scores p ⊕ x without a graph
            pol = sequence_logps(p.model, aug, pad, temperature, share_prompts=True).summed
        ref_aug = _reference(p, aug, temperature)
        inp.augmented_policy_chosen_logps, inp.augmented_policy_rejected_logps = pol[:b], pol[b:]
        inp.augmented_reference_chosen_logps, inp.augmented_reference_rejected_logps = ref_aug[:b], ref_aug[b:]
    return inp, fwd.tokens


def _reference_logits(p: Prepared, seqs, fwd, temperature):
    """The reference's logits and summed log-probs of ``seqs``, laid out as the policy's ``fwd``, position for
    position: its head on cached hidden states where the run has them (``trainers.refhidden``), else a forward."""
    if p.hidden is not None:
        return p.hidden.lookup(seqs, fwd.mask)
    with torch.no_grad():
        score = shared_prompt_logps if fwd.shared else sequence_logps
        return score(p.reference, seqs, p.pad_id, temperature, keep_logits=True)


def _reference(p: Prepared, seqs, temperature) -> torch.Tensor:
    device = p.accelerator.device
    if p.cache is not None:
        return p.cache.lookup(seqs, device)
    with torch.no_grad():
        return sequence_logps(p.reference, seqs, p.pad_id, temperature, share_prompts=True).summed.to(device)


def copy_model(model):
    return copy.deepcopy(model)


__all__ = ["train", "train_stage", "TrainResult", "StopTraining", "build_inputs", "example_length", "run_id_of",
           "bound_config"]

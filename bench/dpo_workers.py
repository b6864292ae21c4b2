"""The trainers under test, one configuration per process: ``python bench/dpo_workers.py SPEC.json``.

``train_vs_trl.py`` writes the spec (model, loss, token ids, batch schedule, hyperparameters), launches this file,
reads the result JSON it writes and measures the process's peak RSS. Nothing here changes how either trainer computes;
the only hooks are observers (a step callback, a timer around the reference precompute) and, for TRL, the two
overrides that make it consume evalharness's token ids in evalharness's batch order.

``LOSSES`` maps each benched evalharness loss to its parameters and to the TRL ``loss_type`` that computes the same
thing (None where TRL has no such loss). IPO runs with ``reduction="mean"`` because TRL's IPO divides each log-ratio
by the completion length; evalharness's default ("sum", the paper's form) costs the same compute.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple


class BenchLoss(NamedTuple):
    params: Callable[[float], dict]  # the evalharness loss parameters for the bench's β
    trl_loss_type: str | None  # the DPOTrainer loss_type computing the same loss; None: TRL has none
    step1: Callable[[float], float] | None  # the loss at step 1 (policy == reference) for β; None: model-dependent


# At step 1 the margin h is 0: DPO and e-DPO give -log σ(0) = log 2 (e-DPO's per-pair β̃ cannot move it), IPO gives
# (0 - 1/(2β))², 25 at β = 0.1. ExMATE has no reference: it keeps its own β default (0.05, LOSSES.md) and its step-1
# loss depends on the model.
LOSSES = {
    "dpo": BenchLoss(lambda beta: {"beta": beta}, "sigmoid", lambda beta: math.log(2)),
    "ipo": BenchLoss(lambda beta: {"beta": beta, "reduction": "mean"}, "ipo", lambda beta: (1 / (2 * beta)) ** 2),
    "exmate": BenchLoss(lambda beta: {}, None, None),
    "e-dpo": BenchLoss(lambda beta: {"beta": beta}, None, lambda beta: math.log(2)),
}


def train_config(spec: dict, reference_cache: bool):
    """The evalharness TrainConfig of a spec: the parent tokenises with it, the evalharness worker trains with it."""
    from evalharness.config import DataConfig, TrainConfig

    loss = spec.get("loss", "dpo")
    params = LOSSES[loss].params(spec["beta"])
    return TrainConfig(
        loss=loss, model=spec["model"], params=params,
        data=DataConfig(name=spec["data"], path=spec["data_path"], limit=spec["pairs"], eval_fraction=0.0),
        init_from=spec.get("init_from"), reference=spec.get("reference"),
        max_steps=spec["warmup"] + spec["steps"] + 1,  # stopped one step early: no final checkpoint save is timed
        batch_size=spec["batch_size"], lr=spec["lr"], optimizer="adamw", weight_decay=0.0, scheduler="constant",
        max_grad_norm=10.0, dtype="float32", seed=spec["seed"], max_length=spec["max_length"],
        max_prompt_length=spec["max_length"] // 2, reference_cache=reference_cache, log_every=1,
        out=str(Path(spec["work"]) / f"eh-{loss}-{'cache' if reference_cache else 'live'}"),
    )


class StepRecorder:
    """Per-step losses; wall and CPU time at the end of each timed step (those after the warm-up); profiles.

    CPU time of a one-thread process equals its wall time on an idle machine and barely moves when other processes
    share the cores, so it is the steadier of the two on a busy machine.
    """

    def __init__(self, spec: dict):
        self.warmup, self.last, self.t0 = spec["warmup"], spec["warmup"] + spec["steps"], spec["t0"]
        self.losses: list[float] = []
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.profile = Profile(spec["profile"])
        self.profile_text: str | None = None
        self.ref_precompute_s: float | None = None
        self.ref_load_s: float | None = None  # evalharness: the reference model load inside the cache build

    def step_end(self, step: int) -> bool:
        """Call at the end of optimizer step ``step`` (1-based); True after the last step."""
        if step >= self.warmup:
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())
        if step == self.warmup:
            self.profile.start()
        if step == self.last:
            self.profile_text = self.profile.stop()
            return True
        return False

    def summary(self) -> dict:
        return dict(losses=self.losses, timed_s=self.wall[-1] - self.wall[0], cpu_s=self.cpu[-1] - self.cpu[0],
                    step_s=[b - a for a, b in zip(self.wall, self.wall[1:])], startup_s=self.wall[0] - self.t0,
                    ref_precompute_s=self.ref_precompute_s, ref_load_s=self.ref_load_s, profile=self.profile_text)


class Profile:
    """When asked: torch.profiler (top ops by self CPU time) and cProfile (top Python functions by own time) over the
    timed steps. Both slow the steps and inflate RSS: a profiled run finds hot spots; it does not fill the table."""

    def __init__(self, enabled: bool):
        self.torch_prof = self.py_prof = None
        if enabled:
            import cProfile

            import torch

            self.torch_prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.py_prof = cProfile.Profile()

    def start(self) -> None:
        if self.torch_prof is not None:
            self.torch_prof.start()
            self.py_prof.enable()

    def stop(self) -> str | None:
        if self.torch_prof is None:
            return None
        import io
        import pstats

        self.py_prof.disable()
        self.torch_prof.stop()
        ops = self.torch_prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12,
                                                   max_name_column_width=40)
        text = io.StringIO()
        pstats.Stats(self.py_prof, stream=text).sort_stats("tottime").print_stats(12)
        return ops + "\n" + "\n".join(line for line in text.getvalue().splitlines() if line.strip())


# ---------------------------------------------------------------------------------------------------- evalharness


def run_evalharness(spec: dict) -> dict:
    import trainers.refcache as refcache
    import trainers.refhidden as refhidden

    builds: list = []
    fill = refcache.ReferenceCache.fill
    fill_hidden = refhidden.ReferenceHidden.fill

    def observed_fill_hidden(self, *args, **kwargs):
        report = fill_hidden(self, *args, **kwargs)
        builds.append((report, 0.0))  # the reference model is loaded before, by the setup, as for the live forward
        return report

    def observed_fill(self, load_model, *args, **kwargs):
        loads = []

        def timed_load():
            start = time.perf_counter()
            model = load_model()
            loads.append(time.perf_counter() - start)
            return model

        report = fill(self, timed_load, *args, **kwargs)
        builds.append((report, sum(loads)))
        return report

    # Observe (not change) the loop's own cache build, so its one-off cost is reported apart from the steps. fill
    # loads the reference model itself (a warm cache never loads it); TRL loads it before training, outside its
    # precompute, so the load is timed apart and left out of the build time.
    refcache.ReferenceCache.fill = observed_fill
    refhidden.ReferenceHidden.fill = observed_fill_hidden
    return {mode: _train_evalharness(spec, mode, builds) for mode in spec["modes"]}


def _train_evalharness(spec: dict, mode: str, builds: list) -> dict:
    """``mode``: "cache", "live", "concat" (the cache, with every sequence's prompt computed in its own row, as
    before prompts were shared: the side-by-side measure of that change), or "hcache" (the cache setting for a loss
    that needs reference logits: the reference's final hidden states cached, its head run each step)."""
    from evalharness import scoring
    from evalharness.store import Store
    from trainers.loop import StopTraining, train

    if mode == "concat":
        scoring._shares_pay = lambda model, seqs: False

    rec = StepRecorder(spec)

    def on_step(step: int, metrics: dict) -> None:
        rec.losses.append(float(metrics["loss"]))
        if rec.step_end(step):
            raise StopTraining

    builds.clear()
    store = Store(str(Path(spec["work"]) / f"eh-{spec['loss']}-{mode}.duckdb"))
    try:
        train(train_config(spec, reference_cache=mode != "live"), store, progress=False, on_step=on_step)
    except StopTraining:
        pass
    if mode == "hcache" and not builds:
        raise SystemExit("hcache: the run took no cached hidden states (see its stderr line): nothing to measure")
    if mode != "live":
        rec.ref_precompute_s = sum(r.seconds - load for r, load in builds if r.computed)
        rec.ref_load_s = sum(load for _, load in builds)
    return rec.summary()


# ------------------------------------------------------------------------------------------------------------ TRL


def run_trl(spec: dict) -> dict:
    import trl

    if LOSSES[spec["loss"]].trl_loss_type is None:
        raise SystemExit(f"TRL has no {spec['loss']!r} loss")
    # The TRL internals the replay leans on: a TRL that renames them must fail here, not measure something else.
    for name in ("_prepare_dataset", "_get_train_sampler", "_precompute_ref_logps", "compute_loss"):
        if not callable(getattr(trl.DPOTrainer, name, None)):
            raise SystemExit(f"trl {trl.__version__}: DPOTrainer.{name} is gone; update bench/dpo_workers.py")
    trainer_cls, callback_cls = _replay_classes()
    return {mode: _train_trl(spec, mode, trainer_cls, callback_cls) for mode in spec["modes"]}


def _replay_classes():
    from transformers import TrainerCallback
    from trl import DPOTrainer

    class ReplayDPOTrainer(DPOTrainer):
        """DPOTrainer on evalharness's token ids, in evalharness's batch order, reporting to a StepRecorder."""

        def __init__(self, *args, bench_order: list[int], bench_recorder: StepRecorder, **kwargs):
            self.bench_order, self.bench_recorder = bench_order, bench_recorder
            super().__init__(*args, **kwargs)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # already prompt_ids/chosen_ids/rejected_ids, which TRL's collator takes as they are

        def _get_train_sampler(self, train_dataset=None):
            return self.bench_order

        def _precompute_ref_logps(self, dataset, name, batch_size):
            start = time.perf_counter()
            try:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            finally:
                self.bench_recorder.ref_precompute_s = (self.bench_recorder.ref_precompute_s or 0.0) + (
                    time.perf_counter() - start)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if model.training:
                self.bench_recorder.losses.append(float((result[0] if return_outputs else result).detach()))
            return result

    class StepClock(TrainerCallback):
        def __init__(self, recorder: StepRecorder):
            self.recorder = recorder

        def on_step_end(self, args, state, control, **kwargs):
            self.recorder.step_end(state.global_step)

    return ReplayDPOTrainer, StepClock


def _train_trl(spec: dict, mode: str, trainer_cls, callback_cls) -> dict:
    from datasets import Dataset
    from trl import DPOConfig

    from evalharness.models import load_causal_lm, load_tokenizer

    rec = StepRecorder(spec)
    start = spec["init_from"] or spec["model"]
    reference = load_causal_lm(spec["reference"]) if spec["reference"] else None  # None: TRL loads its own copy
    args = DPOConfig(
        output_dir=str(Path(spec["work"]) / f"trl-{spec['loss']}-{mode}"), per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1, max_steps=rec.last, learning_rate=spec["lr"], lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=10.0, optim="adamw_torch", beta=spec["beta"],
        loss_type=[LOSSES[spec["loss"]].trl_loss_type], max_length=spec["max_length"],
        precompute_ref_log_probs=mode == "precompute",
        precompute_ref_batch_size=max(spec["batch_size"], 4),  # evalharness scores max(2B, 8) sequences a batch
        bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True, seed=spec["seed"],
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_pin_memory=False,
    )
    trainer = trainer_cls(
        model=load_causal_lm(start), ref_model=reference, args=args, processing_class=load_tokenizer(start),
        train_dataset=Dataset.from_list(spec["rows"]), callbacks=[callback_cls(rec)],
        bench_order=[i for batch in spec["schedule"] for i in batch], bench_recorder=rec,
    )
    trainer.train()
    return dict(rec.summary(), tokens_seen=getattr(trainer, "_total_train_tokens", None))


# ----------------------------------------------------------------------------------------------------------- main


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    spec["t0"] = time.perf_counter() - (time.time() - spec["launched_at"])  # process start, on the perf clock
    import torch

    torch.set_num_threads(1)  # one thread per process: steadier numbers, and the other core stays free
    torch.set_num_interop_threads(1)
    if spec["kind"] == "eh":
        import trainers.loop  # noqa: F401
    else:
        import trl  # noqa: F401
    rss_imported = rss_mb()  # the trainer's imports, before any model is loaded
    variants = (run_evalharness if spec["kind"] == "eh" else run_trl)(spec)
    Path(spec["result"]).write_text(json.dumps({"rss_after_import_mb": rss_imported, "variants": variants}))


if __name__ == "__main__":
    main(sys.argv[1])

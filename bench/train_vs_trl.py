"""evalharness DPO vs TRL's ``DPOTrainer``: same weights, same token ids, same batches, one table.

    .venv/bin/python bench/train_vs_trl.py                          # tiny-llama, under 2 minutes
    .venv/bin/python bench/train_vs_trl.py --model smollm2-135m     # 4 pairs x 128 tokens, a few minutes

What is held equal. The pairs are tokenised once, by evalharness (its prompt rendering and truncation rule); TRL
receives those token ids (its own tokenisation is bypassed) and a sampler that replays evalharness's length-bucketed
batch order, so step k of every configuration sees the same pairs and the same padding. Both sides use float32, AdamW
(lr, betas, eps, no weight decay), a constant schedule, grad-norm clip 10, β = 0.1 and the sigmoid DPO loss; TRL's
defaults that differ (bf16, gradient checkpointing, clip 1.0, fused AdamW) are switched off. Each configuration runs
in its own process with one torch thread (``torch.set_num_threads(1)``, OMP/MKL at 1), one process at a time.

What is measured. ``warmup + steps`` optimizer steps; the warm-up steps are not timed. tokens/s = non-pad tokens
(prompt + response, chosen + rejected) of the timed steps / wall time from the end of the last warm-up step to the end
of the last step, taken from each trainer's own per-step callback, so the loop's own overhead (logging, metrics,
store writes) is included and model loading, reference precomputation and checkpoint saving are not. CPU time of the
same span is reported beside it: with one thread it equals wall time on an idle machine and stays put when other
processes share the cores. The one-off reference precompute (evalharness's
``ReferenceCache.fill``, TRL's ``_precompute_ref_logps``) is timed on its own. Peak RSS is the child's ``ru_maxrss``
from ``os.wait4``: the whole process, imports and setup included; RSS after imports is shown beside it.

Correctness. (1) The step-1 loss of every configuration, where policy == reference, must be log 2. (2) A perturbed
copy of the policy (seeded Gaussian noise, a fixed fraction of each tensor's std) is trained against the unperturbed
reference for one step by both trainers, each with both reference modes: the four step-1 losses must agree within
1e-4. Any failure exits 1. The trainers themselves live in ``dpo_workers.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from dpo_workers import train_config  # this directory is on sys.path when the script runs

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HH_TEST = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
TOLERANCE = 1e-4

# Sized for a 2-core CPU with one thread per process: tiny < 2 min, smollm2 < 10 min (see bench/README.md). A tiny step
# takes ~30 ms, so it gets many steps and repeats; pairs >= batch_size x (warmup + steps) lets every step see new pairs.
# SmolLM2's first step after a single warm-up step is 20-40% slower in every configuration (fresh pages for the
# activations next to the new AdamW state), so it warms up for two.
# perturb: relative weight noise for the loss check, chosen so the step-1 loss moves well away from log 2 (the random
# tiny model barely reacts to noise; SmolLM2 at 0.2 gives margins of hundreds of nats, needlessly far).
PRESETS = {
    "tiny-llama": dict(pairs=128, warmup=1, steps=30, batch_size=4, max_length=128, repeats=3, perturb=0.5),
    "smollm2-135m": dict(pairs=4, warmup=2, steps=3, batch_size=4, max_length=128, repeats=1, perturb=0.05),
}
CONFIGS = {  # name -> (trainer, reference mode shown in the table)
    "eh-cache": ("evalharness", "reference cache"),
    "eh-live": ("evalharness", "live reference forward"),
    "trl-precompute": ("TRL DPOTrainer", "precompute_ref_log_probs=True"),
    "trl-live": ("TRL DPOTrainer", "precompute_ref_log_probs=False"),
}


# ---------------------------------------------------------------------------------------------------- data


def tokenised_pairs(spec: dict) -> dict:
    """evalharness's token ids and the batch of every step, exactly as its loop will see them."""
    from evalharness.models import load_tokenizer, resolve_model
    from trainers.batching import batch_order, example_length
    from trainers.loop import prepare_examples
    from trainers.recipes import build_stage, parse_stages
    from trainers.setup import load_examples

    cfg = train_config(spec, reference_cache=True)
    loss_spec, params = build_stage(parse_stages("dpo")[0], cfg.params)
    examples, _ = load_examples(cfg)
    tok = prepare_examples(examples, load_tokenizer(resolve_model(spec["model"])), cfg, loss_spec, params)
    pairs = tok.examples
    split = [i for i, ex in enumerate(pairs) if ex.chosen.prompt != ex.rejected.prompt]
    if split:
        raise SystemExit(f"pairs {split[:5]} have x+ != x-: TRL's format holds one prompt per pair; use fewer --pairs")
    if len(pairs) < spec["batch_size"]:
        raise SystemExit(f"only {len(pairs)} usable pairs for batch size {spec['batch_size']}")
    lengths = [example_length(ex) for ex in pairs]
    n_batches = len(batch_order(lengths, spec["batch_size"], spec["seed"], 0))
    schedule = []
    for step in range(spec["warmup"] + spec["steps"]):  # the loop's own rule for one process and grad_accum 1
        epoch, within = divmod(step, n_batches)
        schedule.append(batch_order(lengths, spec["batch_size"], spec["seed"], epoch)[within])
    rows = [{"prompt_ids": list(ex.chosen.prompt), "chosen_ids": list(ex.chosen.response),
             "rejected_ids": list(ex.rejected.response)} for ex in pairs]
    tokens = [sum(len(pairs[i].chosen) + len(pairs[i].rejected) for i in batch) for batch in schedule]
    return {"rows": rows, "schedule": schedule, "tokens": tokens, "truncated": tok.truncated,
            "mean_len": sum(len(ex.chosen) + len(ex.rejected) for ex in pairs) / (2 * len(pairs))}


# --------------------------------------------------------------------------------------------------- runs


def launch(spec: dict, name: str) -> dict:
    """Run one worker in its own process (one thread); return its result with the process's peak RSS.

    Each process gets its own directory, so no store, reference cache or datasets cache is shared between runs.
    """
    work = Path(spec["work"]) / name
    work.mkdir()
    spec = dict(spec, work=str(work), result=str(work / "result.json"), launched_at=time.time())
    (work / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TQDM_DISABLE="1",
               HF_DATASETS_CACHE=str(work / "hf-datasets"), PYTHONWARNINGS="ignore")
    log_path = work / "log.txt"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(BENCH / "dpo_workers.py"), str(work / "spec.json")],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"worker {name} exited {proc.returncode}:\n{tail}")
    result = json.loads(Path(spec["result"]).read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def perturbed_copy(model: str, dest: Path, scale: float) -> str:
    """Save the model with seeded Gaussian noise (``scale`` x each tensor's std) added to every weight."""
    import torch

    from evalharness.models import load_causal_lm, load_tokenizer

    policy = load_causal_lm(model)
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for p in policy.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=gen) * (scale * float(p.std())))
    policy.save_pretrained(dest)
    load_tokenizer(model).save_pretrained(dest)
    return str(dest)


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-llama",
                    help="tiny-llama (default) or smollm2-135m; other names/paths get the smollm2 sizes")
    ap.add_argument("--pairs", type=int, help="pairs to load (default per model, see PRESETS)")
    ap.add_argument("--warmup", type=int, help="untimed optimizer steps first (default per model)")
    ap.add_argument("--steps", type=int, help="timed optimizer steps, after the warm-up")
    ap.add_argument("--batch-size", type=int, help="pairs per step")
    ap.add_argument("--max-length", type=int, help="max tokens of prompt + response (prompt keeps its last half)")
    ap.add_argument("--repeats", type=int, help="processes per configuration, interleaved; medians are reported")
    ap.add_argument("--data", default=None, help="hh-rlhf (default when shared/data has it) or synthetic")
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=5e-7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="comma-separated subset of " + ",".join(CONFIGS))
    ap.add_argument("--no-check", action="store_true", help="skip the perturbed-policy loss check")
    ap.add_argument("--profile", action="store_true", help="torch.profiler top ops over the timed steps (slower)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, specs, checkpoints)")
    args = ap.parse_args(argv)

    os.environ.setdefault("TQDM_DISABLE", "1")  # weight-loading bars in this process; workers get it too
    preset = PRESETS.get(args.model, PRESETS["smollm2-135m"])
    data = args.data or ("hh-rlhf" if HH_TEST.exists() else "synthetic")
    work = Path(tempfile.mkdtemp(prefix="bench-train-vs-trl-"))
    from evalharness.models import resolve_model

    base = str(resolve_model(args.model))  # converts/builds once, before anything is timed
    pick = {k: getattr(args, k) if getattr(args, k) is not None else preset[k]
            for k in ("pairs", "warmup", "steps", "batch_size", "max_length", "repeats")}
    spec = dict(model=base, data=data, data_path=str(HH_TEST) if data == "hh-rlhf" else None, **pick,
                beta=args.beta, lr=args.lr, seed=args.seed, work=str(work), profile=args.profile,
                init_from=None, reference=None, perturb=preset["perturb"])
    if min(spec["warmup"], spec["steps"], spec["repeats"]) < 1:
        raise SystemExit("--warmup, --steps and --repeats must be >= 1")
    try:
        return _run(args, spec)
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run(args, spec: dict) -> int:
    wanted = args.only.split(",") if args.only else list(CONFIGS)
    unknown = set(wanted) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"--only: unknown {sorted(unknown)}; known: {', '.join(CONFIGS)}")
    t_start = time.perf_counter()
    spec.update(tokenised_pairs(spec))
    print_header(args.model, spec)
    runs = measure(spec, wanted)
    results = {name: summarise(rs) for name, rs in runs.items()}
    print_table(results)
    if spec["repeats"] > 1:
        for name, rs in runs.items():
            print(f"  {name:<16}tokens/s per process: " + ", ".join(f"{r['tokens_per_s']:.0f}" for r in rs)
                  + "; slowest step per process: " + ", ".join(f"{max(r['step_s']):.3f}s" for r in rs))
    print_ratios(results)
    failures = check_step1(runs)
    if not args.no_check:
        failures += perturbed_check(spec)
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")
    if args.profile:
        print("PROFILED RUN: the profilers slow every step and inflate RSS; take the table from an unprofiled run")
        for name, rs in runs.items():
            print(f"\n## {name}: torch.profiler top ops, then cProfile top functions, over the timed steps\n"
                  f"{rs[0]['profile']}")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"all loss checks passed (tolerance {TOLERANCE:g})")
    return 0


def print_header(model: str, spec: dict) -> None:
    import torch
    import transformers
    import trl

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"# evalharness DPO vs TRL DPOTrainer, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {cpu}, {os.cpu_count()} cores; 1 torch thread per process, one process at a time")
    print(f"versions: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
          f"python {platform.python_version()}")
    print(f"model {model}; data {spec['data']}: {len(spec['rows'])} pairs ({spec['truncated']} truncated), "
          f"mean {spec['mean_len']:.0f} tokens/sequence; batch {spec['batch_size']} pairs; max_length "
          f"{spec['max_length']};\n{spec['warmup']} warm-up + {spec['steps']} timed steps = "
          f"{sum(spec['tokens'][spec['warmup']:])} non-pad tokens timed; {spec['repeats']} process(es) per configuration")


def measure(spec: dict, wanted: list[str]) -> dict[str, list[dict]]:
    """Every configuration ``repeats`` times, interleaved so a busy minute on a shared machine hits all of them."""
    timed_tokens = sum(spec["tokens"][spec["warmup"]:])
    runs: dict[str, list[dict]] = {name: [] for name in wanted}
    for rep in range(spec["repeats"]):
        for name in wanted:
            kind, mode = name.split("-")
            r = launch(dict(spec, kind=kind, modes=[mode]), f"{name}-{rep}")
            v = r["variants"][mode]
            seen = v.get("tokens_seen")
            if seen is not None and seen != sum(spec["tokens"]):
                raise SystemExit(f"{name}: TRL processed {seen} tokens, evalharness's schedule has "
                                 f"{sum(spec['tokens'])}: the batches differ, so the comparison would be unfair")
            runs[name].append(dict(v, peak_rss_mb=r["peak_rss_mb"], rss_after_import_mb=r["rss_after_import_mb"],
                                   tokens_per_s=timed_tokens / v["timed_s"],
                                   tokens_per_cpu_s=timed_tokens / v["cpu_s"]))
    return runs


def print_table(results: dict[str, dict]) -> None:
    head = (f"{'trainer':<16}{'reference log-probs':<31}{'ref build s':>12}{'tokens/s':>10}{'spread':>8}"
            f"{'tok/CPU-s':>11}{'p50 s/step':>11}{'max s/step':>11}{'peak RSS MB':>13}{'RSS import':>12}"
            f"{'startup s':>11}")
    print(f"\n{head}\n{'-' * len(head)}")
    for name, r in results.items():
        build = f"{r['ref_precompute_s']:.2f}" if r["ref_precompute_s"] is not None else "-"
        print(f"{CONFIGS[name][0]:<16}{CONFIGS[name][1]:<31}{build:>12}{r['tokens_per_s']:>10.0f}"
              f"{r['spread']:>7.0%} {r['tokens_per_cpu_s']:>11.0f}{r['p50_step_s']:>11.3f}{r['max_step_s']:>11.3f}"
              f"{r['peak_rss_mb']:>13.0f}{r['rss_after_import_mb']:>12.0f}{r['startup_s']:>11.1f}")
    print("medians over processes. tokens/s: all timed steps / their wall time; spread: (max - min) / median of it;\n"
          "tok/CPU-s: the same tokens / the process's CPU time over those steps (steadier when the cores are shared);\n"
          "p50 / max s/step: median and slowest timed step; ref build: one-off reference log-probs of all pairs;\n"
          "RSS import: after the trainer's imports; startup: process start to the end of the warm-up.")


def print_ratios(results: dict[str, dict]) -> None:
    trl_runs = [n for n in ("trl-precompute", "trl-live") if n in results]
    best = max(trl_runs, key=lambda n: results[n]["tokens_per_s"]) if trl_runs else None
    print()
    for ours, theirs in dict.fromkeys([("eh-cache", best), ("eh-live", best), ("eh-cache", "trl-precompute"),
                                       ("eh-live", "trl-live")]):
        if ours in results and theirs in results:
            label = f"TRL(best: {theirs[4:]})" if theirs == best else f"TRL({theirs[4:]})"
            a, b = results[ours], results[theirs]
            print(f"evalharness({ours[3:]}) / {label} = {ratio(a['tokens_per_s'], b['tokens_per_s'])} tokens/s "
                  f"({ratio(a['tokens_per_cpu_s'], b['tokens_per_cpu_s'])} per CPU-second), "
                  f"{ratio(a['peak_rss_mb'], b['peak_rss_mb'])} peak RSS")


def check_step1(runs: dict[str, list[dict]]) -> list[str]:
    """At step 1 the policy is the reference, so every configuration's loss must be log 2."""
    failures = []
    print(f"\nstep-1 loss with policy == reference (expect log 2 = {math.log(2):.6f}), every process:")
    for name, rs in runs.items():
        worst = max(abs(r["losses"][0] - math.log(2)) for r in rs)
        print(f"  {name:<16}{rs[0]['losses'][0]:.6f}   max |loss - log 2| {worst:.2e}")
        if worst > TOLERANCE:
            failures.append(f"{name}: step-1 loss is not log 2 (off by {worst:.2e})")
    for ours, theirs in (("eh-cache", "trl-precompute"), ("eh-live", "trl-live")):
        if ours in runs and theirs in runs:  # not a pass/fail: trajectories may drift apart in float32
            a, b = runs[ours][0]["losses"], runs[theirs][0]["losses"]
            gap = max(abs(x - y) for x, y in zip(a, b))
            print(f"  (info) {ours} vs {theirs}: max |loss difference| over all {len(a)} steps {gap:.2e}")
    return failures


def summarise(rs: list[dict]) -> dict:
    speeds = [r["tokens_per_s"] for r in rs]
    out = {k: median([r[k] for r in rs]) for k in ("tokens_per_s", "tokens_per_cpu_s", "timed_s", "peak_rss_mb",
                                                   "rss_after_import_mb", "startup_s")}
    out["p50_step_s"] = median([median(r["step_s"]) for r in rs])
    out["max_step_s"] = median([max(r["step_s"]) for r in rs])
    builds = [r["ref_precompute_s"] for r in rs if r["ref_precompute_s"] is not None]
    out["ref_precompute_s"] = median(builds) if builds else None
    out["spread"] = (max(speeds) - min(speeds)) / out["tokens_per_s"]
    return out


def perturbed_check(spec: dict) -> list[str]:
    """Step-1 loss of a perturbed policy against the unperturbed reference, both trainers, both reference modes."""
    policy = perturbed_copy(spec["model"], Path(spec["work"]) / "perturbed", spec["perturb"])
    check = dict(spec, warmup=1, steps=0, profile=False, init_from=policy, reference=spec["model"])
    losses = {}
    for kind, modes in (("eh", ["cache", "live"]), ("trl", ["precompute", "live"])):
        r = launch(dict(check, kind=kind, modes=modes), f"check-{kind}")
        losses.update({f"{kind}-{m}": v["losses"][0] for m, v in r["variants"].items()})
    spread = max(losses.values()) - min(losses.values())
    print(f"\nstep-1 loss, perturbed policy (noise {spec['perturb']:g} x std) vs the base reference, same first batch:")
    for name, value in losses.items():
        print(f"  {name:<16}{value:.6f}   |diff to eh-cache| {abs(value - losses['eh-cache']):.2e}")
    print(f"  max |difference| {spread:.2e} (tolerance {TOLERANCE:g})")
    failures = []
    if spread > TOLERANCE:
        failures.append(f"perturbed step-1 losses differ by {spread:.2e} > {TOLERANCE:g}: {losses}")
    if abs(losses["eh-cache"] - math.log(2)) < 1e-3:
        failures.append("the perturbed loss is still ~log 2: the check would not catch a reference mix-up")
    return failures


if __name__ == "__main__":
    sys.exit(main())

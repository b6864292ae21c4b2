"""evalharness vs TRL's ``DPOTrainer`` per loss: same weights, same token ids, same batches, one table.

    .venv/bin/python bench/train_vs_trl.py                        # tiny-llama, dpo/ipo/exmate/e-dpo: ~6 min
    .venv/bin/python bench/train_vs_trl.py --model smollm2-135m   # 4 pairs x 128 tokens: 26 min at load 4-6

Losses. ``dpo`` (TRL ``loss_type=["sigmoid"]``) and ``ipo`` (TRL ``loss_type=["ipo"]``, evalharness ``reduction=mean``,
which is TRL's form) run on both trainers, evalharness with and without its reference cache, TRL with
``precompute_ref_log_probs`` on and off. TRL has no ExMATE and no ε-DPO: ``exmate`` (no reference model) and ``e-dpo``
(the reference's full logits each step: from a live reference forward, ``eh-live``, or from its LM head on its final
hidden states cached before training, ``eh-hcache``) run on evalharness alone and are compared with evalharness's own
DPO from the same run.

What is held equal. The pairs are tokenised once, by evalharness (its prompt rendering and truncation rule); TRL
receives those token ids (its own tokenisation is bypassed) and a sampler that replays evalharness's length-bucketed
batch order, so step k of every configuration sees the same pairs and the same padding. Both sides use float32, AdamW
(lr, betas, eps, no weight decay), a constant schedule, grad-norm clip 10 and β = 0.1; TRL's defaults that differ
(bf16, gradient checkpointing, clip 1.0, fused AdamW) are switched off. Each configuration runs in its own process with
one torch thread (``torch.set_num_threads(1)``, OMP/MKL at 1), one process at a time.

What is measured. ``warmup + steps`` optimizer steps; the warm-up steps are not timed. tokens/s = non-pad tokens
(prompt + response, chosen + rejected) of the timed steps / wall time from the end of the last warm-up step to the end
of the last step, taken from each trainer's own per-step callback, so the loop's own overhead (logging, metrics,
store writes) is included and model loading, reference precomputation and checkpoint saving are not. CPU time of the
same span is reported beside it: with one thread it equals wall time on an idle machine and stays put when other
processes share the cores. The one-off reference precompute (evalharness's
``ReferenceCache.fill``, TRL's ``_precompute_ref_logps``) is timed on its own. Peak RSS is the child's ``ru_maxrss``
from ``os.wait4``: the whole process, imports and setup included; RSS after imports is shown beside it. ``--flops``
adds achieved model FLOP/s against this machine's measured peak matmul FLOP/s (``train_flops.py``).

Correctness. (1) The step-1 loss of every configuration, where policy == reference, must be its closed form: log 2
for DPO and e-DPO, 1/(2β)² for IPO; ExMATE's processes must agree with each other. (2) For each loss TRL has, a
perturbed copy of the policy (seeded Gaussian noise, a fixed fraction of each tensor's std) is trained against the
unperturbed reference for one step by both trainers, each with both reference modes: the four step-1 losses must
agree within 1e-4. Any failure exits 1. The trainers themselves live in ``dpo_workers.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from dpo_workers import LOSSES, train_config  # this directory is on sys.path when the script runs

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HH_TEST = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
TOLERANCE = 1e-4

# Sized for a 2-core CPU with one thread per process: per loss, tiny ~1.5 min, smollm2 ~5 min when idle. A tiny step
# takes ~30 ms, so it gets many steps and repeats; pairs >= batch_size x (warmup + steps) lets every step see new pairs.
# SmolLM2's first step after a single warm-up step is 20-40% slower in every configuration (fresh pages for the
# activations next to the new AdamW state), so it warms up for two.
# perturb: relative weight noise for the loss check, chosen so the step-1 loss moves well away from log 2 (the random
# tiny model barely reacts to noise; SmolLM2 at 0.2 gives margins of hundreds of nats, needlessly far).
PRESETS = {
    "tiny-llama": dict(pairs=128, warmup=1, steps=30, batch_size=4, max_length=128, repeats=3, perturb=0.5),
    "smollm2-135m": dict(pairs=4, warmup=2, steps=3, batch_size=4, max_length=128, repeats=1, perturb=0.05),
}
CONFIGS = {  # side-mode -> (trainer, reference mode shown in the table)
    "eh-cache": ("evalharness", "reference cache"),
    "eh-live": ("evalharness", "live reference forward"),
    "eh-concat": ("evalharness", "cache; prompt not shared"),
    "eh-noref": ("evalharness", "none (no reference model)"),
    "eh-hcache": ("evalharness", "head on cached hidden states"),
    "trl-precompute": ("TRL DPOTrainer", "precompute_ref_log_probs=True"),
    "trl-live": ("TRL DPOTrainer", "precompute_ref_log_probs=False"),
}
# The configurations each loss can run in: where TRL has the loss, both trainers in both reference modes.
LOSS_CONFIGS = {
    "dpo": ["eh-cache", "eh-live", "trl-precompute", "trl-live", "eh-concat"],
    "ipo": ["eh-cache", "eh-live", "trl-precompute", "trl-live", "eh-concat"],
    "exmate": ["eh-noref"],
    # needs the reference's full logits every step: a live forward, or its head on cached final hidden states
    "e-dpo": ["eh-hcache", "eh-live"],
}


def run_names(losses: list[str], only: list[str] | None) -> list[str]:
    """``loss:side-mode`` names for the chosen losses; ``only`` keeps side-modes (``eh-cache``) or full names."""
    unknown = set(losses) - set(LOSS_CONFIGS)
    if unknown:
        raise SystemExit(f"--losses: unknown {sorted(unknown)}; known: {', '.join(LOSS_CONFIGS)}")
    names = [f"{loss}:{cfg}" for loss in losses for cfg in LOSS_CONFIGS[loss]]
    if only:
        bad = [o for o in only if o not in CONFIGS and o not in names]
        if bad:
            raise SystemExit(f"--only: unknown {bad}; known: {', '.join(list(CONFIGS) + names)}")
        names = [n for n in names if n in only or n.split(":")[1] in only]
    if not names:
        raise SystemExit("nothing to run: --only removed every configuration of --losses")
    return names


# ---------------------------------------------------------------------------------------------------- data


def tokenised_pairs(spec: dict) -> dict:
    """evalharness's token ids and the batch of every step, exactly as its loop will see them."""
    from evalharness.models import load_tokenizer, resolve_model
    from trainers.batching import batch_order, example_length
    from trainers.examples import prepare_examples
    from trainers.recipes import build_stage, parse_stages
    from trainers.setup import load_examples

    cfg = train_config(dict(spec, loss="dpo"), reference_cache=True)  # the benched losses tokenise alike
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


def build_parser() -> argparse.ArgumentParser:
    """The flags shared by every training bench (``train_flops.py`` and ``train_scaling.py`` reuse them)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-llama",
                    help="tiny-llama (default) or smollm2-135m; other names/paths get the smollm2 sizes")
    ap.add_argument("--losses", default="dpo,ipo,exmate,e-dpo", help="comma-separated subset of " + ",".join(LOSSES))
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
    ap.add_argument("--only", default=None,
                    help="comma-separated side-modes (" + ",".join(CONFIGS) + ") or loss:side-mode names")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, specs, checkpoints)")
    return ap


def make_spec(args, work: Path) -> dict:
    """The spec every worker gets, from the parsed flags and the model's preset."""
    from evalharness.models import resolve_model

    os.environ.setdefault("TQDM_DISABLE", "1")  # weight-loading bars in this process; workers get it too
    preset = PRESETS.get(args.model, PRESETS["smollm2-135m"])
    data = args.data or ("hh-rlhf" if HH_TEST.exists() else "synthetic")
    base = str(resolve_model(args.model))  # converts/builds once, before anything is timed
    pick = {k: getattr(args, k) if getattr(args, k) is not None else preset[k]
            for k in ("pairs", "warmup", "steps", "batch_size", "max_length", "repeats")}
    spec = dict(model=base, data=data, data_path=str(HH_TEST) if data == "hh-rlhf" else None, **pick,
                beta=args.beta, lr=args.lr, seed=args.seed, work=str(work), profile=getattr(args, "profile", False),
                init_from=None, reference=None, perturb=preset["perturb"])
    if min(spec["warmup"], spec["steps"], spec["repeats"]) < 1:
        raise SystemExit("--warmup, --steps and --repeats must be >= 1")
    return spec


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    ap.add_argument("--no-check", action="store_true", help="skip the perturbed-policy loss check")
    ap.add_argument("--flops", action="store_true",
                    help="also achieved model FLOP/s vs this machine's peak matmul FLOP/s (train_flops.py)")
    ap.add_argument("--profile", action="store_true", help="torch.profiler top ops over the timed steps (slower)")
    ap.add_argument("--json", default=None, help="also write every process's result to this JSON file")
    args = ap.parse_args(argv)
    names = run_names(args.losses.split(","), args.only.split(",") if args.only else None)
    work = Path(tempfile.mkdtemp(prefix="bench-train-vs-trl-"))
    try:
        return _run(args, make_spec(args, work), names)
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run(args, spec: dict, names: list[str]) -> int:
    t_start = time.perf_counter()
    spec.update(tokenised_pairs(spec))
    print_header(args.model, spec, title="evalharness vs TRL DPOTrainer, per loss")
    peak_before = None
    if args.flops:
        from train_flops import measure_peak

        peak_before = measure_peak()
    runs = measure(spec, names)
    results = {name: summarise(rs) for name, rs in runs.items()}
    print_table(results)
    if spec["repeats"] > 1:
        for name, rs in runs.items():
            print(f"  {name:<20}tokens/s per process: " + ", ".join(f"{r['tokens_per_s']:.0f}" for r in rs)
                  + "; slowest step per process: " + ", ".join(f"{max(r['step_s']):.3f}s" for r in rs))
    print_ratios(results)
    if args.flops:
        from train_flops import measure_peak, print_flops

        print_flops(spec, results, [peak_before, measure_peak()])
    failures = check_step1(runs, spec["beta"])
    if not args.no_check:
        for loss in dict.fromkeys(n.split(":")[0] for n in names):
            if LOSSES[loss].trl_loss_type and f"{loss}:eh-cache" in runs:
                failures += perturbed_check(spec, loss)
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"spec": {k: v for k, v in spec.items() if k not in ("rows",)},
                                               "runs": runs, "summary": results}, indent=1, default=str))
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


def machine_line() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"machine: {cpu}, {os.cpu_count()} cores, load average {load}; 1 torch thread per process, one at a time"


def print_header(model: str, spec: dict, title: str) -> None:
    import torch
    import transformers
    import trl

    print(f"# {title}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(machine_line())
    print(f"versions: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
          f"python {platform.python_version()}")
    print(f"model {model}; data {spec['data']}: {len(spec['rows'])} pairs ({spec['truncated']} truncated), "
          f"mean {spec['mean_len']:.0f} tokens/sequence; batch {spec['batch_size']} pairs; max_length "
          f"{spec['max_length']}; beta {spec['beta']:g} (exmate: its default 0.05);\n{spec['warmup']} warm-up + "
          f"{spec['steps']} timed steps = {sum(spec['tokens'][spec['warmup']:])} non-pad tokens timed; "
          f"{spec['repeats']} process(es) per configuration")


def measure(spec: dict, names: list[str]) -> dict[str, list[dict]]:
    """Every configuration ``repeats`` times, interleaved so a busy minute on a shared machine hits all of them."""
    timed_tokens = sum(spec["tokens"][spec["warmup"]:])
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for rep in range(spec["repeats"]):
        for name in names:
            loss, config = name.split(":")
            kind, mode = config.split("-")
            r = launch(dict(spec, loss=loss, kind=kind, modes=[mode]), f"{loss}-{config}-{rep}")
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
    head = (f"{'loss':<8}{'trainer':<16}{'reference log-probs':<31}{'ref build s':>12}{'tokens/s':>10}{'best':>8}"
            f"{'spread':>8}"
            f"{'tok/CPU-s':>11}{'p50 s/step':>11}{'max s/step':>11}{'peak RSS MB':>13}{'RSS import':>12}"
            f"{'startup s':>11}")
    print(f"\n{head}\n{'-' * len(head)}")
    for name, r in results.items():
        loss, config = name.split(":")
        build = f"{r['ref_precompute_s']:.2f}" if r["ref_precompute_s"] is not None else "-"
        print(f"{loss:<8}{CONFIGS[config][0]:<16}{CONFIGS[config][1]:<31}{build:>12}{r['tokens_per_s']:>10.0f}"
              f"{r['best_tokens_per_s']:>8.0f}{r['spread']:>7.0%} {r['tokens_per_cpu_s']:>11.0f}{r['p50_step_s']:>11.3f}{r['max_step_s']:>11.3f}"
              f"{r['peak_rss_mb']:>13.0f}{r['rss_after_import_mb']:>12.0f}{r['startup_s']:>11.1f}")
    print("medians over processes. tokens/s: all timed steps / their wall time; best: the fastest process's tokens/s\n"
          "(the least disturbed by other jobs on a shared machine); spread: (max - min) / median of tokens/s;\n"
          "tok/CPU-s: the same tokens / the process's CPU time over those steps (steadier when the cores are shared);\n"
          "p50 / max s/step: median and slowest timed step; ref build: one-off reference log-probs of all pairs\n"
          "(evalharness's build loads the reference model itself: that load is left out, as TRL's is);\n"
          "RSS import: after the trainer's imports; startup: process start to the end of the warm-up.")


def ratio_line(a: dict, b: dict) -> str:
    return (f"{ratio(a['tokens_per_s'], b['tokens_per_s'])} tokens/s "
            f"({ratio(a['best_tokens_per_s'], b['best_tokens_per_s'])} best process to best process, "
            f"{ratio(a['tokens_per_cpu_s'], b['tokens_per_cpu_s'])} per CPU-second), "
            f"{ratio(a['peak_rss_mb'], b['peak_rss_mb'])} peak RSS")


def best_trl(results: dict[str, dict], loss: str) -> str | None:
    """TRL's faster reference mode for ``loss`` in this run, by tokens per CPU-second: on an idle machine that is
    tokens/s, and on a shared one it is the measure other jobs disturb least."""
    trl_runs = [f"{loss}:{c}" for c in ("trl-precompute", "trl-live") if f"{loss}:{c}" in results]
    return max(trl_runs, key=lambda n: results[n]["tokens_per_cpu_s"]) if trl_runs else None


def print_ratios(results: dict[str, dict]) -> None:
    print()
    for loss in dict.fromkeys(n.split(":")[0] for n in results):
        if LOSSES[loss].trl_loss_type is None:
            print(f"{loss}: TRL has no such loss; evalharness {loss} against evalharness dpo in this run:")
            for ours in (n for n in results if n.startswith(f"{loss}:")):
                for ref in ("dpo:eh-cache", "dpo:eh-live"):
                    if ref in results:
                        print(f"  evalharness {ours} / evalharness {ref} = {ratio_line(results[ours], results[ref])}")
            continue
        best = best_trl(results, loss)
        pairs = [("eh-cache", best), ("eh-live", best), ("eh-cache", f"{loss}:trl-precompute"),
                 ("eh-live", f"{loss}:trl-live"), ("eh-concat", best)]
        for ours, theirs in dict.fromkeys((f"{loss}:{o}", t) for o, t in pairs if t):
            if ours in results and theirs in results:
                mode = theirs.split(":")[1][4:]
                label = f"TRL(best: {mode})" if theirs == best else f"TRL({mode})"
                print(f"{loss}: evalharness({ours.split(':')[1][3:]}) / {label} = "
                      f"{ratio_line(results[ours], results[theirs])}")
        shared, concat = f"{loss}:eh-cache", f"{loss}:eh-concat"
        if shared in results and concat in results:
            print(f"{loss}: evalharness(cache, prompt shared) / evalharness(cache, prompt not shared) = "
                  f"{ratio_line(results[shared], results[concat])}")


def check_step1(runs: dict[str, list[dict]], beta: float) -> list[str]:
    """At step 1 the policy is the reference: each loss's closed form; without one, every process must agree."""
    failures = []
    print("\nstep-1 loss with policy == reference, every process:")
    for name, rs in runs.items():
        step1 = LOSSES[name.split(":")[0]].step1
        expect = step1(beta) if step1 else rs[0]["losses"][0]
        worst = max(abs(r["losses"][0] - expect) for r in rs)
        what = f"expect {expect:.6f}" if step1 else "no closed form: processes agree to"
        print(f"  {name:<20}{rs[0]['losses'][0]:.6f}   {what}   max |difference| {worst:.2e}")
        if worst > TOLERANCE:
            failures.append(f"{name}: step-1 loss is off by {worst:.2e} ({what})")
    for loss in dict.fromkeys(n.split(":")[0] for n in runs):
        for ours, theirs in (("eh-cache", "trl-precompute"), ("eh-live", "trl-live")):
            a, b = runs.get(f"{loss}:{ours}"), runs.get(f"{loss}:{theirs}")
            if a and b:  # not a pass/fail: trajectories may drift apart in float32
                gap = max(abs(x - y) for x, y in zip(a[0]["losses"], b[0]["losses"]))
                print(f"  (info) {loss}: {ours} vs {theirs}: max |loss difference| over all {len(a[0]['losses'])} "
                      f"steps {gap:.2e}")
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
    out["best_tokens_per_s"] = max(speeds)
    loads = [r.get("ref_load_s") for r in rs if r.get("ref_load_s") is not None]
    out["ref_load_s"] = median(loads) if loads else None
    return out


def perturbed_check(spec: dict, loss: str) -> list[str]:
    """Step-1 loss of a perturbed policy against the unperturbed reference, both trainers, both reference modes."""
    policy = Path(spec["work"]) / "perturbed"
    if not policy.exists():
        perturbed_copy(spec["model"], policy, spec["perturb"])
    check = dict(spec, loss=loss, warmup=1, steps=0, profile=False, init_from=str(policy), reference=spec["model"])
    losses = {}
    for kind, modes in (("eh", ["cache", "live"]), ("trl", ["precompute", "live"])):
        r = launch(dict(check, kind=kind, modes=modes), f"check-{loss}-{kind}")
        losses.update({f"{kind}-{m}": v["losses"][0] for m, v in r["variants"].items()})
    spread = max(losses.values()) - min(losses.values())
    print(f"\n{loss}: step-1 loss, perturbed policy (noise {spec['perturb']:g} x std) vs the base reference, "
          "same first batch:")
    for name, value in losses.items():
        print(f"  {name:<16}{value:.6f}   |diff to eh-cache| {abs(value - losses['eh-cache']):.2e}")
    print(f"  max |difference| {spread:.2e} (tolerance {TOLERANCE:g})")
    failures = []
    if spread > TOLERANCE:
        failures.append(f"{loss}: perturbed step-1 losses differ by {spread:.2e} > {TOLERANCE:g}: {losses}")
    if abs(losses["eh-cache"] - LOSSES[loss].step1(spec["beta"])) < 1e-3:
        failures.append(f"{loss}: the perturbed loss is still ~its step-1 value: it would not catch a reference mix-up")
    return failures


if __name__ == "__main__":
    sys.exit(main())

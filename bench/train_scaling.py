"""Cost as the work grows: time per step vs max_length and vs batch size, and reference-cache build time vs pairs.

    .venv/bin/python bench/train_scaling.py length                    # max_length 64/128/256/512, tiny-llama: ~4 min
    .venv/bin/python bench/train_scaling.py batch                     # batch 1/2/4/8 pairs: ~4 min
    .venv/bin/python bench/train_scaling.py cache                     # cache build for 64/128/256/512 pairs: ~2 min
    .venv/bin/python bench/train_scaling.py length --model smollm2-135m --values 64,128 --steps 2 --repeats 1

Every point is a full ``train_vs_trl.py`` measurement (same workers, same held-equal settings, one process per
configuration, one thread) of evalharness and TRL side by side, by default evalharness with its reference cache
against TRL with ``precompute_ref_log_probs=True`` (``--only`` picks others), on DPO (``--losses`` picks another loss
TRL has). ``length`` and ``batch`` print the median time per timed step, the mean non-pad tokens a step trains on,
tokens/s and the evalharness/TRL ratios at each point; ``cache`` runs one warm-up and one timed step per point and
prints each side's one-off reference log-prob build (evalharness's ``ReferenceCache.fill``, TRL's
``_precompute_ref_logps``) for all the loaded pairs. The loss checks of ``train_vs_trl.py`` run on every point.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from train_vs_trl import (  # this directory is on sys.path when the script runs
    build_parser,
    check_step1,
    machine_line,
    make_spec,
    measure,
    median,
    ratio,
    run_names,
    summarise,
    tokenised_pairs,
)

SWEEPS = {  # sweep -> (the spec field it varies, default values, fixed overrides)
    "length": ("max_length", [64, 128, 256, 512], {}),
    "batch": ("batch_size", [1, 2, 4, 8], {}),
    "cache": ("pairs", [64, 128, 256, 512], {"warmup": 1, "steps": 1, "repeats": 1}),
}


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    ap.add_argument("sweep", choices=sorted(SWEEPS))
    ap.add_argument("--values", default=None, help="comma-separated values of the swept field (default per sweep)")
    ap.set_defaults(losses="dpo", only="eh-cache,trl-precompute")
    args = ap.parse_args(argv)
    field, values, fixed = SWEEPS[args.sweep]
    if args.values:
        values = [int(v) for v in args.values.split(",")]
    for key, value in fixed.items():  # explicit flags win over the sweep's fixed settings
        if getattr(args, key) is None:
            setattr(args, key, value)
    names = run_names(args.losses.split(","), args.only.split(","))
    print(f"# scaling: {args.sweep} ({field} = {', '.join(map(str, values))}), {args.model}, "
          f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC\n{machine_line()}\nconfigurations: {', '.join(names)}")
    rows, failures = [], []
    work = Path(tempfile.mkdtemp(prefix="bench-train-scaling-"))
    try:
        for value in values:
            setattr(args, field, value)
            point = work / f"{field}-{value}"
            point.mkdir()
            spec = make_spec(args, point)
            spec.update(tokenised_pairs(spec))
            runs = measure(spec, names)
            failures += [f"{field}={value}: {f}" for f in check_step1(runs, spec["beta"])]
            rows.append((value, spec, runs, {name: summarise(rs) for name, rs in runs.items()}))
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    (print_cache if args.sweep == "cache" else print_steps)(field, names, rows)
    print(f"\nload average at the end: {machine_line().split('load average ')[1].split(';')[0]}")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print("step-1 loss checks passed at every point")
    return 0


def print_steps(field: str, names: list[str], rows: list) -> None:
    """Median s/step (wall and CPU) and tokens/s per configuration at each point, with the first/second ratios."""
    ours, theirs = names[0], names[-1]
    head = f"{field:>11}{'tokens/step':>12}{'mean tok/seq':>13}"
    for name in names:
        head += f"{name + ' s/step':>26}{'CPU s/step':>11}{'tok/s':>8}"
    head += f"{'ratio tok/s':>12}{'per CPU-s':>10}"
    print(f"\n{head}\n{'-' * len(head)}")
    for value, spec, runs, res in rows:
        timed = spec["tokens"][spec["warmup"]:]
        line = f"{value:>11}{sum(timed) / len(timed):>12.0f}{spec['mean_len']:>13.0f}"
        for name in names:
            cpu_step = median([r["cpu_s"] / len(r["step_s"]) for r in runs[name]])
            line += f"{res[name]['p50_step_s']:>26.4f}{cpu_step:>11.4f}{res[name]['tokens_per_s']:>8.0f}"
        line += (f"{ratio(res[ours]['tokens_per_s'], res[theirs]['tokens_per_s']):>12}"
                 f"{ratio(res[ours]['tokens_per_cpu_s'], res[theirs]['tokens_per_cpu_s']):>10}")
        print(line)
    print(f"s/step: median timed step (median process); CPU s/step: the process's CPU time per timed step (median\n"
          f"process; steadier on a shared machine); tokens/step: mean non-pad tokens of a timed step; ratio: {ours} /\n"
          f"{theirs}.")


def print_cache(field: str, names: list[str], rows: list) -> None:
    """One-off reference log-prob build time per side at each number of pairs."""
    builders = [n for n in names if n.split(":")[1] in ("eh-cache", "trl-precompute")]
    head = f"{field:>7}{'tokens':>9}" + "".join(f"{n + ' build s':>30}{'ms/pair':>9}" for n in builders)
    head += f"{'ratio':>8}" if len(builders) == 2 else ""
    head += f"{'eh ref load s':>15}" if any(n.endswith("eh-cache") for n in builders) else ""
    print(f"\n{head}\n{'-' * len(head)}")
    for value, spec, runs, _ in rows:
        builds = {n: median([r["ref_precompute_s"] for r in runs[n]]) for n in builders}
        line = f"{value:>7}{2 * spec['mean_len'] * len(spec['rows']):>9.0f}"
        line += "".join(f"{builds[n]:>30.2f}{1000 * builds[n] / len(spec['rows']):>9.2f}" for n in builders)
        if len(builders) == 2:  # time ratio: below 1 means the first builds faster
            line += f"{ratio(builds[builders[0]], builds[builders[1]]):>8}"
        loads = [r.get("ref_load_s") for n in builders if n.endswith("eh-cache") for r in runs[n]]
        if loads and None not in loads:
            line += f"{median(loads):>15.2f}"
        print(line)
    print("build s: the one-off reference log-probs of all loaded pairs (both responses), cold, median process, without\n"
          "loading the reference model (evalharness loads it inside its build, shown as eh ref load s; TRL loads it\n"
          "before training); tokens: their non-pad tokens; ratio: build time of the first / the second (below 1: the\n"
          "first is faster).")


if __name__ == "__main__":
    sys.exit(main())

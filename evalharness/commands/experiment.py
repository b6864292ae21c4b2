"""`evalharness run`, `evalharness quickstart` and `evalharness doctor`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evalharness.cli import STORE, app, user_errors

QUICKSTART = Path(__file__).resolve().parent.parent / "experiments" / "quickstart.toml"
TASK_MODEL = "task-llama"  # the quickstart file's own model: the benchmark at its default scale


@app.command("run")
def run_command(
    experiment: Path = typer.Argument(..., help="An experiment TOML: runs (losses, grids, recipes), sampling, eval, "
                                                "judges, baseline."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan with counts; load nothing, run nothing."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="KEY=VALUE, VALUE a TOML value or text: a dotted "
                                                                 "path (generate.limit=2, runs.dpo.beta=0.5, "
                                                                 "judge.judges='[\"oracle\"]'), else a \\[defaults] "
                                                                 "setting of every run read as on train "
                                                                 "(max_steps=2, data.limit=8, beta=0.1)."),
    scale: Optional[list[str]] = typer.Option(None, "--scale", help="Merge the file's \\[scales.NAME] table over it "
                                                                    "first (repeatable; the examples define smoke "
                                                                    "and full)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    store: Path = STORE,
):
    """Run an experiment end to end. What is already in the store is skipped; re-running resumes."""
    with user_errors():
        from evalharness.experiment import load_experiment

        exp = load_experiment(experiment, _overrides(set_), scale)
        _run(exp, str(store), dry_run, progress)


@app.command()
def quickstart(
    model: Optional[str] = typer.Option(None, help="task-llama (the default: the benchmark), or a pretrained model "
                                                   "such as smollm2-135m, which runs the file's smollm2 scale: a few "
                                                   "steps of each loss on a real chat model."),
    max_steps: Optional[int] = typer.Option(None, help="Steps of each alignment run (default 150; 5 at the "
                                                       "smollm2 scale)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan only."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    store: Path = typer.Option("quickstart.duckdb", "--store", envvar="EVALHARNESS_STORE", help="The store file."),
):
    """Offline, CPU-only: one SFT model of task-llama, then dpo, exmate and exo-pref over three seeds and a reward
    model; every policy sampled and judged against SFT by the oracle and the reward model; the leaderboard and the
    claims' verdicts (under 10 minutes on 2 cores)."""
    with user_errors():
        from evalharness.experiment import load_experiment

        overrides, scale = _quickstart_setup(model)
        if max_steps is not None:
            overrides["max_steps"] = max_steps
        exp = load_experiment(QUICKSTART, overrides, scale)
        _run(exp, str(store), dry_run, progress)


@app.command()
def doctor(
    base_url: Optional[str] = typer.Option(None, help="Also check that this OpenAI-compatible endpoint answers."),
    store: Path = STORE,
):
    """What is installed (torch, vLLM, GPU), which models resolve offline, whether a judge endpoint answers."""
    with user_errors():
        from evalharness.doctor import checks

        failed = 0
        for ok, name, detail in checks(str(store), base_url):
            failed += ok is False
            mark = {True: "ok  ", False: "FAIL", None: "--  "}[ok]
            typer.echo(f"{mark} {name:<22} {detail}")
        raise typer.Exit(1 if failed else 0)


def _run(exp, store: str, dry_run: bool, progress: bool) -> None:
    from evalharness.experiment import Runner
    from evalharness.store import Store
    from evalharness.textsafe import escape_lines

    def echo(text: str) -> None:
        typer.echo(escape_lines(text))

    runner = Runner(exp, Store(store), progress=progress, echo=echo)
    if dry_run:
        echo(f"experiment {exp.name} ({exp.experiment_id[:12]}), store {store}:")
        for step in runner.plan():
            echo(f"  {step.kind:<8} {step.name:<16} {'to do' if step.todo else 'done ':<6} {step.detail}")
        return
    runner.run()
    for line in runner.leaderboard():
        echo(line)


def _overrides(items: list[str] | None) -> dict:
    from evalharness.config import parse_overrides

    return parse_overrides(items)


def _quickstart_setup(model: str | None) -> tuple[dict, list[str]]:
    """(overrides, scales): the word-level task model trains to convergence here; any other model is a pretrained
    one that gets the smollm2 scale's settings (lr, lengths, the base model as baseline) with its name swapped in."""
    if model in (None, TASK_MODEL):
        return {}, []
    return {"model": model}, ["smollm2"]

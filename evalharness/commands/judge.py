"""`evalharness judge`: pairwise judging in both orders into the store, then the leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evalharness.cli import STORE, app, user_errors


@app.command("judge")
def judge_command(
    judge: Optional[str] = typer.Option(None, "--judge", "-j", help="NAME[:k=v,…]: oracle, reward-model:path=DIR, "
                                        "pairrm, llm:model=gpt-4o,template=mt-bench, gpt-4, or a plugin. Default: "
                                        "chosen from the store (README: a bare judge)."),
    models: Optional[str] = typer.Option(None, "--models", "-m", help="Comma-separated: sampled labels, runs "
                                         "(RUN[:STEP]) or model paths; runs and models not yet sampled are sampled. "
                                         "Default: every finished run, each against its own baseline."),
    baseline: Optional[str] = typer.Option(None, help="Compare every model with this one."),
    all_pairs: bool = typer.Option(False, "--all-pairs", help="Compare every pair of models."),
    vs_reference: bool = typer.Option(False, "--vs-reference", help="Compare each model with the prompt set's "
                                                                     "reference answers."),
    prompts: Optional[str] = typer.Option(None, help="Prompt set the pairs come from. Default: synthetic, or with "
                                          "no --judge/--models the held-out prompts of the runs' data."),
    path: Optional[str] = typer.Option(None, help="File of the prompt set, when models must be sampled."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N prompts when sampling."),
    samples: int = typer.Option(1, help="Samples per prompt to pair (sample i of A meets sample i of B)."),
    temperature: Optional[str] = typer.Option(None, help="Pair samples drawn at this temperature (a number, or a "
                                                     "rule such as fastchat); models with none are sampled at it. "
                                                     "Default: the one setting every model holds."),
    sampling: Optional[str] = typer.Option(None, help="A sampling setting's id, as a candidate list shows it, where "
                                                  "two settings share a temperature."),
    mode: Optional[str] = typer.Option(None, help="single: grade each answer alone (MT-Bench's 1-10, an llm judge; "
                                              "no opponent needed), shown as the board's MT-Bench score. Default: "
                                              "pairwise."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint for llm judges (key: "
                                                       "OPENAI_API_KEY, never stored)."),
    model: Optional[str] = typer.Option(None, "--judge-model", help="The llm judge's model name, e.g. gpt-4o."),
    concurrency: Optional[int] = typer.Option(None, help="Requests in flight for llm judges."),
    leaderboard: bool = typer.Option(True, help="Print the leaderboard after judging."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (models, judge, prompts, samples, judge "
                                                       "calls, cost) and run nothing."),
    store: Path = STORE,
):
    """Judge every pair in both orders; both raw verdicts are stored. Re-running makes no new judge calls."""
    with user_errors():
        from evalharness.judging import JudgeConfig
        from evalharness.judging import judge as run_judge
        from evalharness.store import Store
        from evalharness.textsafe import escape_controls

        _check_limit(limit)
        options = {"base_url": base_url, "model": model, "concurrency": concurrency}
        if judge is None or models is None or dry_run:
            from evalharness.commands._bare_judge import judge_bare
            from evalharness.config import ConfigError

            if all_pairs or vs_reference or mode or temperature or sampling:
                raise ConfigError("--all-pairs, --vs-reference, --mode, --temperature and --sampling need both "
                                  "--judge and --models")
            named = [m.strip() for m in models.split(",") if m.strip()] if models else None
            return judge_bare(Store(str(store)), judge, named, baseline, prompts, path, limit, samples, options,
                              dry_run, leaderboard, progress)
        prompts = "synthetic" if prompts is None else prompts
        cfg = JudgeConfig(judge, [m.strip() for m in models.split(",") if m.strip()], baseline, all_pairs,
                          vs_reference, prompts, path, limit, samples, judge_options=options,
                          temperature=_temperature(temperature), sampling=sampling, mode=mode)
        report = run_judge(cfg, Store(str(store)), progress=progress)
        for note in report.notes:
            typer.echo(escape_controls(note))
        typer.echo(escape_controls(report.line()))
        failed = report.every_call_failed()
        if failed:  # nothing was judged: a board and exit 0 would read as a result
            typer.echo("error: " + escape_controls(failed), err=True)
            raise typer.Exit(1)
        if leaderboard:
            _print_leaderboard(str(store), report, prompts, baseline)


def _print_leaderboard(store: str, report, prompts: str, baseline: str | None) -> None:
    """The board of what was just judged: this judge's template and the one sampling setting it paired, its turns
    pooled (FastChat's overall, where turn 2 was judged too)."""
    from evalharness.evalkey import sampling_id
    from leaderboards.cli_support import leaderboard_text

    typer.echo(leaderboard_text(store, judge=report.judge, prompts=prompts, baseline=baseline,
                                template=report.template or None, turn="all",
                                sampling=sampling_id(report.sampling) if report.sampling else None), nl=False)


def _temperature(value: str | None):
    from evalharness.evalkey import parse_temperature

    return parse_temperature(value)


def _check_limit(limit: int | None) -> None:
    from evalharness import limits

    limits.count("--limit", limit, none=True)  # checked even when every model is sampled already and it goes unused

"""`evalharness judge` with --judge or --models left out: the planner's choices, printed, then judged board by board."""

from __future__ import annotations

import typer


def judge_bare(store, judge: str | None, models: list[str] | None, baseline: str | None, prompts: str | None,
               path: str | None, limit: int | None, samples: int, options: dict, dry_run: bool, leaderboard: bool,
               progress: bool) -> None:
    from evalharness.judge_plan import plan
    from evalharness.judging import JudgeConfig
    from evalharness.judging import judge as run_judge
    from evalharness.textsafe import escape_controls

    boards = plan(store, judge, models, baseline, prompts, path, limit)
    configs = [JudgeConfig(b.judge, b.models, b.baseline, prompts=b.prompts, path=b.path, limit=b.limit,
                           samples=samples, judge_options=options, prompt_list=b.prompt_list) for b in boards]
    for b in boards:  # every choice is shown before anything runs
        for line in b.lines(samples):
            typer.echo(escape_controls(line))
    if dry_run:
        typer.echo("dry run: nothing sampled or judged")
        return
    failures = []
    for b, cfg in zip(boards, configs):
        report = run_judge(cfg, store, progress=progress)
        for note in report.notes:
            typer.echo(escape_controls(note))
        typer.echo(escape_controls(report.line()))
        failed = report.every_call_failed()
        if failed:  # this board has nothing judged: no board, and the command ends non-zero after the others
            failures.append(failed)
            continue
        if leaderboard:
            _board(str(store.path), report, b.prompts, b.baseline_label)
    if failures:
        typer.echo("error: " + escape_controls(failures[0]), err=True)
        raise typer.Exit(1)


def _board(store: str, report, prompts: str, baseline: str) -> None:
    """The board of what was just judged, as `judge` with its flags prints it (its own template and setting)."""
    from evalharness.evalkey import sampling_id
    from leaderboards.cli_support import leaderboard_text

    typer.echo(leaderboard_text(store, judge=report.judge, prompts=prompts, baseline=baseline,
                                template=report.template or None, turn="all",
                                sampling=sampling_id(report.sampling) if report.sampling else None), nl=False)

"""`evalharness judge` with --judge or --models left out: the planner's choices, printed, then judged board by board."""

from __future__ import annotations

import typer


def judge_bare(store, judge: str | None, models: list[str] | None, baseline: str | None, prompts: str | None,
               path: str | None, limit: int | None, samples: int, options: dict, dry_run: bool, leaderboard: bool,
               progress: bool) -> None:
    from evalharness.commands.judge import _print_leaderboard
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
    for b, cfg in zip(boards, configs):
        report = run_judge(cfg, store, progress=progress)
        for note in report.notes:
            typer.echo(escape_controls(note))
        typer.echo(escape_controls(report.line()))
        if leaderboard:
            _print_leaderboard(str(store.path), report, b.prompts, b.baseline_label)

"""`evalharness judges report`: each judge's position and length bias, and its agreement with the others."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from evalharness.cli import STORE, app, user_errors
from evalharness.commands import _eval_options as opts

judges_app = typer.Typer(help="Inspect the judges behind the judgments in the store.", no_args_is_help=True)
app.add_typer(judges_app, name="judges")


@judges_app.command("report")
def report(
    judge: Optional[list[str]] = typer.Option(None, "--judge", help="JUDGE or JUDGE@VERSION; repeat (default: all)."),
    reference: Optional[str] = typer.Option(None, help="Judge whose labels are the reference (human labels, oracle)."),
    prompts: Optional[str] = opts.PROMPTS,
    turn: Optional[str] = opts.TURN,
    temperature: Optional[str] = opts.TEMPERATURE,
    sampling: Optional[str] = opts.SAMPLING,
    fmt: str = typer.Option("table", "--format", help="table | md | csv | json."),
    store: Path = STORE,
):
    """Position-flip rate, P(first wins), P(longer wins), tie rate; agreement and Cohen's κ with --reference and
    between every two judges on the pairs they share.

    Every number comes from one evaluation (prompt set, turn, sampling setting), which the titles name; where the
    judges' pairs hold several, the command lists them and names the flag that picks one."""
    with user_errors():
        from leaderboards.agreement import judges_report
        from leaderboards.render import check_format, render_many

        check_format(fmt, ("table", "md", "csv", "json"))
        tables = judges_report(store, judge or None, reference, prompts, turn, temperature, sampling)
        text = render_many(tables, fmt)
        if fmt == "csv" and sys.stdout.isatty():
            from evalharness.textsafe import escape_lines

            text = escape_lines(text)  # CSV keeps text whole for files; a terminal would run its escape sequences
        typer.echo(text, nl=False)

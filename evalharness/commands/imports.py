"""`evalharness import …`: third-party outputs and annotations into the store (re-importing adds nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evalharness.cli import STORE, app, user_errors

import_app = typer.Typer(help="Import third-party model outputs and judge annotations.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("alpaca-eval")
def alpaca_eval(
    directory: Path = typer.Argument(..., help="DIR/<model>/model_outputs.json and "
                                               "DIR/<model>/<annotator>/annotations.json (AlpacaEval's layout)."),
    annotator: Optional[str] = typer.Option(None, help="Import only this annotator's annotations (default: all)."),
    store: Path = STORE,
):
    """AlpacaEval outputs as generations of `alpaca-eval:<model>`, annotations as judge `alpaca-eval:<annotator>`."""
    with user_errors():
        from evalharness.importers import import_alpaca_eval
        from evalharness.store import Store
        from evalharness.textsafe import escape_controls

        report = import_alpaca_eval(directory, Store(str(store)), annotator)
        for line in report.lines():
            typer.echo(escape_controls(line))

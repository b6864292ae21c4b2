"""`evalharness compare A B`: two configurations' differences in win rate, gold reward, KL, perplexity and agility."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evalharness.cli import STORE, app, user_errors


@app.command()
def compare(
    a: str = typer.Argument(..., metavar="A", help="Configuration A: a judged checkpoint (key, label or prefix); its run's seed "
                                      "replicates join it."),
    b: str = typer.Argument(..., metavar="B", help="Configuration B, the same way."),
    judge: Optional[str] = typer.Option(None, help="JUDGE or JUDGE@VERSION (default: the only judge in the store)."),
    baseline: Optional[str] = typer.Option(None, help="The model both were judged against (default: the only one)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="The prompt set (default: the only one judged)."),
    template: Optional[str] = typer.Option(None, help="The judge's template, where one judge used several."),
    turn: Optional[str] = typer.Option(None, help="The turn judged (1, 2, …) or all."),
    temperature: Optional[str] = typer.Option(None, help="The samples' temperature, where several were judged."),
    sampling: Optional[str] = typer.Option(None, help="A sampling setting's id, where two share a temperature."),
    held_out: Optional[str] = typer.Option(None, help="The held-out evaluation of perplexity and agility."),
    bootstrap: int = typer.Option(2000, help="Bootstrap resamples (seeds x prompts)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    store: Path = STORE,
):
    """A - B per quantity, paired over shared prompts and seeds, with CI, p-value (Holm over the quantities) and the
    minimum detectable effect; "inconclusive" where the difference is not significant."""
    with user_errors():
        from evalharness import limits
        from evalharness.compare import compare as run_compare
        from evalharness.compare import render

        limits.count("--bootstrap", bootstrap, 1, limits.MAX_BOOTSTRAP)
        limits.seed("--seed", seed)
        typer.echo(render(run_compare(store, a, b, judge, baseline, prompts, template, turn, temperature, sampling,
                                      held_out, bootstrap, seed)), nl=False)

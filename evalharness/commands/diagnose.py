"""`evalharness diagnose KIND`: the seed papers' analyses on a checkpoint, stored, tabulated and plotted."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evalharness.cli import STORE, app, user_errors
from evalharness.diagnose import KINDS

_KINDS_HELP = "\n\n".join(f"{name}: {summary}" for name, (_, _, summary) in KINDS.items())
_SETTINGS_HELP = (
    "Settings go in --set key=value. information: p, random_init, seed. gradients: temperature, and loss parameters "
    "such as dpo.beta. monotonicity: epsilon, beta, temperature. density-ratio: samples, max_new_tokens, beta, seed. "
    "Every kind on pairs: max_length, max_prompt_length, prompt_style."
)


@app.command(help=f"""Run a diagnostic from the seed papers and store it; print a table and write a PNG.

Re-running with the same inputs reads the stored rows back and computes nothing new. KIND is one of:

{_KINDS_HELP}

{_SETTINGS_HELP}""")
def diagnose(
    kind: str = typer.Argument(..., help=f"One of: {', '.join(KINDS)}."),
    checkpoint: Optional[list[str]] = typer.Option(
        None, "--checkpoint", "-c", help="RUN[:STEP] from the store or a model name/path; repeat for several. "
        "beta-sensitivity: runs whose sweeps to show (default: every sweep)."),
    reference: Optional[str] = typer.Option(None, help="Reference model (default: each run's starting weights; a "
                                                       "plain model is its own reference)."),
    loss: Optional[str] = typer.Option(None, help="Comma-separated losses: gradients decomposes each (default "
                                                  "dpo,unlikelihood,exmate); beta-sensitivity keeps their sweeps."),
    data: str = typer.Option("synthetic", help="Dataset of pairs (a prompt set for density-ratio)."),
    path: Optional[str] = typer.Option(None, help="Local file for --data."),
    limit: Optional[int] = typer.Option(None, help="First N pairs (prompts for density-ratio); default per kind."),
    out: Path = typer.Option(Path("diagnostics"), help="Directory for the PNG."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="A setting, KEY=VALUE (VALUE a TOML value or "
                                                                 "text); repeat."),
    batch_size: int = typer.Option(4, help="Pairs per forward pass."),
    store: Path = STORE,
):
    with user_errors():
        from evalharness.config import parse_overrides
        from evalharness.diagnose import check_kind, run
        from evalharness.diagnose.common import DiagnoseConfig
        from evalharness.store import Store
        from evalharness.textsafe import escape_lines

        check_kind(kind)
        losses = [x.strip() for x in loss.split(",") if x.strip()] if loss else None
        cfg = DiagnoseConfig(checkpoints=list(checkpoint or []), reference=reference, losses=losses, data=data,
                             path=path, limit=limit, out=str(out), settings=parse_overrides(set_),
                             batch_size=batch_size)
        report = run(kind, cfg, Store(str(store)))
        for line in report.lines():
            typer.echo(escape_lines(line))  # the table is one block of lines

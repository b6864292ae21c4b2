"""`evalharness eval`: perplexity, agility, implicit-reward margins and KL of checkpoints, with CIs, into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evalharness.cli import STORE, app, user_errors


@app.command("eval")
def evaluate(
    checkpoint: list[str] = typer.Option(..., "--checkpoint", "-c",
                                         help="RUN[:STEP] from the store, or a model name/path; repeat for several."),
    data: Optional[str] = typer.Option(None, help="Dataset preset of the held-out pairs (as `train --data`); "
                                                  "default: each run's own data (synthetic for plain models)."),
    path: Optional[str] = typer.Option(None, help="Local data file for the preset."),
    split: Optional[str] = typer.Option(None, help="Hub split of the preset."),
    limit: Optional[int] = typer.Option(None, help="Read only the first N examples."),
    eval_fraction: Optional[float] = typer.Option(None, help="The held-out share, split as training splits it; 1 = "
                                                             "every pair. Default: the run's own (0.05 elsewhere); "
                                                             "more than the run's is refused."),
    batch_size: int = typer.Option(8, help="Pairs per forward pass."),
    max_length: Optional[int] = typer.Option(None, help="Tokens per sequence (default: the run's)."),
    max_prompt_length: Optional[int] = typer.Option(None, help="Prompt tokens kept (default: the run's)."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95% CI (0: no CI)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap resamples."),
    metrics: Optional[str] = typer.Option(None, help="Comma-separated metric names (default: all that apply)."),
    reference: Optional[str] = typer.Option(None, help="Reference model (default: the run's starting weights)."),
    prompts: Optional[str] = typer.Option(None, help="KL only from generations of this prompt set."),
    judge: Optional[str] = typer.Option(None, help="Correlate the margin with this judge's scores of the held-out "
                                                   "texts, e.g. oracle (default: scores the pairs carry)."),
    score_missing: bool = typer.Option(True, help="Score generations that lack reference log-probs (else skip them)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    store: Path = STORE,
):
    """Statistical metrics of checkpoints on held-out pairs and on their stored samples. Re-running computes nothing new."""
    with user_errors():
        from evalharness.config import DataConfig
        from evalharness.evaluation import EvalConfig
        from evalharness.evaluation import evaluate as run_eval
        from evalharness.store import Store
        from evalharness.textsafe import escape_controls

        _check_counts(bootstrap, seed)
        named = any(v is not None for v in (data, path, split, limit))  # else each run's own data
        cfg = EvalConfig(list(checkpoint), DataConfig(name=data or "synthetic", path=path, split=split, limit=limit)
                         if named else None, eval_fraction=eval_fraction,
                         batch_size=batch_size, max_length=max_length, max_prompt_length=max_prompt_length,
                         bootstrap=bootstrap, seed=seed, metrics=metrics, reference=reference,
                         prompts=prompts, judge=judge, score_missing=score_missing)
        for report in run_eval(cfg, Store(str(store)), progress=progress):
            typer.echo(escape_controls(report.line()))
            for line in report.detail_lines():
                typer.echo(escape_controls(line))


def _check_counts(bootstrap: int, seed: int) -> None:
    from evalharness import limits

    limits.count("--bootstrap", bootstrap, 0, limits.MAX_BOOTSTRAP)
    limits.seed("--seed", seed)  # numpy's generators refuse a negative seed, after the metrics were computed

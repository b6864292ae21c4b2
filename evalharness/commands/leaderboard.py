"""`evalharness leaderboard`: one judge's win rates with CIs beside perplexity, agility and KL, in any format."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from evalharness.cli import STORE, app, user_errors
from evalharness.commands import _eval_options as opts


@app.command()
def leaderboard(
    judge: Optional[str] = typer.Option(None, help="JUDGE or JUDGE@VERSION (default: the only judge in the store)."),
    baseline: Optional[str] = typer.Option(None, help="Rate every model against this one (key, label or prefix); "
                                                      "default: the runner's baseline, else all opponents pooled."),
    prompts: Optional[str] = opts.PROMPTS,
    template: Optional[str] = typer.Option(None, help="The judge's template (NAME or NAME@HASH), where one judge "
                                                  "used several."),
    turn: Optional[str] = opts.TURN,
    temperature: Optional[str] = opts.TEMPERATURE,
    sampling: Optional[str] = opts.SAMPLING,
    held_out: Optional[str] = typer.Option(None, help="The held-out evaluation of perplexity, agility and margins "
                                                  "(its dataset, as a candidate list shows it)."),
    ties: Optional[str] = typer.Option(None, help="tie (counts half) | exclude | average (the judge's "
                                                  "probabilities); default: the judge's own (average for imported "
                                                  "AlpacaEval annotators), else tie."),
    order_rule: str = typer.Option("agree", help="How a pair's two orders combine: agree (disagree -> tie, a single "
                                                 "valid order decides) | fastchat (an unparsed order drops the "
                                                 "pair) | alpacaeval (the mean of both orders' preferences)."),
    bt_games: str = typer.Option("pairs", help="Bradley-Terry games: pairs (one per pair, its orders combined) | "
                                               "arena-hard (each order a game, a strong verdict [[A>>B]] three, as "
                                               "Arena-Hard)."),
    lc: str = typer.Option("alpacaeval-v1", "--lc", help="Length control: alpacaeval-v1 (AlpacaEval's "
                                                         "length_controlled_v1) | tanh-length (a simpler fit)."),
    instruction_difficulty: Optional[Path] = typer.Option(
        None, help="CSV of AlpacaEval's instruction difficulty (index or instruction, instruction_difficulty) for "
                   "the LC fit; default: fitted from every rated model's outcomes."),
    fmt: str = typer.Option("table", "--format", help="table | md | csv | json | html."),
    output: Optional[Path] = typer.Option(None, help="Write here instead of stdout."),
    plot: Optional[Path] = typer.Option(None, help="Also write the plots whose data the store holds into DIR."),
    claims: Optional[Path] = typer.Option(None, "--claims", help="Evaluate this TOML's [[claims]] on the board "
                                                                 "(default: the stored verdicts of the experiments "
                                                                 "whose runs are on it); shown after a table or md "
                                                                 "board, under claims in json."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples of prompts for the CIs."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    models: Optional[str] = typer.Option(None, "--models", help="Only the pairs between these models (comma-"
                                                               "separated keys, labels or key prefixes): one "
                                                               "experiment's models in a store others share."),
    per_seed: bool = typer.Option(False, "--per-seed", help="A row per seed replicate, instead of one row per "
                                                          "configuration over its seeds."),
    store: Path = STORE,
):
    """Rank models by win rate (with SE and bootstrap CI), Bradley-Terry rating and length-controlled win rate.

    Every number comes from one evaluation (judge and template, prompt set, turn, sampling setting; one held-out
    set and lengths for perplexity and margins), which the header and meta name; where the store holds several, the
    command lists them and names the flag that picks one. The notes name the order rule, tie policy and length
    control."""
    with user_errors():
        from leaderboards.board import LeaderboardConfig, build_leaderboard, leaderboard_table
        from leaderboards.render import check_format, render

        check_format(fmt)
        _check_flags(output, plot, bootstrap, seed)
        cfg = LeaderboardConfig(judge, baseline, prompts, ties, bootstrap, seed, order_rule=order_rule, lc=lc,
                                instruction_difficulty=str(instruction_difficulty) if instruction_difficulty else None,
                                template=template, turn=turn, temperature=temperature, sampling=sampling,
                                held_out=held_out, bt_games=bt_games, per_seed=per_seed,
                                model_names=_model_names(models))
        declared = _declared_claims(claims)
        board = build_leaderboard(store, cfg)
        text = _with_claims(render(leaderboard_table(board), fmt), fmt, _claims_of(store, board, declared, bootstrap,
                                                                                   seed))
        if output is None and fmt == "csv" and sys.stdout.isatty():
            from evalharness.textsafe import escape_lines

            text = escape_lines(text)  # CSV keeps text whole for files; a terminal would run its escape sequences
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {output}", err=True)
        else:
            typer.echo(text, nl=False)
        if plot is not None:
            from leaderboards.plots import write_plots

            for path in write_plots(store, board.rows, plot, board.meta,
                                    log=lambda m: typer.echo(m, err=True)):
                typer.echo(f"wrote {path}", err=True)


def _check_flags(output: Path | None, plot: Path | None, bootstrap: int, seed: int) -> None:
    """Refused before the board is built: a directory as --output or a file as --plot would fail after the work."""
    from evalharness import limits
    from evalharness.config import ConfigError

    if output is not None and output.is_dir():
        raise ConfigError(f"--output {output}: is a directory; give a file path")
    if plot is not None and plot.exists() and not plot.is_dir():
        raise ConfigError(f"--plot {plot}: is a file; give a directory for the plots")
    limits.count("--bootstrap", bootstrap, 0, limits.MAX_BOOTSTRAP)
    limits.seed("--seed", seed)


def _model_names(models: str | None) -> tuple[str, ...] | None:
    from evalharness.config import ConfigError

    if models is None:
        return None
    names = tuple(n.strip() for n in models.split(","))
    if not all(names):
        raise ConfigError(f"--models {models!r}: an empty name; give comma-separated model keys or labels")
    return names


def _declared_claims(path: Path | None) -> list | None:
    """The [[claims]] of ``--claims`` (an experiment file or a file of claims alone), refused before any work."""
    from evalharness.config import ConfigError, load_toml
    from leaderboards.claims import parse_claims

    if path is None:
        return None
    found = parse_claims(load_toml(path), str(path))
    if not found:
        raise ConfigError(f"--claims {path}: the file declares no [[claims]]")
    return found


def _claims_of(store: Path, board, declared: list | None, bootstrap: int, seed: int) -> list[dict]:
    from evalharness.claim_eval import evaluate_on_board, stored_for_board

    if declared is None:
        return stored_for_board(str(store), board.meta, board.rows)
    return [v.as_dict() for v in evaluate_on_board(str(store), board.meta, declared, max(bootstrap, 200), seed)]


def _with_claims(text: str, fmt: str, found: list[dict]) -> str:
    """The board's text with its claims: a ``claims`` list in JSON (always there), lines after a table or md."""
    import json

    from evalharness.textsafe import escape_json
    from leaderboards.claims import render_verdicts

    if fmt == "json":
        return escape_json(json.dumps({**json.loads(text), "claims": found}, indent=2, ensure_ascii=False,
                                      default=str)) + "\n"
    if fmt in ("table", "md") and found:
        return text + "\n" + "\n".join(render_verdicts(found)) + "\n"
    return text

"""The options that pick one evaluation from the store, shared by the commands that read a board's evaluation
(`leaderboard`, `judges report`) so their help and defaults are one text."""

from __future__ import annotations

import typer

PROMPTS = typer.Option(None, "--prompts", help="The prompt set (default: the only one judged).")
TURN = typer.Option(None, "--turn", help="The turn judged (1, 2, …), or all to pool them (default: the only one "
                                         "judged).")
TEMPERATURE = typer.Option(None, "--temperature", help="The samples' temperature (a number, or a rule such as "
                                                       "fastchat); default: the only setting judged.")
SAMPLING = typer.Option(None, "--sampling", help="A sampling setting's id, as a candidate list shows it, where two "
                                                 "settings share a temperature.")

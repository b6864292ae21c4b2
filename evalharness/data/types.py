"""The records every dataset plugin yields.

A prompt ``x`` is either a tuple of chat ``Message``s (rendered with the tokenizer's chat template, or the
"\\n\\nHuman: …\\n\\nAssistant:" plain format for base models) or a plain ``str`` used verbatim (raw continuation
tasks). Nothing may assume ``x_neg == x_pos``: CausalDialogue-style pairs differ in the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Union


class Message(NamedTuple):
    role: str  # "system" | "user" | "assistant"
    content: str


PromptText = Union[str, tuple[Message, ...]]


@dataclass(frozen=True)
class PreferencePair:
    """(x+, y+) preferred over (x-, y-)."""

    x_pos: PromptText
    y_pos: str
    x_neg: PromptText
    y_neg: str
    id: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ScoredSamples:
    """K completions of one prompt with scalar rewards (the EXO-rw / DPO-rw format)."""

    x: PromptText
    completions: tuple[str, ...]
    rewards: tuple[float, ...]
    id: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Prompt:
    """A prompt to sample from; ``reference`` is an optional reference answer (MT-Bench, AlpacaEval baselines)."""

    id: str
    messages: tuple[Message, ...]
    reference: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)


class DataError(ValueError):
    """Malformed input data. The message names the file, the row (1-based line) and the field."""

    def __init__(self, source: str, row: int | None, field_name: str | None, problem: str):
        where = source
        if row is not None:
            where += f":{row}"
        if field_name:
            where += f" field {field_name!r}"
        super().__init__(f"{where}: {problem}")
        self.source, self.row, self.field, self.problem = source, row, field_name, problem


def as_messages(x: PromptText) -> tuple[Message, ...]:
    if isinstance(x, str):
        return (Message("user", x),)
    return tuple(x)

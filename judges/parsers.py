"""Pure parsers of judge answers: ``str -> "first" | "second" | "tie" | "unparsed"``, one per pairwise answer format,
and ``str -> grade | None`` for single-answer grading (``RATING_PARSERS``).

Positions are as shown to the judge: A, Response 1, Output (a), model_1 and ``m`` are all "first". An answer with no
verdict, or with two different verdicts, is "unparsed": a parser never guesses, because a guessed verdict would be
indistinguishable from a real one in the store, while an "unparsed" one is counted and reported.

Formats whose verdict is one token (a letter or a digit after a fixed label) also declare which tokens mean which
verdict and what text precedes it (``LOGPROB_FORMATS``), so ``choice_probability`` can read P(first) from the
top-log-probs the endpoint returned for that token.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

FIRST, SECOND, TIE, UNPARSED = "first", "second", "tie", "unparsed"
_LETTER = {"A": FIRST, "B": SECOND, "C": TIE}


def _one(found: Sequence[str]) -> str:
    """The verdict when every verdict found agrees; "unparsed" when none or several were found."""
    distinct = set(found)
    return distinct.pop() if len(distinct) == 1 else UNPARSED


def mt_bench(text: str) -> str:
    """MT-Bench style: the verdict is ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie) anywhere in the answer.

    >>> mt_bench("Assistant A is more precise. [[A]]")
    'first'
    >>> mt_bench("Both are fine.\\n[[C]]")
    'tie'
    >>> mt_bench("[[ b ]]")
    'second'
    >>> mt_bench("A is better")  # no bracketed verdict
    'unparsed'
    >>> mt_bench("[[A]] ... on reflection [[B]]")  # contradictory
    'unparsed'
    >>> mt_bench("[[A]] Final verdict: [[A]]")  # repeated, not contradictory
    'first'
    """
    return _one([_LETTER[m.upper()] for m in re.findall(r"\[\[\s*([ABCabc])\s*\]\]", text)])


def _labelled(text: str, label: str, choices: Mapping[str, str]) -> str:
    """The choice on lines ``<label>: X`` that end after X (markdown emphasis, quotes and a full stop allowed).

    The label's case is free, the choice's is not, and the choice must end the line: in "Preferred: A shorter one"
    the "A" is an article, not a verdict.
    """
    keys = "|".join(re.escape(k) for k in choices)
    pattern = rf"^[\s*_#>]*(?i:{label})[\s*_]*:[\s*_\"'(\[]*({keys})[\s*_\"').\]]*$"
    return _one([choices[m] for m in re.findall(pattern, text, re.M)])


def preferred(text: str) -> str:
    """Seed 004's summary format: a final line ``Preferred: A`` or ``Preferred: B``.

    >>> preferred("Comparison: A keeps the key facts, B adds noise.\\nPreferred: A")
    'first'
    >>> preferred("Comparison: B is shorter and complete.\\n**Preferred:** \\"B\\"")
    'second'
    >>> preferred("Comparison: both are good.")
    'unparsed'
    >>> preferred("Preferred: A\\nPreferred: B")
    'unparsed'
    >>> preferred("Preferred: Alpha")  # a word that starts with A is not a verdict
    'unparsed'
    """
    return _labelled(text, "Preferred", {"A": FIRST, "B": SECOND})


def more_helpful(text: str) -> str:
    """Seed 004's dialogue format: a final line ``More helpful: A`` or ``More helpful: B``.

    >>> more_helpful("Comparison: B answers the question, A does not.\\nMore helpful: B")
    'second'
    >>> more_helpful("more helpful: A.")
    'first'
    >>> more_helpful("More helpful: A shorter answer would be better")  # "A" is an article here
    'unparsed'
    >>> more_helpful("Response A is more helpful.")  # not the requested line
    'unparsed'
    """
    return _labelled(text, r"More\s+helpful", {"A": FIRST, "B": SECOND})


def response_number(text: str) -> str:
    """Seed 000's format: the answer's last non-empty line names ``Response 1`` or ``Response 2``.

    Only the last line counts: the reasoning before it may mention both responses.

    >>> response_number("Response 2 is rude, so I prefer the other one.\\nResponse 1")
    'first'
    >>> response_number("I prefer Response 2.")
    'second'
    >>> response_number("Response 1 and Response 2 are equally good.")
    'unparsed'
    >>> response_number("I prefer the first one.")
    'unparsed'
    >>> response_number("")
    'unparsed'
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return UNPARSED
    return _one([{"1": FIRST, "2": SECOND}[d] for d in re.findall(r"\bResponse\s*([12])\b", lines[-1], re.I)])


def alpaca_ranking(text: str) -> str:
    """AlpacaEval's ranking format: a Python list ``[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', ...}]``.

    Rank 1 wins; "model_1" is the output shown first. Anything that is not such a list with ranks 1 and 2 is unparsed.

    >>> alpaca_ranking("[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]")
    'second'
    >>> alpaca_ranking("```python\\n[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]\\n```")
    'first'
    >>> alpaca_ranking("[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 1}]")  # both first
    'unparsed'
    >>> alpaca_ranking("model_1 is better")
    'unparsed'
    """
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end < start:
        return UNPARSED
    try:
        ranking = ast.literal_eval(text[start : end + 1])
        ranks = {str(r["model"]): r["rank"] for r in ranking}
    except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError):
        return UNPARSED
    if set(ranks) != {"model_1", "model_2"} or sorted(ranks.values()) != [1, 2]:
        return UNPARSED
    return FIRST if ranks["model_1"] == 1 else SECOND


def model_identifier(text: str) -> str:
    """AlpacaEval's classifier format: the answer is only the identifier of the best model, ``m`` (first) or ``M``.

    Case matters: the two identifiers differ only in case.

    >>> model_identifier("m"), model_identifier(" M\\n"), model_identifier("mM"), model_identifier("model m")
    ('first', 'second', 'unparsed', 'unparsed')
    """
    return {"m": FIRST, "M": SECOND}.get(text.strip().strip("`\"'"), UNPARSED)


def regex_verdict(text: str, patterns: Mapping[str, str]) -> str:
    """A verdict from regexes, one per verdict (AlpacaEval's ``outputs_to_match``); several verdicts matching is unparsed.

    >>> pats = {"first": r"(?:^|\\n) ?Output \\(a\\)", "second": r"(?:^|\\n) ?Output \\(b\\)"}
    >>> regex_verdict("Output (b)", pats), regex_verdict("Output (a)\\nOutput (b)", pats), regex_verdict("(a)", pats)
    ('second', 'unparsed', 'unparsed')
    """
    return _one([verdict for verdict, pattern in patterns.items() if re.search(pattern, text)])


_ARENA = {"A>>B": (FIRST, True), "A>B": (FIRST, False), "A=B": (TIE, False), "B>A": (SECOND, False),
          "B>>A": (SECOND, True)}
_ARENA.update({"B<<A": _ARENA["A>>B"], "B<A": _ARENA["A>B"], "B=A": (TIE, False), "A<B": _ARENA["B>A"],
               "A<<B": _ARENA["B>>A"]})


def arena_hard_verdict(text: str) -> tuple[str, bool]:
    """Arena-Hard's five levels: ``[[A>>B]]`` (A much better), ``[[A>B]]``, ``[[A=B]]``, ``[[B>A]]``, ``[[B>>A]]``
    (and the same read from the other side, ``[[B<<A]]``…). Returns (verdict, strong): strong for ``>>``/``<<``.

    As in arena-hard-auto, single brackets are read only when the answer has no double-bracketed label. Labels that
    disagree (even only in strength) are unparsed.

    >>> arena_hard_verdict("A covers every case. My final verdict is: [[A>>B]]")
    ('first', True)
    >>> arena_hard_verdict("[[B>A]]"), arena_hard_verdict("Tie: [[A=B]]"), arena_hard_verdict("[A<B]")
    (('second', False), ('tie', False), ('second', False))
    >>> arena_hard_verdict("[[A>B]] ... [[A>>B]]"), arena_hard_verdict("A is better")
    (('unparsed', False), ('unparsed', False))
    """
    for pattern in (r"\[\[\s*([AB<>=]+)\s*\]\]", r"\[\s*([AB<>=]+)\s*\]"):
        found = {_ARENA.get(label.upper(), (UNPARSED, False)) for label in re.findall(pattern, text, re.I)}
        if found:
            return found.pop() if len(found) == 1 else (UNPARSED, False)
    return UNPARSED, False


def arena_hard(text: str) -> str:
    """The verdict of ``arena_hard_verdict``, strength left out.

    >>> arena_hard("[[B>>A]]"), arena_hard("[[A>B]]"), arena_hard("[[A>C]]")
    ('second', 'first', 'unparsed')
    """
    return arena_hard_verdict(text)[0]


def arena_hard_strong(text: str) -> bool:
    """Whether the answer's verdict is one of the strong levels (``[[A>>B]]``, ``[[B>>A]]``).

    >>> arena_hard_strong("[[A>>B]]"), arena_hard_strong("[[A>B]]"), arena_hard_strong("[[A>>B]] [[A>B]]")
    (True, False, False)
    """
    return arena_hard_verdict(text)[1]


def rating(text: str, low: float = 1.0, high: float = 10.0) -> float | None:
    """A single-answer grade: FastChat's ``[[rating]]`` (e.g. "Rating: [[7]]"), a number from ``low`` to ``high``.

    Single brackets (``[7]``) are read only when there is no double-bracketed number, as FastChat does. None (the
    rating is unparsed) for no rating, for two different ratings and for a number off the scale: never a guess.

    >>> rating("The answer is correct and clear. Rating: [[8]]"), rating("Rating: [[7.5]]"), rating("[6]")
    (8.0, 7.5, 6.0)
    >>> rating("[[8]] ... on reflection [[6]]") is None, rating("Rating: 8") is None, rating("[[11]]") is None
    (True, True, True)
    >>> rating("[[3]] Rating: [[3]]")
    3.0
    """
    for pattern in (r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]", r"\[\s*(\d+(?:\.\d+)?)\s*\]"):
        found = {float(x) for x in re.findall(pattern, text)}
        if found:
            value = found.pop() if len(found) == 1 else None
            return value if value is not None and low <= value <= high else None
    return None


PARSERS: dict[str, Callable[[str], str]] = {
    "mt-bench": mt_bench,
    "preferred": preferred,
    "more-helpful": more_helpful,
    "response-number": response_number,
    "alpaca-ranking": alpaca_ranking,
    "model-identifier": model_identifier,
    "arena-hard": arena_hard,
}
# Formats whose verdict also says how strongly: parser name -> text -> strong (``judgments.strong``).
STRENGTH: dict[str, Callable[[str], bool]] = {"arena-hard": arena_hard_strong}
# Single-answer formats: text -> a grade, or None when there is none to read (unparsed).
RATING_PARSERS: dict[str, Callable[[str], float | None]] = {"rating": rating}


@dataclass(frozen=True)
class LogprobFormat:
    """Where a format's verdict token sits and what it means: ``choices`` token → verdict, ``anchor`` a regex that
    the answer's text just before the verdict token matches (``\\Z``-anchored)."""

    choices: Mapping[str, str]
    anchor: str


LOGPROB_FORMATS: dict[str, LogprobFormat] = {
    "mt-bench": LogprobFormat(_LETTER, r"\[\[\s*\Z"),
    "preferred": LogprobFormat({"A": FIRST, "B": SECOND}, r"Preferred[\s*_]*:[\s*_\"']*\Z"),
    "more-helpful": LogprobFormat({"A": FIRST, "B": SECOND}, r"More\s+helpful[\s*_]*:[\s*_\"']*\Z"),
    "response-number": LogprobFormat({"1": FIRST, "2": SECOND}, r"Response\s*\Z"),
    "model-identifier": LogprobFormat({"m": FIRST, "M": SECOND}, r"\A[\s`\"']*\Z"),
}

_PUNCT = " \t\n\"'*_[(`"


def choice_probability(tokens: Sequence[tuple[str, Sequence[tuple[str, float]]]], fmt: LogprobFormat) -> float | None:
    """P(first) = p(first's token) / (p(first's token) + p(second's token)) at the answer's last verdict position.

    ``tokens``: the generated tokens in order, each with its top alternatives as (token, log-prob). The verdict
    position is the last token that is one of the choices (after stripping spaces, quotes and brackets) and whose
    preceding text matches the format's anchor. None when there is no such position or neither choice is among the
    alternatives there (a probability the endpoint did not give is not invented).

    >>> toks = [("Better: ", []), ("[[", [("[[", -0.01)]), ("A", [("A", math.log(0.6)), ("B", math.log(0.2))]),
    ...         ("]]", [])]
    >>> round(choice_probability(toks, LOGPROB_FORMATS["mt-bench"]), 6)  # 0.6 / (0.6 + 0.2)
    0.75
    >>> choice_probability([("A", [("A", 0.0)])], LOGPROB_FORMATS["mt-bench"]) is None  # no "[[" before it
    True
    >>> toks = [("Preferred", []), (":", []), (" B", [(" B", math.log(0.9)), (" A", math.log(0.05))])]
    >>> round(choice_probability(toks, LOGPROB_FORMATS["preferred"]), 6)  # 0.05 / (0.05 + 0.9)
    0.052632
    """
    text = ""
    position = None
    for i, (token, _) in enumerate(tokens):
        core = token.strip(_PUNCT)
        if core in fmt.choices:
            lead = token[: len(token) - len(token.lstrip(_PUNCT))]
            if re.search(fmt.anchor, text + lead, re.I):
                position = i
        text += token
    if position is None:
        return None
    mass = {FIRST: 0.0, SECOND: 0.0}
    for alt, logprob in tokens[position][1]:
        verdict = fmt.choices.get(alt.strip(_PUNCT))
        if verdict in mass and logprob is not None and math.isfinite(logprob):
            mass[verdict] += math.exp(logprob)
    total = mass[FIRST] + mass[SECOND]
    return mass[FIRST] / total if total > 0 else None

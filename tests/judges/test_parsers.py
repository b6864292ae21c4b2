"""The answer parsers: their doctests, and the rule that an answer with no verdict or two verdicts is never guessed."""

from __future__ import annotations

import doctest
import math

import pytest

from judges import parsers
from judges.parsers import LOGPROB_FORMATS, PARSERS, choice_probability


def test_doctests_pass():
    result = doctest.testmod(parsers, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted >= 25  # every parser carries examples; a lost docstring would show here


@pytest.mark.parametrize("name,answer,expected", [
    ("mt-bench", "Response A misses the point while B answers it. [[B]]", "second"),
    ("mt-bench", "Final verdict: [[C]]", "tie"),
    ("mt-bench", "[A]", "unparsed"),  # one bracket is FastChat's older format, not this one
    ("preferred", "Comparison: A is faithful.\nPreferred: A", "first"),
    ("preferred", "Comparison: A is faithful.\nPreferred: A or B", "unparsed"),
    ("more-helpful", "Comparison: B is kinder.\n  More helpful: B  ", "second"),
    ("more-helpful", "Comparison: B is kinder.\nMore helpful: C", "unparsed"),
    ("response-number", "Response 1 is vague.\n\nResponse 2\n", "second"),
    ("response-number", "Response 1\nActually both are fine.", "unparsed"),
    ("alpaca-ranking", "[{'model': 'model_2', 'rank': 1}, {'model': 'model_1', 'rank': 2}]", "second"),
    ("alpaca-ranking", "[{'model': 'model_1', 'rank': 1}]", "unparsed"),  # one model ranked is not a comparison
    ("alpaca-ranking", "[__import__('os')]", "unparsed"),  # never evaluated, only read as a literal
    ("model-identifier", "M", "second"),
    ("model-identifier", "", "unparsed"),
])
def test_parsers_never_guess(name, answer, expected):
    assert PARSERS[name](answer) == expected


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_parser_returns_a_pairwise_verdict_for_junk(name):
    for junk in ("", "   ", "I cannot decide.", "[[", "Preferred:", "\x00\ufffd", "A" * 10_000):
        assert PARSERS[name](junk) in ("first", "second", "tie", "unparsed")


def test_choice_probability_sums_spellings_of_the_same_choice():
    # At the verdict token the endpoint offered "A" (0.5), " A" (0.1) and "B" (0.2): P(first) = 0.6 / 0.8 = 0.75.
    tokens = [("Preferred", []), (":", []),
              (" A", [(" A", math.log(0.1)), ("A", math.log(0.5)), ("B", math.log(0.2)), ("C", math.log(0.1))])]
    assert choice_probability(tokens, LOGPROB_FORMATS["preferred"]) == pytest.approx(0.75)


def test_choice_probability_uses_the_last_anchored_verdict_token():
    # "[[A]]" is quoted in the explanation first; the verdict is the last "[[X]]": B with p 0.7 vs A 0.3.
    tokens = [("Write", []), (" [[", []), ("A", [("A", math.log(0.99))]), ("]]", []), (" then", []),
              (" [[", []), ("B", [("B", math.log(0.7)), ("A", math.log(0.3))]), ("]]", [])]
    assert choice_probability(tokens, LOGPROB_FORMATS["mt-bench"]) == pytest.approx(0.3)


def test_choice_probability_is_none_when_the_endpoint_gave_no_alternative():
    tokens = [("[[", []), ("A", [("A", 0.0)])]
    assert choice_probability(tokens, LOGPROB_FORMATS["mt-bench"]) == pytest.approx(1.0)  # only A offered: p(A) = 1
    tokens = [("[[", []), ("A", [("C", 0.0)])]  # only the tie token offered: nothing says A vs B
    assert choice_probability(tokens, LOGPROB_FORMATS["mt-bench"]) is None


def test_model_identifier_probability_is_case_sensitive():
    # AlpacaEval's classifier: "m" is the first output, "M" the second; 0.2 / (0.2 + 0.6) = 0.25.
    tokens = [("M", [("M", math.log(0.6)), ("m", math.log(0.2)), ("model", math.log(0.1))])]
    assert choice_probability(tokens, LOGPROB_FORMATS["model-identifier"]) == pytest.approx(0.25)

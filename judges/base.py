"""The Judge protocol: what every judge (built-in or plugin) provides, and the records it exchanges.

A judge sees a batch of ``Comparison``s, each a conversation and two responses in the order they are *shown*, and
returns one ``Verdict`` per comparison, in positions as shown ("first" / "second"). The runner shows every pair in both
orders and stores both raw verdicts; combining them is the leaderboard's business, never the judge's.

A judge that can score one response on its own (a reward model, the synthetic oracle) also implements ``score``;
the runner then scores each response once, stores the scores, and derives verdicts from score differences. A judge
in single-answer mode (``mode = "single"``, e.g. MT-Bench's 1-10 grading by an LLM) implements ``rate`` over
``Answer``s instead, returning one ``Rating`` each.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from evalharness.data.types import Message

VERDICTS = ("first", "second", "tie", "unparsed", "failed")


class JudgeError(ValueError):
    """A judge that can't be built or used as asked (unknown argument, missing model, bad template)."""


@dataclass(frozen=True)
class Comparison:
    """One judging request: the conversation so far and two responses, as shown to the judge."""

    messages: tuple[Message, ...]  # the conversation up to (not including) the responses
    first: str
    second: str
    reference: str | None = None  # a reference answer, for templates that show one (MT-Bench math, Arena-Hard)
    # Turn t > 1 of a multi-turn set: each model answered the earlier turns itself, so ``messages`` is the first
    # response's conversation and ``second_messages`` the second's (None: the same as ``messages``).
    turn: int = 1
    second_messages: tuple[Message, ...] | None = None
    references: tuple[str, ...] = ()  # a reference answer per turn, for templates that show every turn's
    category: str | None = None  # the prompt's category: a judge may choose its template by it (FastChat's math)

    @property
    def question(self) -> str:
        """The last user turn: what single-turn templates show as the question."""
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return ""

    def conversation(self) -> str:
        """The whole conversation as plain text, one 'Role: content' block per message."""
        return "\n\n".join(f"{m.role.capitalize()}: {m.content}" for m in self.messages)


@dataclass(frozen=True)
class Answer:
    """One single-answer grading request: the conversation up to (not including) the answer, and the answer."""

    messages: tuple[Message, ...]
    text: str
    reference: str | None = None
    turn: int = 1
    references: tuple[str, ...] = ()
    category: str | None = None


RATING_STATUSES = ("rated", "unparsed", "failed")


@dataclass
class Rating:
    """A judge's grade of one answer (single-answer grading, e.g. MT-Bench's 1-10), or why there is none."""

    status: str  # one of RATING_STATUSES
    rating: float | None = None  # set exactly when status is "rated"
    raw: str | None = None
    latency: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in RATING_STATUSES:
            raise ValueError(f"rating status {self.status!r} is not one of {', '.join(RATING_STATUSES)}")
        if (self.rating is not None) != (self.status == "rated"):
            raise ValueError(f"a {self.status} rating {'needs' if self.status == 'rated' else 'has no'} a value")


@dataclass
class Verdict:
    """A judge's answer for one comparison, in positions as shown."""

    winner: str  # one of VERDICTS
    probability: float | None = None  # P(first is preferred), where the judge gives one
    raw: str | None = None  # the judge's raw output (LLM text, logits as text) for audit
    latency: float | None = None  # seconds
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None  # in the currency of the price table given to the judge
    error: str | None = None  # why it failed (never contains a secret)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.winner not in VERDICTS:
            raise ValueError(f"verdict {self.winner!r} is not one of {', '.join(VERDICTS)}")
        if self.probability is not None and not (0.0 <= self.probability <= 1.0):
            raise ValueError(f"probability {self.probability} is outside [0, 1]")


@runtime_checkable
class Judge(Protocol):
    """What the runner needs from a judge.

    ``id`` names the judge and what it is made of (a model fingerprint, an endpoint's model name: never a secret);
    ``version`` changes when its behaviour changes; ``template`` names the prompt template and its content hash ("" for
    judges without one). All three are part of every cache key, so a changed judge never reuses old verdicts.
    """

    id: str
    version: str
    template: str

    def compare(self, items: Sequence[Comparison]) -> list[Verdict]: ...


def can_rate(judge: Any) -> bool:
    """A judge in single-answer mode: ``rate(answers) -> ratings`` in place of ``compare`` (``mode = "single"``)."""
    return getattr(judge, "mode", "pairwise") == "single" and callable(getattr(judge, "rate", None))


def can_score(judge: Any) -> bool:
    return callable(getattr(judge, "score", None))


def verdict_from_scores(first: float, second: float, tie_margin: float = 0.0) -> Verdict:
    """The pairwise verdict of a pointwise judge: the higher score wins; P(first) = sigmoid(first - second).

    >>> verdict_from_scores(2.0, 1.0).winner, round(verdict_from_scores(2.0, 1.0).probability, 4)
    ('first', 0.7311)
    >>> verdict_from_scores(0.5, 0.5).winner
    'tie'
    >>> verdict_from_scores(1.0, 1.05, tie_margin=0.1).winner
    'tie'
    """
    d = float(first) - float(second)
    if math.isnan(d):
        return Verdict("failed", error="a score is NaN")
    winner = "tie" if abs(d) <= tie_margin else ("first" if d > 0 else "second")
    p = 1.0 / (1.0 + math.exp(-d)) if d > -700 else 0.0
    return Verdict(winner, probability=p, raw=f"{first!r} vs {second!r}")


def parse_judge_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``NAME[:k=v,k=v]`` → (name, {k: v}).

    >>> parse_judge_spec("reward-model:path=runs/rm,batch_size=8")
    ('reward-model', {'path': 'runs/rm', 'batch_size': '8'})
    >>> parse_judge_spec("oracle")
    ('oracle', {})
    """
    name, _, rest = spec.partition(":")
    args: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise JudgeError(f"judge argument {part!r} in {spec!r} is not key=value")
        args[key.strip().replace("-", "_")] = value.strip()
    return name.strip(), args


def build_judge(spec: str, **options: Any) -> Judge:
    """Build a registered judge from ``NAME[:k=v,…]`` plus keyword options (CLI flags; the spec's own args win).

    Options the judge's constructor does not take are dropped only when they are None (flags not given); anything else
    unknown is an error with a "did you mean" hint. String values from the spec are converted to the annotated type.
    """
    import difflib

    from evalharness.plugins import registry

    name, args = parse_judge_spec(spec)
    factory = registry("judges").get(name)
    params = inspect.signature(factory).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    kwargs.update({k: _convert(v, params.get(k)) for k, v in args.items()})
    if not accepts_any:
        unknown = [k for k in kwargs if k not in params]
        for k in unknown:
            if k in args:
                close = difflib.get_close_matches(k, list(params), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (it takes: {', '.join(params) or 'nothing'})"
                raise JudgeError(f"judge {name!r} has no argument {k!r}{hint}")
            if k not in args:
                raise JudgeError(f"judge {name!r} does not take --{k.replace('_', '-')}")
    try:
        judge = factory(**kwargs)
    except TypeError as e:
        raise JudgeError(f"judge {name!r}: {e}") from None
    for attr in ("id", "version", "template"):
        if not isinstance(getattr(judge, attr, None), str):
            raise JudgeError(f"judge {name!r} has no string attribute {attr!r} (see judges/base.py)")
    return judge


def _convert(value: str, param: inspect.Parameter | None) -> Any:
    """A spec argument read by the ``--set`` value grammar and the parameter's annotation (``evalharness.config``)."""
    from evalharness.config import annotation_type, coerce

    if param is None or param.annotation is inspect.Parameter.empty:
        return value
    hint = annotation_type(param.annotation)
    try:
        return coerce(value, hint, text=True)
    except ValueError as e:
        raise JudgeError(f"judge argument {param.name}={value!r} is not a {str(e).split(' or ')[0]}") from None

"""The synthetic review task: prompts, responses and a rule-based gold reward the project defines itself.

In the spirit of seed 004's sentiment-controlled generation, but needing no classifier and no third-party text: a
prompt asks for a short review of an item; the gold reward of a response is its lexicon sentiment, the share of
positive minus negative words. Preference pairs are labelled by the oracle, so every judge's agreement with the truth
can be measured, and a policy's gold reward can be plotted against its KL to the reference.
"""

from __future__ import annotations

import random
import re

from evalharness.data.types import Message, PreferencePair, ScoredSamples
from evalharness.hashing import content_hash

ITEMS = [
    "the corner bakery", "this laptop", "the city library", "a hiking trail", "the new phone", "our hotel room",
    "the museum tour", "this coffee maker", "the train ride", "the concert", "a pair of boots", "the pizza place",
    "this board game", "the dentist", "the park", "a rental bike", "the science book", "this movie", "the gym",
    "the farmers market", "a camping tent", "the bus service", "this keyboard", "the sushi bar", "the art class",
    "the ferry", "this backpack", "the bookshop", "the water park", "a desk lamp", "the yoga studio", "the zoo",
]
POSITIVE = ["great", "wonderful", "friendly", "excellent", "delightful", "clean", "reliable", "lovely", "fantastic",
            "pleasant", "helpful", "comfortable", "superb", "charming", "enjoyable"]
NEGATIVE = ["awful", "terrible", "rude", "dirty", "broken", "boring", "slow", "noisy", "disappointing", "poor",
            "unpleasant", "horrible", "cramped", "useless", "dreadful"]
NEUTRAL = ["the staff", "the price", "the place", "the design", "the service", "the quality", "the location",
           "the size", "the wait", "the experience"]
_POS, _NEG = set(POSITIVE), set(NEGATIVE)
_WORD = re.compile(r"[a-z]+")


def oracle_reward(text: str, length_weight: float = 0.0) -> float:
    """Gold reward: (positive words - negative words) / max(1, sentiment words), in [-1, 1], plus ``length_weight``
    times the number of words (the length knob; 0 by default). Pure and deterministic.

    >>> oracle_reward("great and clean, but slow")
    0.3333333333333333
    >>> oracle_reward("")
    0.0
    >>> oracle_reward("great and clean, but slow", length_weight=0.1)  # 1/3 + 0.1 * 5 words
    0.8333333333333333
    """
    words = _WORD.findall(text.lower())
    pos = sum(w in _POS for w in words)
    neg = sum(w in _NEG for w in words)
    sentiment = (pos - neg) / max(1, pos + neg)
    return sentiment + length_weight * len(words) if length_weight else sentiment


# The one prompt form of the task (``prompt_for``): the gold reward means "how positive is this review", so it is
# defined for answers to these prompts and for nothing else.
_TASK_PROMPT = re.compile(r"Write a short review of .+\.")


def off_task_warning(conversations, what: str) -> str | None:
    """A warning where ``what`` (a judge, a diagnostic) applies the gold reward to conversations whose first user
    message is not the task's review prompt (HH, MT-Bench...): lexicon sentiment of such answers is no gold reward.

    The rule is the prompt's form, not the answer's words: a policy early in training writes few lexicon words on the
    task's own prompts, and an off-task answer may hold many.

    >>> off_task_warning([(Message("user", "Write a short review of the zoo."),)], "oracle") is None
    True
    >>> off_task_warning([(Message("user", "How do I bake bread?"),), ()], "oracle")[:52]
    'oracle: 2 of 2 prompts are not the synthetic review '
    """
    conversations = list(conversations)
    firsts = [next((_content(m) for m in c if _role(m) == "user"), "") for c in conversations]
    off = sum(not _TASK_PROMPT.fullmatch(text.strip()) for text in firsts)
    if not off:
        return None
    return (f"{what}: {off} of {len(conversations)} prompts are not the synthetic review task's ('Write a short "
            "review of …'); its gold reward is lexicon sentiment, which says nothing about answers to other prompts")


def _role(m) -> str:
    return m["role"] if isinstance(m, dict) else m[0]


def _content(m) -> str:
    value = m["content"] if isinstance(m, dict) else m[1]
    return value if isinstance(value, str) else ""


def prompt_for(item: str) -> tuple[Message, ...]:
    return (Message("user", f"Write a short review of {item}."),)


def response(rng: random.Random, item: str, positivity: float) -> str:
    """A 2-3 clause review whose adjectives are positive with probability ``positivity``."""
    clauses = []
    for _ in range(rng.randint(2, 3)):
        adj = rng.choice(POSITIVE) if rng.random() < positivity else rng.choice(NEGATIVE)
        clauses.append((rng.choice(NEUTRAL), adj))
    return review(item, clauses)


def review(item: str, clauses: list[tuple[str, str]]) -> str:
    """The task's one response form: ``review("the zoo", [("the staff", "great")])`` is "I visited the zoo: the staff
    was great." (clauses joined by ", and ")."""
    return f"I visited {item}: " + ", and ".join(f"{noun} was {adj}" for noun, adj in clauses) + "."


def prompts(n: int = 64, seed: int = 0) -> list[tuple[str, tuple[Message, ...]]]:
    rng = random.Random(f"prompts:{seed}")
    items = [rng.choice(ITEMS) for _ in range(n)]
    return [(content_hash(["synthetic-prompt", seed, i, it], 8), prompt_for(it)) for i, it in enumerate(items)]


def pairs(n: int = 512, seed: int = 0, noise: float = 0.0, near_duplicates: float = 0.0,
          length_weight: float = 0.0) -> list[PreferencePair]:
    """Pairs of one prompt and two responses, the higher gold reward preferred; ties are redrawn.

    The knobs (each 0 by default, which leaves every pair as it was) draw from a stream of their own, so turning one
    on changes only the pairs it touches:
    - ``noise``: each pair's two responses are swapped with this probability (label noise; ``meta["flipped"]``).
      At 0.5 the chosen response is independent of its gold reward: y+ has the data's mixed sentiment (SFT data).
    - ``near_duplicates``: this share of pairs becomes seed 000's case, x+ ≈ x- and y+ = y-: the response after its
      own prompt and after the prompt of another item (``meta["near_duplicate"]``; both sides' gold reward equal).
    - ``length_weight``: the gold reward that labels the pairs adds this weight times the word count
      (``oracle_reward``); judge with ``oracle:length_weight=`` the same value.
    """
    rng = random.Random(f"pairs:{seed}")
    knobs = random.Random(f"pair-knobs:{seed}")
    out = []
    while len(out) < n:
        item = rng.choice(ITEMS)
        a, b = response(rng, item, rng.random()), response(rng, item, rng.random())
        ra, rb = oracle_reward(a, length_weight), oracle_reward(b, length_weight)
        if ra == rb:
            continue
        (yp, rp), (yn, rn) = ((a, ra), (b, rb)) if ra > rb else ((b, rb), (a, ra))
        x = xn = prompt_for(item)
        meta: dict = {"gold_chosen": rp, "gold_rejected": rn}
        key = ["synthetic-pair", seed, len(out), yp, yn]
        if near_duplicates and knobs.random() < near_duplicates:
            other = knobs.choice([i for i in ITEMS if i != item])
            xn, yn = prompt_for(other), yp
            meta = {"gold_chosen": rp, "gold_rejected": rp, "near_duplicate": True}
            key = ["synthetic-pair", seed, len(out), yp, yn, other]
        elif noise and knobs.random() < noise:
            yp, yn = yn, yp
            meta = {"gold_chosen": rn, "gold_rejected": rp, "flipped": True}
            key = ["synthetic-pair", seed, len(out), yp, yn]
        out.append(PreferencePair(x, yp, xn, yn, content_hash(key, 8), meta))
    return out


def scored(n: int = 256, k: int = 4, seed: int = 0, length_weight: float = 0.0) -> list[ScoredSamples]:
    """K responses per prompt with their gold rewards (the EXO-rw / DPO-rw format); ``length_weight`` as in ``pairs``."""
    rng = random.Random(f"scored:{seed}:{k}")
    out = []
    for i in range(n):
        item = rng.choice(ITEMS)
        ys = tuple(response(rng, item, rng.random()) for _ in range(k))
        out.append(ScoredSamples(prompt_for(item), ys, tuple(oracle_reward(y, length_weight) for y in ys),
                                 content_hash(["synthetic-scored", seed, k, i, ys, *([length_weight] * bool(length_weight))],
                                              8)))
    return out

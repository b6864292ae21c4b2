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


def oracle_reward(text: str) -> float:
    """Gold reward in [-1, 1]: (positive words - negative words) / max(1, sentiment words). Pure and deterministic.

    >>> oracle_reward("great and clean, but slow")
    0.3333333333333333
    >>> oracle_reward("")
    0.0
    """
    words = _WORD.findall(text.lower())
    pos = sum(w in _POS for w in words)
    neg = sum(w in _NEG for w in words)
    return (pos - neg) / max(1, pos + neg)


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
        clauses.append(f"{rng.choice(NEUTRAL)} was {adj}")
    return f"I visited {item}: " + ", and ".join(clauses) + "."


def prompts(n: int = 64, seed: int = 0) -> list[tuple[str, tuple[Message, ...]]]:
    rng = random.Random(f"prompts:{seed}")
    items = [rng.choice(ITEMS) for _ in range(n)]
    return [(content_hash(["synthetic-prompt", seed, i, it], 8), prompt_for(it)) for i, it in enumerate(items)]


def pairs(n: int = 512, seed: int = 0) -> list[PreferencePair]:
    """Pairs of one prompt and two responses, the higher gold reward preferred; ties are redrawn."""
    rng = random.Random(f"pairs:{seed}")
    out = []
    while len(out) < n:
        item = rng.choice(ITEMS)
        a, b = response(rng, item, rng.random()), response(rng, item, rng.random())
        ra, rb = oracle_reward(a), oracle_reward(b)
        if ra == rb:
            continue
        (yp, rp), (yn, rn) = ((a, ra), (b, rb)) if ra > rb else ((b, rb), (a, ra))
        x = prompt_for(item)
        out.append(PreferencePair(x, yp, x, yn, content_hash(["synthetic-pair", seed, len(out), yp, yn], 8),
                                  {"gold_chosen": rp, "gold_rejected": rn}))
    return out


def scored(n: int = 256, k: int = 4, seed: int = 0) -> list[ScoredSamples]:
    """K responses per prompt with their gold rewards (the EXO-rw / DPO-rw format)."""
    rng = random.Random(f"scored:{seed}:{k}")
    out = []
    for i in range(n):
        item = rng.choice(ITEMS)
        ys = tuple(response(rng, item, rng.random()) for _ in range(k))
        out.append(ScoredSamples(prompt_for(item), ys, tuple(oracle_reward(y) for y in ys),
                                 content_hash(["synthetic-scored", seed, k, i, ys], 8)))
    return out

"""The Anthropic HH-RLHF dialogue format: ``"\\n\\nHuman: …\\n\\nAssistant: …"``.

An HH row holds two whole dialogues, ``chosen`` and ``rejected``. The response is the text after the LAST
``"\\n\\nAssistant:"``; everything before it is the prompt, parsed into a tuple of ``Message``s so multi-turn history is
kept as context. The two sides normally share that prompt, but a few public rows differ before it (5 of the 2,312 in
harmless-base test), so each side keeps its own prompt and nothing here assumes they are equal.

Round trip: the one space after a ``Human:``/``Assistant:`` marker is a separator, not content, so
``render_prompt(x) + " " + y`` gives back the original dialogue whenever each turn starts with that space (every row of
the public file does). A prompt is rendered with the pending ``"\\n\\nAssistant:"`` turn at its end, the plain format
base models were trained on; a chat template adds the same pending turn with ``add_generation_prompt``.
"""

from __future__ import annotations

import re

from evalharness.data.types import Message

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
_ROLES = {"Human": "user", "Assistant": "assistant"}
_SPEAKERS = {role: speaker for speaker, role in _ROLES.items()}
_TURN = re.compile(r"\n\n(Human|Assistant):")


class HHFormatError(ValueError):
    """Text that is not an HH dialogue. The loader adds the file, row and field."""


def split_dialogue(text: str) -> tuple[tuple[Message, ...], str]:
    """Split a whole dialogue into (prompt history, response) at its last ``"\\n\\nAssistant:"``.

    >>> split_dialogue("\\n\\nHuman: hi\\n\\nAssistant: yo\\n\\nHuman: bye\\n\\nAssistant: ciao")[1]
    'ciao'
    >>> split_dialogue("\\n\\nHuman: hi\\n\\nAssistant: yo")
    ((Message(role='user', content='hi'),), 'yo')
    """
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        raise HHFormatError("no '\\n\\nAssistant:' turn")
    history = parse_turns(text[:cut])
    if not any(m.role == "user" for m in history):
        raise HHFormatError("no '\\n\\nHuman:' turn before the last '\\n\\nAssistant:'")
    return history, _drop_separator(text[cut + len(ASSISTANT) :])


def parse_turns(text: str) -> tuple[Message, ...]:
    """Parse ``"\\n\\nHuman: a\\n\\nAssistant: b…"`` into messages; text before the first marker is an error."""
    parts = _TURN.split(text)  # [lead, speaker, content, speaker, content, ...]
    if parts[0].strip():
        raise HHFormatError(f"text before the first '\\n\\nHuman:' turn: {parts[0][:40]!r}")
    return tuple(Message(_ROLES[s], _drop_separator(c)) for s, c in zip(parts[1::2], parts[2::2]))


def render_prompt(messages: tuple[Message, ...]) -> str:
    """The plain HH rendering of a prompt history, ending with the pending assistant turn.

    >>> render_prompt((Message("user", "hi"),))
    '\\n\\nHuman: hi\\n\\nAssistant:'
    """
    out = []
    for m in messages:
        if m.role not in _SPEAKERS:
            raise ValueError(f"the HH format has no {m.role!r} turns (only user and assistant)")
        out.append(f"\n\n{_SPEAKERS[m.role]}: {m.content}")
    return "".join(out) + ASSISTANT


def _drop_separator(s: str) -> str:
    return s[1:] if s.startswith(" ") else s

"""A sampling setting as one evaluation key: the canonical form of a generation's ``sampling`` JSON.

Judging pairs samples of one setting, the leaderboard shows the numbers of one setting, and KL rows name the setting
of the samples they were computed from; all three compare settings in this form. The setting is temperature (a number, 0 for
greedy decoding, or a rule such as ``fastchat`` that sets it per prompt category), top_p, max_new_tokens, the base seed (each sample's own seed derives from it, the prompt, the turn and the sample index) and
the stop strings. The backend that drew the samples is not part of it: one setting drawn by vLLM or by transformers is
the same evaluation. Texts that were not sampled here (reference answers ``{}``, imported outputs
``{"source": …}``) have no temperature; their canonical form is ``UNRECORDED``.
"""

from __future__ import annotations

import json
from typing import Any

from evalharness.hashing import canonical_json, content_hash

UNRECORDED = ""
_REAL = ("temperature", "top_p")  # 1 and 1.0 are one setting


def canonical(raw: Any) -> str:
    """The canonical JSON of a stored ``sampling`` value (text or dict); ``UNRECORDED`` for none.

    >>> canonical('{"temperature": 1, "top_p": 1.0, "max_new_tokens": 64, "seed": 0, "stop": []}')
    '{"max_new_tokens":64,"seed":0,"stop":[],"temperature":1.0,"top_p":1.0}'
    >>> canonical("{}"), canonical(None), canonical('{"source": "annotations"}')
    ('', '', '')
    """
    if raw is None:
        return UNRECORDED
    try:
        value = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError:
        return UNRECORDED
    if not isinstance(value, dict) or "temperature" not in value:
        return UNRECORDED
    value = {k: (float(v) if k in _REAL and isinstance(v, (int, float)) and not isinstance(v, bool) else v)
             for k, v in value.items()}
    return canonical_json(value)


def fields(key: str) -> dict[str, Any]:
    return json.loads(key) if key else {}


def temperature(key: str) -> float | str | None:
    """The setting's temperature: a number, or the name of a per-category rule."""
    t = fields(key).get("temperature")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else (t if isinstance(t, str) else None)


def parse_temperature(value: str | float | None) -> float | str | None:
    """``--temperature``: a number (0: greedy) or a rule name, as ``Sampling.temperature`` takes them."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        return float(value)
    except ValueError:
        return str(value)


def sampling_id(key: str) -> str:
    """A short name of a setting, for the flag that picks one (``--sampling``) when temperatures tie."""
    return content_hash(["sampling", key], 4) if key else "unrecorded"


def describe(key: str) -> str:
    """``T=0.8, top_p 1, 256 new tokens, seed 0`` (what a board header and a candidate list show).

    >>> describe(canonical({"temperature": 0.8, "top_p": 1.0, "max_new_tokens": 256, "seed": 0, "stop": []}))
    'T=0.8, top_p 1, 256 new tokens, seed 0'
    >>> describe(UNRECORDED)
    'sampling not recorded'
    """
    if not key:
        return "sampling not recorded"
    f = fields(key)
    t = temperature(key)
    parts = [f"T={t:g}" if isinstance(t, float) else f"T={t}" if t is not None else "T=?"]
    if isinstance(f.get("top_p"), (int, float)):
        parts.append(f"top_p {f['top_p']:g}")
    if f.get("max_new_tokens") is not None:
        parts.append(f"{f['max_new_tokens']} new tokens")
    if f.get("seed") is not None:
        parts.append(f"seed {f['seed']}")
    if f.get("stop"):
        parts.append("stop " + "|".join(map(str, f["stop"])))
    known = {"temperature", "top_p", "max_new_tokens", "seed", "stop"}
    parts += [f"{k} {f[k]}" for k in sorted(f) if k not in known]
    return ", ".join(parts)


def describe_with_id(key: str) -> str:
    return f"{describe(key)} [{sampling_id(key)}]" if key else describe(key)


def matches(key: str, temperature_: float | str | None = None, sid: str | None = None) -> bool:
    """Whether ``key`` is picked by ``--temperature`` and ``--sampling`` (either may be None: no constraint)."""
    if temperature_ is not None:
        t, want = temperature(key), parse_temperature(temperature_)
        if isinstance(t, float) and isinstance(want, float):
            if abs(t - want) > 1e-9:
                return False
        elif t != want:
            return False
    return sid is None or sampling_id(key) == sid


def show_temperature(value: float | str) -> str:
    return f"T={value:g}" if isinstance(value, (int, float)) else f"T={value}"

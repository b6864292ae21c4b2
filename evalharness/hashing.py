"""Content hashes: canonical JSON -> blake2b. Every row in the store is keyed by one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any


def canonical(obj: Any) -> Any:
    """A JSON-ready form that is identical for equal content (sorted keys, tuples as lists, dataclasses as dicts)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, float):
        if math.isnan(obj) or math.isinf(obj):
            return repr(obj)
        return float(repr(obj))
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "tolist"):
        return canonical(obj.tolist())
    return str(obj)


def canonical_json(obj: Any) -> str:
    return json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(obj: Any, size: int = 16) -> str:
    """Hex blake2b of the canonical JSON of ``obj`` (``size`` bytes, 32 hex characters by default)."""
    return hashlib.blake2b(canonical_json(obj).encode("utf-8"), digest_size=size).hexdigest()


def bytes_hash(chunks, size: int = 16) -> str:
    h = hashlib.blake2b(digest_size=size)
    for c in chunks:
        h.update(c)
    return h.hexdigest()

"""The bounds every setting is checked against when it is bound, and the size limits on input texts and files.

A setting out of range is one ``ConfigError`` line naming it, raised before anything is loaded or written. The size
limits guard memory and time against a runaway input (one 50 MB line, a gzip bomb); their defaults are far above
real data (the longest text of HH-RLHF, MT-Bench, AlpacaEval or Arena-Hard is under 10,000 characters) and are
raised through the environment:

- ``EVALHARNESS_MAX_TEXT_CHARS``: characters in one text field of a data or prompt file (default 1,000,000, about
  250,000 tokens: past any context a model here can read).
- ``EVALHARNESS_MAX_FILE_BYTES``: bytes of one data or prompt file, counted after decompression (default 2 GiB).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any

from evalharness.config import ConfigError

MAX_TEXT_CHARS_ENV = "EVALHARNESS_MAX_TEXT_CHARS"
MAX_FILE_BYTES_ENV = "EVALHARNESS_MAX_FILE_BYTES"
DEFAULT_MAX_TEXT_CHARS = 1_000_000
DEFAULT_MAX_FILE_BYTES = 2 * 1024**3
MAX_SEED = 2**63 - 1  # torch's generators take a signed 64-bit seed; numpy's take any non-negative one
MAX_BOOTSTRAP = 1_000_000  # more resamples change a CI's digits past what any table shows and take minutes
# The synthetic task is generated in memory, about 1 kB and 0.1 ms an example: a million is a gigabyte and minutes,
# far above any sweep here (512 by default); a --limit of 1e20 would grow the process until the machine ran out.
MAX_GENERATED_EXAMPLES = 1_000_000


def generated(name: str, n: Any) -> None:
    """The size of a generated set (its ``limit``), bounded by ``MAX_GENERATED_EXAMPLES``."""
    count(name, n, 1, MAX_GENERATED_EXAMPLES)


def max_text_chars() -> int:
    return _env_limit(MAX_TEXT_CHARS_ENV, os.environ.get(MAX_TEXT_CHARS_ENV), DEFAULT_MAX_TEXT_CHARS)


def max_file_bytes() -> int:
    return _env_limit(MAX_FILE_BYTES_ENV, os.environ.get(MAX_FILE_BYTES_ENV), DEFAULT_MAX_FILE_BYTES)


@lru_cache(maxsize=16)  # read for every text field of a file: parse the variable once per value it takes
def _env_limit(name: str, text: str | None, default: int) -> int:
    if text is None or not text.strip():
        return default
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")
    return value


def count(name: str, value: Any, low: int = 1, high: int | None = None, none: bool = False) -> None:
    """``value`` must be an int (not a bool) in [low, high]; ``none``: None is allowed too."""
    if value is None and none:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be an integer {bound}, got {value!r}")


def seed(name: str, value: Any) -> None:
    count(name, value, 0, MAX_SEED)


def number(name: str, value: Any, low: float | None = None, high: float | None = None, low_open: bool = False,
           none: bool = False) -> None:
    """``value`` must be a finite real number in the interval (``low_open``: strictly above ``low``)."""
    if value is None and none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        if low is None and high is None:
            bound = "a finite number"
        elif high is None:
            bound = f"a finite number {'>' if low_open else '>='} {low:g}"
        elif low is None:
            bound = f"a finite number <= {high:g}"
        else:
            bound = f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"
        raise ConfigError(f"{name} must be {bound}, got {value!r}")


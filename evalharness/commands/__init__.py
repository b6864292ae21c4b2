"""CLI commands that live in their own modules: each registers on ``evalharness.cli.app`` when imported.

Every module in this package is imported by ``load()``; a new command is a new module, and cli.py stays small.
"""

from __future__ import annotations

import importlib
import pkgutil


def load() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")

"""Plugin discovery through entry points.

Each group ``evalharness.<kind>`` names callables ``register(registry)`` that add entries to the registry of that
kind. The built-ins are registered through the same groups (see pyproject.toml), each package by its own hook, so a
third-party plugin is a peer of the built-ins. A plugin whose hook fails is reported with its name and skipped; the
rest keep working.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

from evalharness.registry import KINDS, Registry, RegistryError, unknown_message

_REGISTRIES: dict[str, Registry] = {}
PLUGIN_ERRORS: list[str] = []

# Used when the package runs from a source tree without installed metadata (no entry points to read).
_BUILTIN_HOOKS = {
    "losses": "trainers.losses:register",
    "datasets": "evalharness.data.presets:register",
    "prompts": "evalharness.data.prompts:register",
    "generators": "evalharness.generation:register",
    "judges": "judges:register",
}


def registry(kind: str) -> Registry:
    if kind not in KINDS:
        raise RegistryError(unknown_message("registry", kind, KINDS))
    if kind not in _REGISTRIES:
        reg = Registry(kind)
        _load_hooks(kind, reg)
        _REGISTRIES[kind] = reg
    return _REGISTRIES[kind]


def _load_hooks(kind: str, reg: Registry) -> None:
    eps = list(entry_points(group=f"evalharness.{kind}"))
    hooks = [(ep.name, ep.value, ep.load) for ep in eps]
    if not any(value == _BUILTIN_HOOKS[kind] for _, value, _ in hooks):
        hooks.insert(0, ("builtins", _BUILTIN_HOOKS[kind], lambda: _import(_BUILTIN_HOOKS[kind])))
    for name, value, load in hooks:
        source = "builtin" if value == _BUILTIN_HOOKS[kind] else name
        try:
            hook = load()
            before = set(reg.names())
            hook(reg)
            for added in set(reg.names()) - before:
                reg.entry(added).source = source
        except (Exception, SystemExit) as e:  # a plugin that exits must not end the CLI
            msg = f"plugin {name!r} ({value}) for {kind} failed: {type(e).__name__}: {e}"
            PLUGIN_ERRORS.append(msg)
            print(f"warning: {msg}", file=sys.stderr)


def _import(target: str):
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def reset() -> None:
    """Forget loaded registries (tests that add plugins)."""
    _REGISTRIES.clear()
    PLUGIN_ERRORS.clear()

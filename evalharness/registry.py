"""One small registry for losses, datasets, prompt sets, judges and generators.

Entries are lazy ``"module:attr"`` strings, so listing names (and ``evalharness --help``) imports neither torch nor
vLLM. Lookup is strict: an unknown name is an error with a "did you mean" hint, never a silent default.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any

KINDS = ("losses", "datasets", "prompts", "judges", "generators")
_SINGULAR = {
    "losses": "loss", "datasets": "dataset", "prompts": "prompt set", "judges": "judge", "generators": "generator",
}


class RegistryError(LookupError):
    """An unknown name, or an entry that failed to load."""


@dataclass
class Entry:
    name: str
    target: Any  # "module:attr" or the object itself
    summary: str = ""
    source: str = "builtin"  # the plugin (entry point) that registered it

    def load(self) -> Any:
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (Exception, SystemExit) as e:  # a broken plugin must not break the rest of the CLI
            raise RegistryError(f"{self.name!r} from plugin {self.source!r} failed to load ({self.target}): {e}") from e
        self.target = obj
        return obj


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, target: Any, summary: str = "", source: str = "builtin", replace: bool = False) -> None:
        if name in self._entries and not replace:
            raise RegistryError(f"{_SINGULAR.get(self.kind, self.kind)} {name!r} is registered twice ({self._entries[name].source}, {source})")
        self._entries[name] = Entry(name, target, summary, source)

    def get(self, name: str) -> Any:
        return self.entry(name).load()

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(unknown_message(_SINGULAR.get(self.kind, self.kind), name, self._entries)) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def unknown_message(what: str, name: str, known) -> str:
    known = sorted(known)
    hint = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if hint:
        return f"unknown {what} {name!r}; did you mean {' or '.join(repr(h) for h in hint)}?"
    return f"unknown {what} {name!r}; known: {', '.join(known) or 'none'}"

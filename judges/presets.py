"""Judge presets: a registered judge with some of its arguments set, kept as data in ``judges/presets/NAME.toml``.

A preset file holds ``judge`` (the registered judge it builds), ``summary`` (the line ``evalharness ls judges`` shows)
and any of that judge's own arguments. Each file registers under its name through the judges package's hook, so a
preset is looked up like any other judge, and the arguments of a spec or the CLI (``gpt-4:concurrency=2``) override
the file's. A key the judge does not take is an error naming the file, raised when the preset is built.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any

from judges.base import JudgeError

PRESET_DIR = Path(__file__).resolve().parent / "presets"


class Preset:
    """A judge factory made from a preset file: the named judge, called with the file's arguments under the caller's."""

    def __init__(self, name: str, path: Path, judge: str, summary: str, args: dict[str, Any]):
        self.name, self.path, self.judge, self.summary, self.args = name, path, judge, summary, args

    @classmethod
    def read(cls, path: Path) -> Preset:
        import tomllib

        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise JudgeError(f"judge preset {path}: {e}") from None
        judge, summary = data.pop("judge", None), data.pop("summary", "")
        if not isinstance(judge, str) or not judge.strip():
            raise JudgeError(f"judge preset {path}: 'judge' must name the registered judge it builds "
                             "(e.g. judge = \"llm\")")
        if judge == path.stem:
            raise JudgeError(f"judge preset {path}: a preset can't build itself (judge = {judge!r})")
        if not isinstance(summary, str):
            raise JudgeError(f"judge preset {path}: 'summary' must be a string")
        return cls(path.stem, path, judge, summary, data)

    def factory(self):
        """The judge this preset builds, from the registry (so a preset may build a plugin's judge, or a preset)."""
        from evalharness.plugins import registry
        from evalharness.registry import RegistryError

        try:
            return registry("judges").get(self.judge)
        except RegistryError as e:
            raise JudgeError(f"judge preset {self.path}: {e}") from None

    @property
    def __signature__(self) -> inspect.Signature:
        """The judge's keyword arguments with the file's values as their defaults (what ``build_judge`` checks and
        converts against); raises when the file sets an argument the judge does not take."""
        params = inspect.signature(self.factory()).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            for key in self.args:
                if key not in params:
                    close = difflib.get_close_matches(key, list(params), n=1)
                    hint = f"did you mean {close[0]!r}?" if close else f"it takes: {', '.join(params) or 'nothing'}"
                    raise JudgeError(f"judge preset {self.path}: unknown key {key!r}: judge {self.judge!r} has no such "
                                     f"argument ({hint})")
        kinds = inspect.Parameter
        keyword = []  # the preset is called with keywords only, so a required argument may follow a preset one
        for p in params.values():
            if p.kind in (kinds.POSITIONAL_ONLY, kinds.VAR_POSITIONAL):
                continue
            if p.kind is not kinds.VAR_KEYWORD:
                p = p.replace(kind=kinds.KEYWORD_ONLY, default=self.args.get(p.name, p.default))
            keyword.append(p)
        return inspect.Signature(keyword)

    def check_spec(self, args: dict[str, str]) -> None:
        """A spec's arguments checked without building the judge, as the judge it builds checks them (where it can),
        with the file's values under them."""
        self.__signature__  # noqa: B018 - the file's keys first
        check = getattr(self.factory(), "check_spec", None)
        if check is not None:  # spec arguments arrive as text, so the file's values go in as text too
            check({**{k: str(v) for k, v in self.args.items()}, **args})

    def __call__(self, **kwargs: Any):
        self.__signature__  # noqa: B018 - checks the file's keys before anything is built
        return self.factory()(**{**self.args, **kwargs})

    def __repr__(self) -> str:
        return f"Preset({self.name!r}, judge={self.judge!r}, {self.args!r})"


def register_presets(reg, directory: Path = PRESET_DIR) -> None:
    """Every ``*.toml`` in ``directory`` as a judge named after its file. A file that can't be read is reported after
    the others are registered, so one bad file costs only itself."""
    errors = []
    for path in sorted(directory.glob("*.toml")):
        try:
            preset = Preset.read(path)
        except JudgeError as e:
            errors.append(str(e))
            continue
        reg.add(preset.name, preset, preset.summary)
    if errors:
        raise JudgeError("; ".join(errors))

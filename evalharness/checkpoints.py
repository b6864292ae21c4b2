"""Where a stored checkpoint's weights are, checked to be the weights its run saved.

Rows hold absolute paths (schema 6 on) and the fingerprint of the weight files. Older rows hold the path relative to
the directory ``train`` ran in and no fingerprint: the path is looked for from the working directory, then beside the
store (where ``train`` usually runs), and taken only from a run directory whose ``config.json`` does not name another
run. A directory whose files no longer match the stored fingerprint is refused: other weights are never read under a
run's name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from evalharness.config import ConfigError
from evalharness.store import Store


def locate(row: dict[str, Any], store: Store) -> Path | None:
    """The directory of a checkpoint row, or None where it is not on disk (reads no weights)."""
    path = Path(row["path"])
    bases = [Path()] if path.is_absolute() else [Path.cwd(), Path(store.path).resolve().parent]
    for base in dict.fromkeys(bases):
        candidate = base / path
        if candidate.is_dir() and (row.get("fingerprint") or _may_hold(candidate.parent, row["run_id"])):
            return candidate.resolve()
    return None


def checkpoint_path(row: dict[str, Any], store: Store, label: str) -> str:
    """The checked directory of a checkpoint row; ConfigError where it is missing or holds other weights."""
    path = locate(row, store)
    if path is None:
        hint = "" if Path(row["path"]).is_absolute() else \
            f" (stored relative to where train ran: run from there or beside {store.path})"
        raise ConfigError(f"{label}: checkpoint {row['path']} is not on disk{hint}")
    stored = row.get("fingerprint")
    if stored:
        from evalharness.models import model_fingerprint

        found = model_fingerprint(path)
        if found != stored:
            raise ConfigError(f"{label}: {path} holds other weights than the run saved (fingerprint {found[:12]}, "
                              f"stored {stored[:12]}); restore that directory or train the run again with --restart")
    return str(path)


def _may_hold(run_dir: Path, run_id: str) -> bool:
    """False when the run directory's config.json names another run (a marker that can't be read proves nothing)."""
    try:
        other = json.loads((run_dir / "config.json").read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return True
    return not other or other == run_id


_PATH_ARG = re.compile(r"(?<=[:,])path=([^,]*)")


def final_checkpoint(ref: str, store: Store) -> str | None:
    """The checked final checkpoint directory of the run ``ref`` names in the store, or None where no run has that
    name (a run that names itself but has no final checkpoint is a ConfigError)."""
    run = store.get_run(ref)
    if run is None:
        return None
    finals = [c for c in store.checkpoints(run["run_id"]) if c["is_final"]]
    if not finals:
        raise ConfigError(f"run {ref!r} ({run['run_id'][:12]}, {run['status']}) has no final checkpoint")
    return checkpoint_path(finals[-1], store, f"run {ref!r}")


def with_run_checkpoints(judge_spec: str, store: Store) -> str:
    """``judge_spec`` with a ``path=RUN`` argument that is not a directory replaced by that run's final checkpoint:
    ``reward-model:path=rm`` then means the same in ``judge`` and ``eval`` as in an experiment."""

    def resolve(m: re.Match) -> str:
        value = m.group(1)
        if not value or Path(value).exists():
            return m.group(0)
        found = final_checkpoint(value, store)
        return m.group(0) if found is None else f"path={found}"

    return _PATH_ARG.sub(resolve, judge_spec)

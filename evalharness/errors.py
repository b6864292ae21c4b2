"""The errors that mean bad input (one line, exit 2) rather than a bug."""

from __future__ import annotations

import sys

# Where each bad-input error class lives. They are looked up, not imported: importing trainers.spec or
# evalharness.models alone would load torch and transformers (about 2 s) into every command, even `evalharness
# leaderboard` or a judge re-run served from the store.
_USER_ERRORS = {
    "evalharness.config": "ConfigError",
    "evalharness.data.types": "DataError",
    "evalharness.registry": "RegistryError",
    "evalharness.store": "StoreError",
    "trainers.spec": "ParamError",
    "evalharness.models": "ModelError",
    "judges.base": "JudgeError",
}
# Work that passed every check and then failed (one line, exit 1): a run whose loss or gradients became non-finite.
_FAILURES = {
    "trainers.spec": "Diverged",
}


def user_error_types() -> tuple[type[BaseException], ...]:
    """The bad-input error classes of the modules loaded so far."""
    return _loaded(_USER_ERRORS)


def failure_types() -> tuple[type[BaseException], ...]:
    """The failed-work error classes of the modules loaded so far."""
    return _loaded(_FAILURES)


def _loaded(classes: dict[str, str]) -> tuple[type[BaseException], ...]:
    """The classes of ``classes`` whose modules are imported: an error whose module was never imported can't have
    been raised."""
    return tuple(getattr(sys.modules[m], name) for m, name in classes.items() if m in sys.modules)

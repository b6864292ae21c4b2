"""Which samples the judging runner pairs: one sampling setting, the same for every model of the run.

A model may hold samples of a prompt set at several settings (T=0.8 for the board, T=1.0 from an on-policy pairs
step). Pairing each model's most complete setting would put a T=1.0 answer against a T=0.8 one and pool both
settings into one win rate, so the setting is chosen once for all models:

- stated: ``JudgeConfig.generate["sampling"]`` (what the runner samples with) is the setting; models without samples
  at it are sampled at it first;
- asked: ``--temperature T`` (and ``--sampling ID`` where temperatures tie) narrows the settings every model holds;
  models with no sample at T are sampled at T (the other sampling fields at their defaults);
- otherwise the one setting every model holds. None, or several: a one-line error that lists them.

Reference answers (``reference:<set>``) have no sampling setting and meet samples of any.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from evalharness import evalkey
from evalharness.config import ConfigError


def stated(cfg: Any) -> str | None:
    """The canonical setting the config samples with, when it names one (``generate["sampling"]``)."""
    sampling = (cfg.generate or {}).get("sampling")
    if sampling is None:
        return None
    return evalkey.canonical(dataclasses.asdict(sampling) if dataclasses.is_dataclass(sampling) else sampling)


def wanted(cfg: Any, key: str) -> bool:
    """Whether samples at setting ``key`` are what the config asks for (every setting, when it asks nothing)."""
    want = stated(cfg)
    if want is not None and key != want:
        return False
    return evalkey.matches(key, getattr(cfg, "temperature", None), getattr(cfg, "sampling", None))


def sampling_for_missing(cfg: Any) -> dict[str, Any]:
    """GenerateConfig fields for a model with no sample at the asked setting: the stated one, else the asked
    temperature, else the defaults."""
    if stated(cfg) is None and getattr(cfg, "temperature", None) is not None:
        from evalharness.generation.base import Sampling

        return {"sampling": Sampling(temperature=evalkey.parse_temperature(cfg.temperature))}
    return {}


def settings_of(con, checkpoint: str, prompt_set: str) -> set[str]:
    """The canonical settings a checkpoint holds samples of on a prompt set."""
    rows = con.execute("SELECT DISTINCT CAST(g.sampling AS VARCHAR) FROM generations g JOIN prompts p USING "
                       "(prompt_id) WHERE g.checkpoint = ? AND p.prompt_set = ?", [checkpoint, prompt_set]).fetchall()
    return {evalkey.canonical(r[0]) for r in rows}


def choose(held: dict[str, set[str]], labels: dict[str, str], cfg: Any) -> str:
    """The one setting to pair, from what each model (checkpoint key -> its canonical settings) holds."""
    want = stated(cfg)
    common = set.intersection(*held.values()) if held else set()
    fits = sorted(k for k in common if wanted(cfg, k))
    if len(fits) == 1:
        return fits[0]
    asked = _asked(cfg, want)
    if not fits:
        have = "; ".join(f"{labels.get(ck, ck)} has " + (", ".join(evalkey.describe(k) for k in sorted(ks)) or "none")
                         for ck, ks in sorted(held.items(), key=lambda kv: labels.get(kv[0], kv[0])))
        if asked:
            raise ConfigError(f"not every model has samples on {cfg.prompts!r} at {asked}: {have}")
        raise ConfigError(f"no sampling setting is shared by every model on {cfg.prompts!r}: {have}; sample them at "
                          "one setting (`evalharness generate`) or pass --temperature T to sample the missing ones")
    temps = [evalkey.temperature(k) for k in fits]
    flag = "--temperature" if len(set(temps)) == len(temps) and getattr(cfg, "temperature", None) is None \
        else "--sampling ID"
    raise ConfigError(f"the models hold samples on {cfg.prompts!r} at {len(fits)} settings"
                      + (f" matching {asked}" if asked else "") + ": "
                      + "; ".join(evalkey.describe_with_id(k) for k in fits) + f"; choose one with {flag}")


def _asked(cfg: Any, want: str | None) -> str:
    if want is not None:
        return evalkey.describe(want)
    parts = []
    if getattr(cfg, "temperature", None) is not None:
        parts.append(evalkey.show_temperature(evalkey.parse_temperature(cfg.temperature)))
    if getattr(cfg, "sampling", None) is not None:
        parts.append(f"sampling {cfg.sampling}")
    return " and ".join(parts)

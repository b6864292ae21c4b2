"""Recipes: sequential stages (``sft->dpo``) and weighted sums of losses (``0.8*dpo + 1.0*sft``).

A stage is one run; the next stage starts from its final checkpoint and uses it as the reference, as seed 000 does
for SFT+DPO and ExMATE+DPO. A weighted sum is one ``LossSpec`` whose needs are the union of its parts' needs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evalharness.plugins import registry
from trainers.spec import LossInputs, LossOutput, LossSpec, ParamError

_TERM = re.compile(r"^\s*(?:(?P<w>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z][\w-]*)\s*$")


@dataclass(frozen=True)
class Part:
    weight: float
    spec: LossSpec
    params: Any


@dataclass(frozen=True)
class WeightedParams:
    """The bound params of a weighted sum: one entry per part, in order."""

    parts: tuple[Part, ...]

    def augment_prefix(self) -> str:
        prefixes = {p.params.augment_prefix() for p in self.parts if hasattr(p.params, "augment_prefix")}
        if len(prefixes) > 1:
            raise ParamError("parts of a weighted loss disagree on the prompt-augmentation prefix")
        return prefixes.pop()


def parse_stages(expr: str) -> list[list[tuple[float, str]]]:
    """``"sft -> 0.8*dpo + sft"`` -> [[(1.0, "sft")], [(0.8, "dpo"), (1.0, "sft")]]."""
    stages = []
    for stage in re.split(r"->|→", expr):
        terms = []
        for term in stage.split("+"):
            m = _TERM.match(term)
            if not m:
                raise ParamError(f"can't read loss term {term.strip()!r} in {expr!r}; write e.g. 'dpo' or '0.8*dpo'")
            weight = float(m["w"]) if m["w"] else 1.0
            if not math.isfinite(weight):  # "1e400*dpo" reads as inf
                raise ParamError(f"loss term {term.strip()!r} in {expr!r}: the weight must be a finite number")
            terms.append((weight, m["name"]))
        if len({n for _, n in terms}) != len(terms):
            raise ParamError(f"a loss appears twice in {stage.strip()!r}")
        stages.append(terms)
    return stages


def build_stage(terms: list[tuple[float, str]], overrides: Mapping[str, Any]) -> tuple[LossSpec, Any]:
    """Bind the parameters of one stage. ``overrides`` keys are ``param`` or ``loss.param``."""
    losses = registry("losses")
    specs = [(w, losses.get(name)) for w, name in terms]
    names = [s.name for _, s in specs]
    per: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in overrides.items():
        owner, dot, param = key.rpartition(".")
        if dot:
            if owner in per:
                per[owner][param] = value
            continue  # a key for another stage's loss
        # An unprefixed key goes to every part that has it; with one part it must exist there.
        takers = [n for n in names if param in _fields(losses.get(n).params)]
        if not takers and len(names) == 1:
            takers = names  # let the binder raise its "did you mean"
        for n in takers:
            per[n][param] = value
    bound = [Part(w, s, _finite(s, s.make_params(per[s.name]))) for w, s in specs]
    if len(bound) == 1 and bound[0].weight == 1.0:
        return bound[0].spec, bound[0].params
    return weighted_spec(bound), WeightedParams(tuple(bound))


def params_record(params: Any) -> dict[str, Any]:
    """Bound params as stored with a run: the dataclass's fields, or for a weighted sum one table per part."""
    import dataclasses

    if isinstance(params, WeightedParams):
        return {part.spec.name: dataclasses.asdict(part.params) for part in params.parts}
    return dataclasses.asdict(params)


def check_overrides(expr: str, overrides: Mapping[str, Any]) -> None:
    """Every override must be used by some stage: a typo is an error, never silently ignored."""
    stages = parse_stages(expr)
    losses = registry("losses")
    names = {n for terms in stages for _, n in terms}
    for key in overrides:
        owner, dot, param = key.rpartition(".")
        candidates = [owner] if dot else sorted(names)
        if dot and owner not in names:
            raise ParamError(f"--set {key}: no loss {owner!r} in {expr!r}")
        if not any(param in _fields(losses.get(n).params) for n in candidates):
            import difflib

            known = sorted({f for n in candidates for f in _fields(losses.get(n).params)})
            hint = difflib.get_close_matches(param, known, n=1)
            tip = f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(known) or 'none'}"
            raise ParamError(f"loss {' / '.join(candidates)} has no parameter {param!r}{tip}")


def _finite(spec: LossSpec, params: Any) -> Any:
    """Every number a loss is given is finite: ``beta=inf`` or ``1e400`` would make every step's loss NaN, found only
    after the run directory and the store were written."""
    import dataclasses

    for f in dataclasses.fields(params) if dataclasses.is_dataclass(params) else ():
        value = getattr(params, f.name)
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ParamError(f"loss {spec.name!r}: parameter {f.name!r} must be a finite number, got {value!r}")
    return params


def _fields(cls) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)}


def weighted_spec(parts: list[Part]) -> LossSpec:
    """One LossSpec for Σ w_i · loss_i. State and step stats are namespaced by part name ("e-dpo.beta")."""
    needs = frozenset().union(*(p.spec.needs for p in parts))
    name = " + ".join(f"{p.weight:g}*{p.spec.name}" for p in parts)

    def fn(inputs: LossInputs, params: WeightedParams) -> LossOutput:
        total, chosen, rejected, metrics, stats = 0.0, None, None, {}, {}
        for part in params.parts:
            sub = inputs
            if "state" in part.spec.needs:
                prefix = part.spec.name + "."
                own = {k[len(prefix):]: v for k, v in (inputs.state or {}).items() if k.startswith(prefix)}
                sub = _replace(inputs, state=own)
            out = part.spec.fn(sub, part.params)
            total = total + part.weight * out.losses
            if chosen is None and out.chosen_rewards is not None:
                chosen, rejected = out.chosen_rewards, out.rejected_rewards
            metrics[f"{part.spec.name}/loss"] = out.losses.detach()
            metrics.update({f"{part.spec.name}/{k}": v for k, v in out.metrics.items()})
            stats.update({f"{part.spec.name}.{k}": v for k, v in out.step_stats.items()})
        return LossOutput(total, chosen, rejected, metrics, stats)

    def init_state(params: WeightedParams) -> dict[str, float]:
        return {f"{p.spec.name}.{k}": v for p in params.parts for k, v in p.spec.initial_state(p.params).items()}

    def update_state(state, stats, params: WeightedParams):
        new = dict(state)
        for p in params.parts:
            if p.spec.update_state is None:
                continue
            prefix = p.spec.name + "."
            own_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            own_stats = {k[len(prefix):]: v for k, v in stats.items() if k.startswith(prefix)}
            new.update({prefix + k: v for k, v in p.spec.update_state(own_state, own_stats, p.params).items()})
        return new

    def reference_update(params: WeightedParams, step: int):
        movers = [p for p in params.parts if p.spec.reference_update is not None]
        return movers[0].spec.reference_update(movers[0].params, step)

    return LossSpec(
        name=name,
        fn=fn,
        params=WeightedParams,
        needs=needs,
        summary="weighted sum of " + ", ".join(p.spec.name for p in parts),
        init_state=init_state if any(p.spec.init_state for p in parts) else None,
        update_state=update_state if "state" in needs else None,
        reference_update=reference_update if "moving_reference" in needs else None,
    )


def _replace(inputs: LossInputs, **changes) -> LossInputs:
    import dataclasses

    return dataclasses.replace(inputs, **changes)

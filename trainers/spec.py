"""The loss contract: what a loss declares, what it receives, what it returns.

A loss is a pure function ``fn(inputs: LossInputs, params) -> LossOutput`` over tensors of log-probs. It declares
in ``LossSpec.needs`` which optional fields of ``LossInputs`` it reads; the training loop computes exactly those and
branches on the declarations, never on loss names.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

# What a loss can ask the loop for. Each maps to the LossInputs fields it fills (see LossInputs).
NEEDS = frozenset(
    {
        "reference",  # summed reference log-probs of y+ / y- (cacheable in the store)
        "reference_logits",  # full-vocabulary policy and reference logits on response tokens (live reference forward)
        "moving_reference",  # the reference changes during training (TR-DPO): never served from the cache
        "prompt_augmented",  # summed policy (no grad) and reference log-probs with the prompt p prepended to x±
        "token_logps",  # per-token policy log-probs and masks
        "k_samples",  # K completions per prompt: [B, K] log-probs (and reference ones with "reference")
        "rewards",  # scalar rewards [B, K] from the data (EXO-rw, DPO-rw)
        "reward_head",  # the model is a scalar reward model: scores of y+ / y- (Bradley-Terry)
        "state",  # loss state carried across optimizer steps (e-DPO's beta, beta-DPO's margin estimate)
    }
)


@dataclass
class LossInputs:
    """Everything a loss may read. Fields are None unless a declared need (in brackets) asks for them.

    B = pairs in the micro-batch, L = padded response length, V = vocabulary, K = samples per prompt.
    Summed log-probs cover response tokens only (prompt masked): ``lp(y|x) = Σ_t log π(y_t | x, y_<t)``.
    """

    policy_chosen_logps: Tensor | None = None  # [B] lpπ(y+|x+)            (pair data)
    policy_rejected_logps: Tensor | None = None  # [B] lpπ(y-|x-)          (pair data)
    chosen_lengths: Tensor | None = None  # [B] T+, float                  (pair data)
    rejected_lengths: Tensor | None = None  # [B] T-, float                (pair data)
    reference_chosen_logps: Tensor | None = None  # [B] lpref(y+|x+)      [reference]
    reference_rejected_logps: Tensor | None = None  # [B] lpref(y-|x-)    [reference]
    policy_chosen_token_logps: Tensor | None = None  # [B, L] 0 where masked  [token_logps]
    policy_rejected_token_logps: Tensor | None = None  # [B, L]               [token_logps]
    chosen_mask: Tensor | None = None  # [B, L] bool, True on response tokens  [token_logps, reference_logits]
    rejected_mask: Tensor | None = None  # [B, L] bool                          [token_logps, reference_logits]
    policy_chosen_logits: Tensor | None = None  # [B, L, V] logits predicting y+_t   [reference_logits]
    policy_rejected_logits: Tensor | None = None  # [B, L, V]                        [reference_logits]
    reference_chosen_logits: Tensor | None = None  # [B, L, V]                       [reference_logits]
    reference_rejected_logits: Tensor | None = None  # [B, L, V]                     [reference_logits]
    chosen_labels: Tensor | None = None  # [B, L] long, the token ids y+_t          [reference_logits]
    rejected_labels: Tensor | None = None  # [B, L] long                             [reference_logits]
    augmented_policy_chosen_logps: Tensor | None = None  # [B] lpπ(y+|p⊕x+), no grad  [prompt_augmented]
    augmented_policy_rejected_logps: Tensor | None = None  # [B]                      [prompt_augmented]
    augmented_reference_chosen_logps: Tensor | None = None  # [B]                     [prompt_augmented]
    augmented_reference_rejected_logps: Tensor | None = None  # [B]                   [prompt_augmented]
    policy_logps_k: Tensor | None = None  # [B, K] lpπ(y_i|x)                         [k_samples]
    reference_logps_k: Tensor | None = None  # [B, K] lpref(y_i|x)                    [k_samples + reference]
    lengths_k: Tensor | None = None  # [B, K] token counts                            [k_samples]
    rewards_k: Tensor | None = None  # [B, K] scalar rewards r(x, y_i)                [rewards]
    chosen_scores: Tensor | None = None  # [B] reward-model score of (x+, y+)          [reward_head]
    rejected_scores: Tensor | None = None  # [B] reward-model score of (x-, y-)        [reward_head]
    state: Mapping[str, float] | None = None  # loss state before this step           [state]

    @property
    def batch_size(self) -> int:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                return v.shape[0]
        raise ValueError("LossInputs holds no tensor")


@dataclass
class LossOutput:
    """``losses`` [B] per-example losses (the loop reduces); the rest is logged.

    ``chosen_rewards`` / ``rejected_rewards`` [B] are the implicit rewards (detached) the loop logs as rewards,
    margin and accuracy. ``metrics`` maps a name to a scalar or a [B] tensor (averaged). ``step_stats`` maps a
    name to a [B] tensor that the loop concatenates over the whole global batch (all micro-batches and ranks) and
    hands to ``LossSpec.update_state`` after the optimizer step.
    """

    losses: Tensor
    chosen_rewards: Tensor | None = None
    rejected_rewards: Tensor | None = None
    metrics: dict[str, Tensor] = field(default_factory=dict)
    step_stats: dict[str, Tensor] = field(default_factory=dict)


class ParamError(ValueError):
    """An unknown or invalid loss parameter."""


class Diverged(FloatingPointError):
    """Training produced a non-finite loss or gradient norm: the settings passed their checks, the run failed."""


@dataclass(frozen=True)
class LossSpec:
    """A registered loss.

    ``update_state(state, stats, params) -> state`` runs after each optimizer step with ``stats`` gathered over the
    global batch; ``init_state(params) -> state`` gives the state before step 1. ``reference_update(params, step)``
    (with need "moving_reference") returns the mixing weight α to move the reference toward the policy after
    optimizer step ``step`` (1.0 copies, None leaves it): ref ← α·π + (1-α)·ref.
    """

    name: str
    fn: Callable[[LossInputs, Any], LossOutput]
    params: type
    needs: frozenset[str]
    summary: str = ""
    init_state: Callable[[Any], dict[str, float]] | None = None
    update_state: Callable[[dict[str, float], dict[str, Tensor], Any], dict[str, float]] | None = None
    reference_update: Callable[[Any, int], float | None] | None = None

    def __post_init__(self):
        unknown = set(self.needs) - NEEDS
        if unknown:
            raise ValueError(f"loss {self.name!r} declares unknown needs {sorted(unknown)}; known: {sorted(NEEDS)}")
        if not dataclasses.is_dataclass(self.params):
            raise TypeError(f"loss {self.name!r}: params must be a dataclass type")
        if ("state" in self.needs) != (self.update_state is not None):
            raise ValueError(f"loss {self.name!r}: need 'state' and update_state go together")
        if ("moving_reference" in self.needs) != (self.reference_update is not None):
            raise ValueError(f"loss {self.name!r}: need 'moving_reference' and reference_update go together")

    def make_params(self, overrides: Mapping[str, Any] | None = None):
        """Bind ``overrides`` (strings from the CLI are coerced to the field's type) to the params dataclass."""
        return bind_params(self.params, overrides or {}, owner=f"loss {self.name!r}")

    def initial_state(self, params) -> dict[str, float]:
        return dict(self.init_state(params)) if self.init_state else {}


def bind_params(cls: type, overrides: Mapping[str, Any], owner: str):
    """Bind ``overrides`` to the params dataclass ``cls``: every string is text in the ``--set`` value grammar, read by
    the field's declared type (``evalharness.config.coerce``), so ``0.1``, ``".1"`` and ``"1e-1"`` bind the same."""
    from evalharness.config import coerce, field_types

    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = field_types(cls)
    kwargs = {}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in fields:
            hint = difflib.get_close_matches(key, list(fields), n=1)
            tip = f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(sorted(fields)) or 'none'}"
            raise ParamError(f"{owner} has no parameter {key!r}{tip}")
        try:
            kwargs[key] = coerce(value, hints.get(key), text=isinstance(value, str))
        except ValueError as e:
            raise ParamError(f"{owner}: parameter {key!r} expects {e}, got {value!r}") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ParamError(f"{owner}: {e}") from None


def check(condition: bool, message: str) -> None:
    """Validate a parameter in a params dataclass's __post_init__."""
    if not condition:
        raise ValueError(message)


def logsigmoid(x: Tensor) -> Tensor:
    return torch.nn.functional.logsigmoid(x)

"""The loss contract, checked over every entry of the loss registry (built-ins and any installed plugins).

Each loss gets synthetic inputs holding ONLY the fields its declared needs provide (every other field is None, so
reading an undeclared field fails loudly), and must return finite per-example losses [B] whose gradient reaches the
policy. A loss whose module does not import fails here under its own name.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import pytest
import torch

from evalharness.plugins import registry
from trainers.spec import LossInputs, LossOutput, LossSpec

B, L, V, K = 4, 6, 11, 3
# Response lengths per row (padding after them); row 3 is a single token, the edge of every mean over tokens.
CHOSEN_LENGTHS = [6, 3, 5, 1]
REJECTED_LENGTHS = [4, 6, 2, 5]
NAMES = registry("losses").names()


def _load(name: str) -> LossSpec:
    spec = registry("losses").get(name)
    assert isinstance(spec, LossSpec), f"{name!r} is registered as {type(spec).__name__}, not a LossSpec"
    return spec


def _mask(lengths) -> torch.Tensor:
    return torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]


def synthetic_inputs(spec: LossSpec, params, seed: int = 0) -> tuple[LossInputs, dict[str, torch.Tensor]]:
    """LossInputs filled per ``spec.needs``, and the policy leaves (requires_grad) the gradient must reach.

    Log-probs are consistent: summed = Σ of token log-probs over the mask, and with "reference_logits" the token
    log-probs are the log-softmax of the logits at the labels, for policy and reference alike.
    """
    g = torch.Generator().manual_seed(seed)
    needs = spec.needs
    leaves: dict[str, torch.Tensor] = {}
    f: dict[str, object] = {}

    def leaf(name: str, t: torch.Tensor) -> torch.Tensor:
        leaves[name] = t.requires_grad_(True)
        return t

    def logps(*shape) -> torch.Tensor:  # valid log-probs, away from 0 so log(1 - p) is finite
        return -(torch.rand(*shape, generator=g) * 3.0 + 0.05)

    if "state" in needs:
        f["state"] = spec.initial_state(params)

    if "k_samples" in needs:
        f["policy_logps_k"] = leaf("policy_logps_k", logps(B, K) * 5)
        f["lengths_k"] = torch.randint(1, 12, (B, K), generator=g).float()
        if "reference" in needs:
            f["reference_logps_k"] = logps(B, K) * 5
        if "rewards" in needs:
            f["rewards_k"] = torch.randn(B, K, generator=g)
        return LossInputs(**f), leaves

    masks = {"chosen": _mask(CHOSEN_LENGTHS), "rejected": _mask(REJECTED_LENGTHS)}
    for side, mask in masks.items():
        f[f"{side}_lengths"] = mask.sum(-1).float()
        if "reference_logits" in needs:
            labels = torch.randint(0, V, (B, L), generator=g)
            logits = leaf(f"policy_{side}_logits", torch.randn(B, L, V, generator=g))
            ref_logits = logits.detach() + 0.5 * torch.randn(B, L, V, generator=g)
            tokens = torch.log_softmax(logits, -1).gather(-1, labels[..., None]).squeeze(-1) * mask
            ref_tokens = torch.log_softmax(ref_logits, -1).gather(-1, labels[..., None]).squeeze(-1) * mask
            f.update(
                {f"policy_{side}_logits": logits, f"reference_{side}_logits": ref_logits, f"{side}_labels": labels}
            )
            f[f"{side}_mask"] = mask
            ref_summed = ref_tokens.sum(-1)
        else:
            tokens = logps(B, L) * mask
            if "token_logps" in needs:
                tokens = leaf(f"policy_{side}_token_logps", tokens)
            else:
                tokens = leaf(f"policy_{side}_logps", tokens.sum(-1))
            ref_summed = (logps(B, L) * mask).sum(-1)
        summed = tokens.sum(-1) if tokens.dim() == 2 else tokens
        f[f"policy_{side}_logps"] = summed
        if "token_logps" in needs:
            f[f"policy_{side}_token_logps"] = tokens
            f[f"{side}_mask"] = mask
        if "reference" in needs:
            f[f"reference_{side}_logps"] = ref_summed
        if "prompt_augmented" in needs:
            f[f"augmented_policy_{side}_logps"] = summed.detach() + 0.3 * torch.randn(B, generator=g)
            f[f"augmented_reference_{side}_logps"] = ref_summed + 0.3 * torch.randn(B, generator=g)
        if "reward_head" in needs:
            f[f"{side}_scores"] = leaf(f"{side}_scores", torch.randn(B, generator=g))
    return LossInputs(**f), leaves


def _declared_fields(inputs: LossInputs) -> set[str]:
    return {f.name for f in dataclasses.fields(inputs) if getattr(inputs, f.name) is not None}


@pytest.mark.parametrize("name", NAMES)
def test_loss_contract(name):
    spec = _load(name)
    assert spec.name == name
    params = spec.make_params()  # every parameter has a valid default
    inputs, leaves = synthetic_inputs(spec, params)
    assert leaves, "the synthetic inputs give the loss no policy tensor to differentiate"

    out = spec.fn(inputs, params)

    assert isinstance(out, LossOutput)
    assert out.losses.shape == (B,), f"losses must be per example [B], got {tuple(out.losses.shape)}"
    assert torch.isfinite(out.losses).all(), out.losses
    for rewards in (out.chosen_rewards, out.rejected_rewards):
        if rewards is not None:
            assert rewards.shape == (B,) and torch.isfinite(rewards).all()
            assert not rewards.requires_grad, "logged rewards must be detached"
    assert (out.chosen_rewards is None) == (out.rejected_rewards is None)
    for key, value in out.metrics.items():
        value = torch.as_tensor(value)
        assert value.numel() in (1, B) and torch.isfinite(value).all(), f"metric {key!r}: {value}"
    for key, value in out.step_stats.items():
        assert value.shape == (B,) and torch.isfinite(value).all(), f"step stat {key!r}: {value}"

    out.losses.sum().backward()
    got = {k: t.grad for k, t in leaves.items() if t.grad is not None}
    assert got, f"no gradient reached any policy input ({sorted(leaves)})"
    assert all(torch.isfinite(g).all() for g in got.values()), got
    assert any(g.abs().sum() > 0 for g in got.values()), "all policy gradients are zero"

    if spec.update_state is not None:
        # The loop hands update_state the step stats of the whole global batch: two micro-batches here.
        other, _ = synthetic_inputs(spec, params, seed=1)
        second = spec.fn(other, params)
        stats = {k: torch.cat([out.step_stats[k].detach(), second.step_stats[k].detach()]) for k in out.step_stats}
        new_state = spec.update_state(dict(inputs.state), stats, params)
        assert isinstance(new_state, dict)
        for key, value in new_state.items():
            is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
            assert is_number and math.isfinite(value), f"state[{key!r}] = {value!r} is not a finite float"
        assert set(spec.initial_state(params)) <= set(new_state), "update_state dropped a state key"

    if spec.reference_update is not None:
        for step in range(1, 2000):
            w = spec.reference_update(params, step)
            assert w is None or (isinstance(w, float) and 0.0 < w <= 1.0), f"step {step}: mixing weight {w!r}"


@pytest.mark.parametrize("name", NAMES)
def test_synthetic_inputs_hold_only_what_the_needs_provide(name):
    """Guards the builder above: an undeclared field must stay None, or the contract test proves nothing."""
    spec = _load(name)
    inputs, _ = synthetic_inputs(spec, spec.make_params())
    present = _declared_fields(inputs)
    needs = spec.needs
    if "k_samples" in needs:
        assert not any(n.startswith(("policy_chosen", "policy_rejected", "chosen_", "rejected_")) for n in present)
    else:
        assert {"policy_chosen_logps", "policy_rejected_logps", "chosen_lengths", "rejected_lengths"} <= present
    assert ("reference_chosen_logps" in present) == ("reference" in needs and "k_samples" not in needs)
    assert ("policy_chosen_token_logps" in present) == ("token_logps" in needs)
    assert ("policy_chosen_logits" in present) == ("reference_logits" in needs)
    assert ("augmented_policy_chosen_logps" in present) == ("prompt_augmented" in needs)
    assert ("chosen_scores" in present) == ("reward_head" in needs)
    assert ("state" in present) == ("state" in needs)

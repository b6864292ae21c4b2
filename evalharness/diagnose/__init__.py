"""`evalharness diagnose`: the seed papers' analysis tools, run on any checkpoint and any pair data.

Each diagnostic reads a checkpoint (a run from the store or a model name), computes its quantities, stores them in the
``diagnostics`` table under content-hash keys (so a re-run computes nothing new), and renders a table and a PNG from
the stored rows. Nothing here imports torch at module level: the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

import importlib

# CLI name -> (the `kind` stored in the diagnostics table, module, one-line summary)
KINDS: dict[str, tuple[str, str, str]] = {
    "information": (
        "information-difference", "evalharness.diagnose.information",
        "seed 000 §4/§6.1, Fig. 3: |f+ - f-| per pair (sequence and per-token forms) and ||P+ - P-||_p per time step, "
        "split by y+_t == y-_t, for the weights and a randomly initialised copy",
    ),
    "gradients": (
        "gradient", "evalharness.diagnose.gradients",
        "seed 000 eq. 10-18: autograd gradient of each --loss on the logits of y+_t, y-_t and all other tokens, at "
        "steps where y+_t != y-_t and where they are equal",
    ),
    "monotonicity": (
        "monotonicity", "evalharness.diagnose.monotonicity",
        "seed 003 Fig. 4a: share of pairs whose logit increases / decreases / neither under the ε-DPO β perturbation, "
        "and each class's implicit reward margin with 95% CIs",
    ),
    "density-ratio": (
        "density-ratio", "evalharness.diagnose.density_ratio",
        "seed 004 Fig. 3/9: M samples from the reference; self-normalised policy and optimal density ratios against "
        "log π_ref",
    ),
    "beta-sensitivity": (
        "beta-sensitivity", "evalharness.diagnose.beta_sensitivity",
        "seed 000 App. G, Fig. 7: probability of positives and agility against β over a sweep's final checkpoints",
    ),
}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        from evalharness.config import ConfigError
        from evalharness.registry import unknown_message

        raise ConfigError(unknown_message("diagnostic", kind, KINDS))
    return kind


def run(kind: str, cfg, store):
    """Run diagnostic ``kind`` (a key of ``KINDS``) with a ``DiagnoseConfig`` on a ``Store``; returns a
    ``common.Report`` (its table, the PNG path, and how many units were computed or read back)."""
    module = importlib.import_module(KINDS[check_kind(kind)][1])
    return module.run(cfg, store)


__all__ = ["KINDS", "check_kind", "run"]

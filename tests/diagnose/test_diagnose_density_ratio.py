"""EXO's density-ratio view (seed 004 Fig. 3/9): self-normalised ratios by hand and on tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from evalharness.diagnose import run
from evalharness.diagnose.common import DiagnoseConfig
from evalharness.diagnose.density_ratio import log_ratios, prompt_rows_of, smooth

SMALL = {"samples": "8", "max_new_tokens": "12"}


def test_self_normalised_ratio_by_hand():
    # Optimal ratio M·exp(r_i/β)/Σ_j exp(r_j/β), r = (1, 0, -1, 0), β = 0.5 -> weights e², 1, e⁻², 1:
    # Σ = 7.389056 + 1 + 0.135335 + 1 = 9.524391;  4/9.524391 = 0.419974, so
    #   ρ = 0.419974·(7.389056, 1, 0.135335, 1) = (3.103214, 0.419974, 0.056837, 0.419974), summing to M = 4.
    rho = np.exp(log_ratios([1.0, 0.0, -1.0, 0.0], scale=1 / 0.5))
    assert rho == pytest.approx([3.103214, 0.419974, 0.056837, 0.419974], abs=1e-6)
    assert rho.sum() == pytest.approx(4.0)
    # a policy ratio depends only on differences of log π_θ - log π_ref: shifting all by a constant changes nothing
    assert np.exp(log_ratios([-3.0, -5.0])) == pytest.approx(np.exp(log_ratios([7.0, 5.0])))


def test_kernel_smoothing_of_a_constant_is_the_constant():
    x = [-5.0, -3.0, -2.5, -1.0]
    assert smooth(x, [2.0] * 4, np.array([-4.0, -2.0])) == pytest.approx([2.0, 2.0])
    assert smooth([1.0, 1.0], [1.0, 3.0], np.array([1.0])) is None  # no spread in log π_ref: nothing to smooth


def test_policy_equal_to_its_reference_has_ratio_one(tmp_path):
    from evalharness.store import Store

    store = Store(str(tmp_path / "s.duckdb"))
    cfg = DiagnoseConfig(checkpoints=["tiny-llama"], limit=1, out=str(tmp_path), settings=SMALL)
    report = run("density-ratio", cfg, store)
    [rows] = _units(store).values()
    [prompt] = prompt_rows_of(rows)
    d = prompt.data
    assert prompt.value == 8 and len(d["logp_ref"]) == 8
    assert np.exp(d["log_ratio_policy"]) == pytest.approx([1.0] * 8, abs=1e-12)  # π_θ = π_ref: ρ_θ = 1 exactly
    assert np.exp(d["log_ratio_optimal"]).sum() == pytest.approx(8.0)
    # π* ∝ π_ref·exp(r/β) with the oracle reward of each sample's text
    want = np.exp(log_ratios(d["reward"], 1 / 0.1))
    assert np.exp(d["log_ratio_optimal"]) == pytest.approx(want)
    # the full-forward score equals what the sampler computed while decoding (KV cache), to float32 noise
    assert d["logp_ref"] == pytest.approx(d["logp_ref_sampled"], abs=2e-3)
    assert rows["forward_kl"].value == 0.0 and report.png.exists()


def test_a_different_policy_on_the_same_reference_samples(tmp_path):
    from evalharness.store import Store

    store = Store(str(tmp_path / "s.duckdb"))
    cfg = DiagnoseConfig(checkpoints=["tiny-llama", "tiny-gpt-neox"], reference="tiny-llama", limit=1,
                         out=str(tmp_path), settings=SMALL)
    report = run("density-ratio", cfg, store)
    assert (report.computed, report.cached) == (2, 0)
    units = _units(store)
    [same], [other] = (prompt_rows_of(units[k]) for k in sorted(units, key=lambda k: k != _key("tiny-llama")))
    # both checkpoints saw the same reference samples (drawn once, per-sample seeds)
    assert same.data["logp_ref"] == other.data["logp_ref"]
    w = np.asarray(other.data["logp_policy"]) - np.asarray(other.data["logp_ref"])
    assert np.exp(other.data["log_ratio_policy"]) == pytest.approx(8 * np.exp(w) / np.exp(w).sum(), rel=1e-9)
    # KL(π_ref || π_θ) on the reference's samples: positive for two different random models
    assert float(np.mean(-w)) > 0.1
    again = run("density-ratio", cfg, store)
    assert (again.computed, again.cached) == (0, 2)


def _key(name: str) -> str:
    from evalharness.diagnose.common import model_key

    return model_key(name)


def _units(store):
    import json

    from evalharness.diagnose.common import Row

    out: dict = {}
    with store.connect() as con:
        for ckpt, name, value, data in con.execute(
                "SELECT checkpoint, name, value, data FROM diagnostics WHERE kind = 'density-ratio'").fetchall():
            out.setdefault(ckpt, {})[name] = Row(name, value, json.loads(data))
    return out


def test_unknown_reward_is_a_settings_error():
    from trainers.spec import ParamError

    with pytest.raises(ParamError, match="reward must be one of oracle"):
        run("density-ratio", DiagnoseConfig(checkpoints=["tiny-llama"], settings={"reward": "gpt4"}), None)

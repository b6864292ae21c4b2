"""β sensitivity (seed 000 App. G) over a sweep of tiny runs read from the store."""

from __future__ import annotations

import math

import pytest
import torch

from evalharness.config import ConfigError
from evalharness.diagnose import run
from evalharness.diagnose.beta_sensitivity import find_sweeps, rows_of
from evalharness.diagnose.common import DiagnoseConfig, Encoding, encode_pairs, load_lm


def test_rows_by_hand():
    # lp+ = -2 over T+ = 2 -> f+ = e^-1 = 0.367879;  lp- = -6 over T- = 3 -> f- = e^-2 = 0.135335
    # agility 0.232544; sequence form e^-2 - e^-6 = 0.135335 - 0.002479 = 0.132856; ppl(y+) = exp(2/2) = e
    rows = {r.name: r for r in rows_of({"logp_pos": [-2.0], "logp_neg": [-6.0], "len_pos": [2], "len_neg": [3]},
                                       ["p"])}
    assert rows["positive_prob"].value == pytest.approx(0.367879, abs=1e-6)
    assert rows["agility"].value == pytest.approx(0.232544, abs=1e-6)
    assert rows["agility_seq"].value == pytest.approx(0.132856, abs=1e-6)
    assert rows["perplexity"].value == pytest.approx(math.e)
    assert rows["logp_margin"].value == 4.0


def test_the_sweep_is_the_two_dpo_runs(sweep_store):
    [sweep], notes = find_sweeps(sweep_store)
    assert sweep.loss == "dpo" and [m.beta for m in sweep.members] == [0.1, 0.5] and notes == []
    assert [s.loss for s in find_sweeps(sweep_store, runs=["dpo-0.1"])[0]] == ["dpo"]
    with pytest.raises(ConfigError, match="no sweep found"):
        find_sweeps(sweep_store, losses=["sft"])  # one run, and no β


def test_values_match_a_direct_computation_and_rerun_adds_nothing(sweep_store, tmp_path):
    from evalharness.data import synthetic
    from evalharness.models import load_tokenizer
    from evalharness.scoring import sequence_logps

    cfg = DiagnoseConfig(limit=5, out=str(tmp_path))
    report = run("beta-sensitivity", cfg, sweep_store)
    assert (report.computed, report.cached) == (2, 0) and report.png.read_bytes()[:4] == b"\x89PNG"
    with sweep_store.connect() as con:
        stored = dict(con.execute("SELECT checkpoint, value FROM diagnostics WHERE kind = 'beta-sensitivity' "
                                  "AND name = 'positive_prob'").fetchall())
        count = con.execute("SELECT count(*) FROM diagnostics").fetchone()[0]
    [sweep], _ = find_sweeps(sweep_store)
    for m in sweep.members:
        # the peer: mean over pairs of exp(lp(y+|x+)/T+) under the checkpoint, computed here from scratch
        tok = load_tokenizer(m.checkpoint["path"])
        pairs, _ = encode_pairs(synthetic.pairs(5), tok, Encoding())
        with torch.no_grad():
            fwd = sequence_logps(load_lm(m.checkpoint["path"]), [p.chosen for p in pairs], tok.pad_token_id)
        want = (fwd.summed.double() / fwd.lengths.double()).exp().mean().item()
        assert stored[m.checkpoint["checkpoint_id"]] == pytest.approx(want, rel=1e-6)
    assert len(set(stored.values())) == 2  # the two checkpoints differ
    again = run("beta-sensitivity", cfg, sweep_store)
    assert (again.computed, again.cached) == (0, 2) and again.table == report.table
    with sweep_store.connect() as con:
        assert con.execute("SELECT count(*) FROM diagnostics").fetchone()[0] == count


def test_a_checkpoint_holding_other_weights_is_an_error_before_anything_is_written(sweep_store, tmp_path,
                                                                                    monkeypatch):
    stored = sweep_store.checkpoints
    monkeypatch.setattr(sweep_store, "checkpoints",
                        lambda run_id: [dict(c, fingerprint="0" * 64) for c in stored(run_id)])
    with sweep_store.connect() as con:
        before = con.execute("SELECT count(*) FROM diagnostics").fetchone()[0]
    with pytest.raises(ConfigError, match="holds other weights than the run saved"):
        run("beta-sensitivity", DiagnoseConfig(limit=5, out=str(tmp_path)), sweep_store)
    with sweep_store.connect() as con:
        assert con.execute("SELECT count(*) FROM diagnostics").fetchone()[0] == before

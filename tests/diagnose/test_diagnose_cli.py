"""`evalharness diagnose` through the CLI: tables, PNGs, store rows written once, one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from evalharness.cli import app
from evalharness.hashing import canonical, content_hash
from evalharness.store import Store

runner = CliRunner()


def _run(args, cwd):
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, ["diagnose", *args], catch_exceptions=False)
    finally:
        os.chdir(old)


def _rows(path):
    with Store(str(path)).connect() as con:
        return con.execute("SELECT diagnostic_id, kind, checkpoint, dataset, settings, name FROM diagnostics").fetchall()


def test_information_writes_rows_once_and_a_png(tmp_path):
    args = ["information", "-c", "tiny-llama", "--limit", "3", "--set", "random_init=false", "--store", "s.duckdb",
            "--out", "figs"]
    first = _run(args, tmp_path)
    assert first.exit_code == 0, first.output
    assert "|f+-f-| seq (median)" in first.stdout and "1 computed, 0 from the store" in first.stdout
    [png] = (tmp_path / "figs").glob("information-*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    rows = _rows(tmp_path / "s.duckdb")
    assert {r[5] for r in rows} >= {"pairs", "steps", "info_seq/median", "grad_diff/same", "literal_same/share"}
    # diagnostic_id = hash(kind, checkpoint, dataset, settings, name)
    for rid, kind, ckpt, dataset, settings, name in rows:
        assert rid == content_hash([kind, ckpt, dataset, canonical(json.loads(settings)), name])
    second = _run(args, tmp_path)
    assert second.exit_code == 0 and "0 computed, 1 from the store" in second.stdout
    assert second.stdout.splitlines()[:3] == first.stdout.splitlines()[:3]  # the table, from the stored rows
    assert len(_rows(tmp_path / "s.duckdb")) == len(rows)
    assert list((tmp_path / "figs").glob("*.png")) == [png]


def test_gradients_table_per_loss(tmp_path):
    result = _run(["gradients", "-c", "tiny-llama", "--loss", "dpo,exmate", "--limit", "2", "--set", "dpo.beta=0.5",
                   "--store", "s.duckdb", "--out", "figs"], tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["checkpoint", "loss", "steps", "n"]
    dpo_same = next(line for line in lines if " dpo " in line and " same " in line).split()
    exm_same = next(line for line in lines if " exmate " in line and " same " in line).split()
    # policy = reference and x+ = x-: DPO's shared-logit gradient at y+_t == y-_t steps is ~0, ExMATE's is not
    assert abs(float(dpo_same[4])) < 1e-4 < float(exm_same[4])
    settings = {json.loads(r[4])["loss"]: json.loads(r[4]) for r in _rows(tmp_path / "s.duckdb")}
    assert settings["dpo"]["params"] == {"beta": 0.5} and settings["exmate"]["params"] == {"beta": 0.05}
    assert settings["exmate"]["reference"] is None and settings["dpo"]["reference"].startswith("model:")


@pytest.mark.parametrize(
    "args, message",
    [
        (["informaton", "-c", "tiny-llama"], "unknown diagnostic 'informaton'; did you mean 'information'"),
        (["information", "-c", "tiny-llama", "--set", "pp=1"], "has no parameter 'pp'; did you mean 'p'"),
        (["information", "-c", "tiny-llama", "--set", "p=0.5"], "p must be >= 1"),
        (["gradients", "-c", "tiny-llama", "--loss", "dpoo"], "unknown loss 'dpoo'; did you mean 'dpo'"),
        (["gradients", "-c", "tiny-llama", "--loss", "exo-rw"], "needs k_samples, rewards"),
        (["gradients", "-c", "tiny-llama", "--set", "kto.beta=1"], "no loss 'kto'"),
        (["monotonicity"], "give at least one --checkpoint"),
        (["monotonicity", "-c", "tiny-lama"], "unknown model 'tiny-lama'; did you mean 'tiny-llama'"),
        (["information", "-c", "tiny-llama", "--data", "synthetic-scored"], "needs preference pairs"),
        (["information", "-c", "tiny-llama", "--limit", "0"], "--limit must be >= 1"),
        (["beta-sensitivity"], "no sweep found"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    result = _run([*args, "--store", "s.duckdb", "--out", "figs"], tmp_path)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert list(tmp_path.iterdir()) == []

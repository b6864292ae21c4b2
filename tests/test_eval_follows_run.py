"""`evalharness eval` measures a run on its own held-out pairs at its own lengths, and a plain model beside runs as
they were measured, so their perplexities stand on one board."""

import json

import pytest
from typer.testing import CliRunner

from evalharness.cli import app
from evalharness.config import DataConfig, TrainConfig
from evalharness.store import Store


@pytest.fixture(scope="module")
def run_store(tmp_path_factory):
    """A 1-step tiny-llama DPO run trained at lengths 128/64 holding out a quarter of 32 synthetic pairs."""
    from trainers.loop import train

    tmp = tmp_path_factory.mktemp("follow")
    store = Store(str(tmp / "s.duckdb"))
    data = DataConfig(name="synthetic", limit=32, eval_fraction=0.25)
    train(TrainConfig(loss="dpo", model="tiny-llama", data=data, max_steps=1, batch_size=2, max_length=128,
                      max_prompt_length=64, out=str(tmp / "run"), name="d"), store, progress=False)
    return store


def _eval(store: Store, *args):
    return CliRunner().invoke(app, ["eval", "--metrics", "perplexity", "--bootstrap", "10", "--no-progress",
                                    "--store", store.path, *args], catch_exceptions=False)


def _rows(store: Store) -> dict[str, tuple]:
    with store.connect() as con:
        rows = con.execute("SELECT label, dataset, settings FROM metrics WHERE metric = 'perplexity'").fetchall()
    return {label: (dataset, {k: json.loads(s)[k] for k in ("eval_fraction", "max_length", "max_prompt_length")})
            for label, dataset, s in rows}


def test_a_run_and_a_base_model_are_measured_on_the_runs_held_out_pairs_and_lengths(run_store):
    result = _eval(run_store, "-c", "d", "-c", "tiny-llama")
    assert result.exit_code == 0, result.output
    rows = _rows(run_store)
    assert rows["d:1"] == rows["tiny-llama"]
    assert rows["d:1"][1] == {"eval_fraction": 0.25, "max_length": 128, "max_prompt_length": 64}


def test_a_larger_held_out_share_than_the_runs_is_refused_and_writes_nothing(run_store):
    before = _rows(run_store)
    result = _eval(run_store, "-c", "d", "--eval-fraction", "0.5")
    assert result.exit_code == 2
    assert result.stderr == ("error: eval_fraction 0.5 is more than run d:1 held out of 'synthetic' (0.25): the extra "
                             "pairs are ones it trained on; use at most 0.25 (the default is the run's own)\n")
    assert _rows(run_store) == before
    smaller = _eval(run_store, "-c", "d", "--eval-fraction", "0.125", "--limit", "32")
    assert smaller.exit_code == 0, smaller.output
    with run_store.connect() as con:
        (n,) = con.execute("SELECT count(*) FROM metrics WHERE metric = 'perplexity' AND "
                           "json_extract(settings, '$.eval_fraction')::DOUBLE = 0.125").fetchone()
    assert n == 1

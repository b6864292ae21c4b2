"""The AlpacaEval import's summary, its refusal of a second annotation set for one pair, and the imported judges'
own policy (weighted annotations count as AlpacaEval counts them)."""

import json
from pathlib import Path

import numpy as np
import pytest

from evalharness.data.types import DataError
from evalharness.importers import import_alpaca_eval
from evalharness.store import Store
from leaderboards.board import LeaderboardConfig, build_leaderboard


def _ann(instruction, preference, model="model-x", **extra):
    return {"instruction": instruction, "output_1": f"base says {instruction}", "generator_1": "base",
            "output_2": f"{model} says {instruction}", "generator_2": model, "preference": preference, **extra}


def _write(root: Path, directory: str, annotations, annotator="judge-y"):
    ann = root / directory / annotator
    ann.mkdir(parents=True)
    (ann / "annotations.json").write_text(json.dumps(annotations))
    return root


def _judgments(store):
    with store.connect() as con:
        return con.execute("SELECT count(*) FROM judgments").fetchone()[0]


def test_summary_names_the_rated_models_and_their_baselines(tmp_path):
    root = _write(tmp_path / "ae", "model-x", [_ann("a", 2), _ann("b", 1)])
    _write(root, "model-z", [_ann("a", 1, model="model-z")])
    (root / "base").mkdir()
    (root / "base" / "model_outputs.json").write_text(json.dumps([{"instruction": "a", "output": "base says a",
                                                                   "generator": "base"}]))
    lines = import_alpaca_eval(root, Store(str(tmp_path / "s.duckdb"))).lines()
    assert lines[0] == "alpaca-eval: outputs of 1 models (base)"
    assert lines[1] == "annotator judge-y: rated model-x vs base (2 annotations), model-z vs base (1 annotations)"


@pytest.mark.parametrize("second, record", [
    ("model-x-rerun", _ann("b", 2)),  # the same texts judged again, another verdict
    ("model-x-copy", _ann("b", 1, output_2="model-x says b, sampled again")),  # another answer of the same model
])
def test_a_second_annotation_set_of_one_pair_is_refused_and_nothing_written(tmp_path, second, record):
    root = _write(tmp_path / "ae", "model-x", [_ann("a", 2), _ann("b", 1)])
    _write(root, second, [record])  # the same model, baseline, annotator and instruction
    store = Store(str(tmp_path / "s.duckdb"))
    with pytest.raises(DataError) as e:
        import_alpaca_eval(root, store)
    message = str(e.value)
    assert f"{second}/judge-y/annotations.json:1:" in message and "model-x/judge-y/annotations.json:2" in message
    assert "a second annotation of 'model-x' vs 'base' by 'judge-y'" in message and "\n" not in message
    assert not Path(store.path).exists()


def test_a_second_set_against_the_store_is_refused_and_a_reimport_is_not(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    first = _write(tmp_path / "one", "model-x", [_ann("a", 2), _ann("b", 1)])
    import_alpaca_eval(first, store)
    assert import_alpaca_eval(first, store).new["judgments"] == 0  # the same set again: nothing new, no error
    other = _write(tmp_path / "two", "model-x", [_ann("c", 1), _ann("b", 1.25)])
    with pytest.raises(DataError, match=r"two/model-x/judge-y/annotations.json:2: the store already holds another "
                                        r"annotation of 'model-x' vs 'base' by 'judge-y'"):
        import_alpaca_eval(other, store)
    assert _judgments(store) == 2


def test_weighted_annotations_give_alpacaevals_headline_by_default(tmp_path):
    # AlpacaEval's documented rule: win rate = mean(preference - 1) * 100, a legacy 0 read as the draw 1.5, and the
    # standard error = the sample SD (ddof 1) of (preference - 1) over sqrt(n), * 100.
    preferences = [1.25, 2.0, 1.0, 1.5, 1.9, 1.0, 0, 1.62]
    root = _write(tmp_path / "ae", "model-x", [_ann(str(i), p) for i, p in enumerate(preferences)])
    store = Store(str(tmp_path / "s.duckdb"))
    import_alpaca_eval(root, store)
    soft = np.array([1.5 if p == 0 else p for p in preferences]) - 1.0
    board = build_leaderboard(store.path, LeaderboardConfig(n_resamples=10))
    row = next(r for r in board.rows if r["label"] == "model-x")
    assert row["win_rate"] == pytest.approx(100 * soft.mean(), abs=1e-10)
    assert row["win_rate_se"] == pytest.approx(100 * soft.std(ddof=1) / np.sqrt(len(soft)), abs=1e-10)
    assert board.meta["ties"] == "average" and "ties: average (the judge's own policy)" in board.meta["notes"][1]
    # Asked for, the hard-verdict policy still applies: 1.25 -> base, 2, 1.9, 1.62 -> model, 1.5 and 0 -> draws.
    hard = build_leaderboard(store.path, LeaderboardConfig(ties="tie", n_resamples=10))
    assert next(r for r in hard.rows if r["label"] == "model-x")["win_rate"] == pytest.approx(100 * 4 / 8)
    assert "(the judge's own policy)" not in hard.meta["notes"][1]


DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alpaca-eval"


@pytest.mark.skipif(not (DATA / "alpaca-7b" / "alpaca_eval_gpt4" / "annotations.json").exists(),
                    reason=f"AlpacaEval files are not at {DATA}")
def test_alpaca_7b_lc_is_withheld_without_instruction_difficulty(tmp_path):
    # One rated model and no AlpacaEval difficulty estimates: length_controlled_v1 cannot be fitted, and the board
    # says so rather than print a number (AlpacaEval's published LC for this row is 26.29).
    store = Store(str(tmp_path / "s.duckdb"))
    import_alpaca_eval(DATA, store)
    board = build_leaderboard(store.path, LeaderboardConfig(baseline="text_davinci_003", n_resamples=20))
    row = next(r for r in board.rows if r["label"] == "alpaca-7b")
    assert round(row["win_rate"], 2) == 26.46 and round(row["win_rate_se"], 2) == 1.54
    assert row["lc_win_rate"] is None and row["lc_note"] == "no difficulty" and row["lc_method"] == "alpacaeval-v1"
    assert "difficulty none: 1 rated model(s), a joint fit needs 3" in board.meta["notes"][3]

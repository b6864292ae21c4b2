"""The AlpacaEval import: reproduce AlpacaEval's own figures from its published annotations, import idempotently,
and reject malformed files with one line naming file, record and field, writing nothing."""

import json
import os
from pathlib import Path

import pytest

from evalharness.data.types import DataError
from evalharness.importers import import_alpaca_eval
from evalharness.store import Store
from leaderboards.board import LeaderboardConfig, build_leaderboard

DATA = Path(os.environ.get("EVALHARNESS_ALPACA_EVAL",
                           Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alpaca-eval"))
ANNOTATIONS = DATA / "alpaca-7b" / "alpaca_eval_gpt4" / "annotations.json"
needs_data = pytest.mark.skipif(not ANNOTATIONS.exists(), reason=f"AlpacaEval files are not at {DATA}")


def _counts(store):
    with store.connect() as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("prompts", "generations", "judgments")}


@needs_data
def test_alpaca_7b_vs_text_davinci_003_gives_alpaca_evals_own_figures(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    import_alpaca_eval(DATA, store)
    board = build_leaderboard(store.path, LeaderboardConfig(baseline="text_davinci_003", n_resamples=200))
    row = next(r for r in board.rows if r["label"] == "alpaca-7b")
    # AlpacaEval 1's leaderboard for alpaca-7b with the GPT-4 annotator: 26.46 +- 1.54, 205 wins, 584 losses, 16 draws.
    assert (row["wins"], row["losses"], row["ties"], row["n"]) == (205, 584, 16, 805)
    assert round(row["win_rate"], 2) == 26.46 and round(row["win_rate_se"], 2) == 1.54
    # Exactly: (205 + 16/2)/805, and the sample SD (ddof 1) of the 0 / 0.5 / 1 outcomes over sqrt(805).
    mean = 213 / 805
    var = (205 * (1 - mean) ** 2 + 16 * (0.5 - mean) ** 2 + 584 * mean**2) / 804
    assert row["win_rate"] == pytest.approx(100 * mean, abs=1e-12)
    assert row["win_rate_se"] == pytest.approx(100 * (var / 805) ** 0.5, abs=1e-12)
    assert row["win_rate_ci_low"] < row["win_rate"] < row["win_rate_ci_high"]
    assert board.meta["judge"] == "alpaca-eval:alpaca_eval_gpt4" and board.meta["single_order_pairs"] == 805


@needs_data
def test_import_maps_orders_and_keys_and_reimport_adds_nothing(tmp_path):
    from evalharness.data.prompts import PromptSetSpec, load_prompts

    store = Store(str(tmp_path / "s.duckdb"))
    first = import_alpaca_eval(DATA, store, annotator="alpaca_eval_gpt4")
    # 805 prompts; 3 x 805 outputs plus the 785 judged text_davinci_003 answers that differ from its outputs file.
    assert _counts(store) == {"prompts": 805, "generations": 3 * 805 + 785, "judgments": 805}
    assert first.counts["judged texts not in the outputs file"] == 785 and first.counts["draws"] == 16
    again = import_alpaca_eval(DATA, store)
    assert again.new == {"prompts": 0, "generations": 0, "judgments": 0}
    assert _counts(store) == {"prompts": 805, "generations": 3 * 805 + 785, "judgments": 805}
    # Prompt ids are the ones the alpaca-eval prompt-set loader gives, so `generate` and the import meet.
    loaded = load_prompts(PromptSetSpec("alpaca-eval", path=str(DATA / "alpaca-7b" / "model_outputs.json")))
    with store.connect() as con:
        ids = {p for (p,) in con.execute("SELECT prompt_id FROM prompts WHERE prompt_set = 'alpaca-eval'").fetchall()}
        row = con.execute("""
            SELECT j.model_a, j.model_b, j.swapped, j.verdict, j.probability, gf.text, gs.text, gf.label
            FROM judgments j JOIN prompts p USING (prompt_id)
            JOIN generations gf ON gf.generation_id = j.generation_first
            JOIN generations gs ON gs.generation_id = j.generation_second
            WHERE p.messages->>'$[0].content' = ?""", [json.loads(ANNOTATIONS.read_text())[0]["instruction"]]).fetchone()
    assert ids == {p.id for p in loaded.prompts}
    record = json.loads(ANNOTATIONS.read_text())[0]  # preference 1: output_1 (text_davinci_003, shown first) won
    assert record["preference"] == 1
    assert row == ("alpaca-eval:alpaca-7b", "alpaca-eval:text_davinci_003", True, "first", 1.0, record["output_1"],
                   record["output_2"], "text_davinci_003")


def _write(root: Path, annotations, outputs=None):
    ann = root / "model-x" / "judge-y"
    ann.mkdir(parents=True)
    (ann / "annotations.json").write_text(json.dumps(annotations))
    if outputs is not None:
        (root / "model-x" / "model_outputs.json").write_text(json.dumps(outputs))
    return root


def _ann(instruction, preference, **extra):
    return {"instruction": instruction, "output_1": f"base says {instruction}", "generator_1": "base",
            "output_2": f"x says {instruction}", "generator_2": "model-x", "preference": preference, **extra}


def test_weighted_preferences_and_the_average_tie_policy(tmp_path):
    # preference - 1 is the model's expected win: 0.25, 1, 0, 0.5 -> mean 0.4375 (AlpacaEval 2's weighted rate).
    # Hard verdicts: 1.25 -> output_1 wins, 2 -> model, 1 -> base, 1.5 -> draw: (1 + 0.5)/4 = 0.375.
    root = _write(tmp_path / "ae", [_ann("a", 1.25), _ann("b", 2), _ann("c", 1), _ann("d", 1.5)])
    store = Store(str(tmp_path / "s.duckdb"))
    import_alpaca_eval(root, store)
    rate = {}
    for ties in ("tie", "average"):
        board = build_leaderboard(store.path, LeaderboardConfig(ties=ties, n_resamples=10))
        rate[ties] = next(r for r in board.rows if r["label"] == "model-x")["win_rate"]
    assert rate == {"tie": pytest.approx(37.5), "average": pytest.approx(43.75)}


@pytest.mark.parametrize("annotations, where, problem", [
    ([_ann("a", 1), _ann("b", 3)], ":2 field 'preference'", "3 is outside [1, 2]"),
    ([_ann("a", 1), {**_ann("b", 1), "output_2": None}], ":2 field 'output_2'", "expected a string, got NoneType"),
    ([{k: v for k, v in _ann("a", 1).items() if k != "generator_1"}], ":1 field 'generator_1'", "missing field"),
    ([_ann("a", "yes")], ":1 field 'preference'", "expected a number"),
    ({"not": "a list"}, "annotations.json", "expected a JSON array"),
])
def test_bad_annotations_name_file_record_and_field_and_write_nothing(tmp_path, annotations, where, problem):
    root = _write(tmp_path / "ae", annotations, outputs=[{"instruction": "a", "output": "x", "generator": "model-x"}])
    store = Store(str(tmp_path / "s.duckdb"))
    with pytest.raises(DataError) as e:
        import_alpaca_eval(root, store)
    assert where in str(e.value) and problem in str(e.value) and "\n" not in str(e.value)
    assert not Path(store.path).exists()  # everything is checked before the store is opened


def test_malformed_json_and_missing_directories(tmp_path):
    root = tmp_path / "ae" / "m"
    root.mkdir(parents=True)
    (root / "model_outputs.json").write_text('[{"instruction": "a", "output": "b",}]')
    with pytest.raises(DataError, match=r"model_outputs.json:1: not valid JSON"):
        import_alpaca_eval(tmp_path / "ae", Store(str(tmp_path / "s.duckdb")))
    with pytest.raises(DataError, match="no such directory"):
        import_alpaca_eval(tmp_path / "nope", Store(str(tmp_path / "s.duckdb")))
    with pytest.raises(DataError, match="holds no <model>/gpt5/annotations.json"):
        import_alpaca_eval(tmp_path / "ae", Store(str(tmp_path / "s.duckdb")), annotator="gpt5")


def test_the_data_limits_hold_for_imported_files(tmp_path, monkeypatch):
    """A file over the byte limit is refused before it is read; a text over the character limit names its record."""
    root = _write(tmp_path / "ae", [_ann("a", 1), {**_ann("b", 2), "output_2": "y" * 5000}],
                  outputs=[{"instruction": "a", "output": "x", "generator": "model-x"}])
    store = Store(str(tmp_path / "s.duckdb"))
    monkeypatch.setenv("EVALHARNESS_MAX_TEXT_CHARS", "4000")
    with pytest.raises(DataError, match=r"annotations.json:2 field 'output_2'.*5,000 characters is over the limit"):
        import_alpaca_eval(root, store)
    monkeypatch.setenv("EVALHARNESS_MAX_FILE_BYTES", "200")
    with pytest.raises(DataError, match=r"bytes is over the limit of 200 bytes \(raise it with EVALHARNESS_MAX"):
        import_alpaca_eval(root, store)
    assert not Path(store.path).exists()

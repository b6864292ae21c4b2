"""The store is the only writer: no module outside the store layer holds SQL that writes, and the store's typed rows
round-trip through insert_/get_ methods whose statements name every column."""

import ast
import re
from datetime import datetime
from pathlib import Path

import pytest

from evalharness import store as store_module
from evalharness.store import Store
from evalharness.store_rows import (
    RECORDS,
    ClaimRecord,
    DiagnosticRecord,
    ExperimentRecord,
    GenerationRecord,
    JudgmentRecord,
    MetricRecord,
    PromptRecord,
    RatingRecord,
    RunAliasRecord,
    ScoreRecord,
    insert_statement,
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("evalharness", "judges", "trainers", "leaderboards")
STORE_LAYER = {"evalharness/store.py", "evalharness/store_rows.py", "evalharness/migrations.py"}
WRITES = re.compile(
    r"\b(INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+|TEMPORARY\s+)?"
    r"(UNIQUE\s+)?(TABLE|INDEX|VIEW|SEQUENCE|MACRO|SCHEMA|TYPE)|DROP\s+(TABLE|INDEX|VIEW|SEQUENCE|MACRO|SCHEMA|TYPE)"
    r"|ALTER\s+TABLE|COPY\s+\S+\s+(FROM|TO))\b"
    # Words that are also column names ("checkpoint") count only where a statement starts.
    r"|(^|;)\s*(TRUNCATE|ATTACH|DETACH|FORCE\s+CHECKPOINT|CHECKPOINT|VACUUM|EXPORT\s+DATABASE|IMPORT\s+DATABASE)\b",
    re.IGNORECASE)
# A temporary table lives in the connection, not in the store file: a module may make one and drop what it made.
TEMP = re.compile(r"CREATE\s+(OR\s+REPLACE\s+)?(TEMP|TEMPORARY)\s+TABLE\s+(\w+)", re.IGNORECASE)
DROP = re.compile(r"^\s*DROP\s+TABLE\s+(IF\s+EXISTS\s+)?(\w+)\s*$", re.IGNORECASE)
RUNS_SQL = {"execute", "executemany", "sql", "query", "bulk_insert"}


def _text(node: ast.AST, names: dict[str, list[str]]) -> list[str]:
    """The SQL texts an argument can spell: a string, an f-string (its holes read as ``x``), a name assigned a
    string in the module, or a sum of these."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)]
    if isinstance(node, ast.Name):
        return names.get(node.id, [])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, names) or ["x"], _text(node.right, names) or ["x"]
        return [a + b for a in left for b in right]
    return []


def writing_sql(source: str) -> list[tuple[int, str]]:
    """(line, statement) of every SQL text run by execute/executemany/sql/query/bulk_insert that would write."""
    tree = ast.parse(source)
    names: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.setdefault(target.id, []).extend(_text(node.value, {}))
    runs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in RUNS_SQL:
                runs += [(node.lineno, t) for arg in node.args for t in _text(arg, names)]
    temps = {m.group(3).lower() for _, text in runs for m in TEMP.finditer(text)}
    found = []
    for line, text in sorted(runs):
        drop = DROP.match(text)
        if not WRITES.search(text) or TEMP.search(text) or (drop and drop.group(2).lower() in temps):
            continue
        found.append((line, " ".join(text.split())[:80]))
    return found


def test_the_scan_finds_writes_and_passes_reads():
    source = '''
def f(con, table, rows):
    """Rows go in with INSERT OR IGNORE: a docstring is not a statement."""
    con.execute("SELECT count(*), max(updated_at) FROM runs WHERE status = 'deleted'")
    con.execute("CREATE OR REPLACE TEMP TABLE lb AS SELECT 1")
    con.execute("DROP TABLE lb")
    con.executemany("INSERT OR IGNORE INTO prompts VALUES (?, ?)", rows)
    bulk_insert(con, f"INSERT INTO {table}", rows)
    con.execute("UPDATE generations SET reference = ? " "WHERE generation_id = ?", [1, 2])
    sql = "DELETE FROM judgments WHERE verdict = 'failed'"
    con.execute(sql + " AND judgment_id = ?", [1])
    con.execute("DROP TABLE runs")
    con.execute("SELECT checkpoint FROM generations; CHECKPOINT")
    raise ValueError("delete from the store with DROP TABLE runs")  # a message, not SQL that runs
'''
    assert [line for line, _ in writing_sql(source)] == [7, 8, 9, 11, 12, 13]


def test_no_module_outside_the_store_layer_writes_the_store():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in STORE_LAYER:
                continue
            offenders += [f"{rel}:{line}: {sql}" for line, sql in writing_sql(path.read_text(encoding="utf-8"))]
    assert not offenders, "SQL that writes the store outside evalharness/store.py:\n" + "\n".join(offenders)


# ---------------------------------------------------------------------------------------------- typed rows

T = datetime(2024, 5, 1, 12, 0, 0)
ROWS = {
    PromptRecord: PromptRecord("p1", "set", "7", '[{"content": "hi", "role": "user"}]', "ref", '{"category": "x"}'),
    GenerationRecord: GenerationRecord("g1", "ck", "run:10", "/ck", "p1", 1, 0, '{"temperature": 0.7}', 0.7, "hf",
                                       "hi", [1, 2], "hello", [3, 4, 5], 3, "stop", False, -1.5, [-0.5, -0.5, -0.5],
                                       None, None, T),
    JudgmentRecord: JudgmentRecord("j1", "c1", "oracle", "1", "", "p1", 1, 0, "pair", "a", "b", True, "g1", "g2",
                                   "first", 0.75, "raw", 0.01, 10, 2, 0.001, None, T),
    ScoreRecord: ScoreRecord("s1", "oracle", "1", "g1", "p1", 0.25, T),
    RatingRecord: RatingRecord("r1", "c1", "llm:gpt-4", "1", "fastchat:mt-bench@abc", "p1", 2, 0, "ck", "g1", 7.0,
                               "rated", "Rating: [[7]]", 0.5, 30, 5, 0.002, None, T),
    MetricRecord: MetricRecord("m1", "ck", "run:10", "hh@abc", "perplexity", 3.5, 100, 0.1, 3.3, 3.7,
                               '{"seed": 0}', "0.1.0", T),
    DiagnosticRecord: DiagnosticRecord("d1", "gradient", "ck", "hh@abc", "norm", 1.25, '{"x": [1, 2]}',
                                       '{"seed": 0}', "0.1.0", T),
    ExperimentRecord: ExperimentRecord("e1", "exp", "exp.toml", '{"runs": []}', '{"dpo": "r1"}', "0.1.0", "running",
                                       T, T),
    RunAliasRecord: RunAliasRecord("best", "r1", T),
    ClaimRecord: ClaimRecord("c1", "e1", '{"judge": "oracle"}', 0, "dpo beats sft", '{"a": "dpo"}', "reproduced",
                             0.25, 0.1, 0.4, 0.001, 0.002, '{"note": ""}', "0.1.0", T),
}


def test_every_table_but_the_training_ones_has_a_record_with_its_columns(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    with store.connect() as con:
        for record in RECORDS:
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [record.TABLE]).fetchall()]
            assert sorted(record._fields) == sorted(columns), record.__name__
    assert set(ROWS) == set(RECORDS)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.TABLE)
def test_insert_statements_name_every_column_in_the_records_order(record):
    statement = insert_statement(record)
    assert statement == f"INSERT OR IGNORE INTO {record.TABLE} ({', '.join(record._fields)})"


def test_each_insert_method_sends_a_statement_that_names_its_columns(tmp_path, monkeypatch):
    store = Store(str(tmp_path / "s.duckdb"))
    sent = []
    real = store_module.bulk_insert

    def spy(con, statement, rows):
        sent.append(statement)
        return real(con, statement, rows)

    monkeypatch.setattr(store_module, "bulk_insert", spy)
    calls = {PromptRecord: store.insert_prompts, GenerationRecord: store.insert_generations,
             JudgmentRecord: store.insert_judgments, ScoreRecord: store.insert_scores,
             RatingRecord: store.insert_ratings,
             MetricRecord: store.insert_metrics, DiagnosticRecord: store.insert_diagnostics,
             ExperimentRecord: lambda rows: store.upsert_experiment(rows[0]),
             ClaimRecord: lambda rows: store.replace_claims("e1", '{"judge": "oracle"}', rows)}
    for record, insert in calls.items():
        sent.clear()
        insert([ROWS[record]])
        assert sent == [insert_statement(record)], record.__name__
    store.add_metrics("r", [(1, "loss", 0.5)])
    store.put_reference_logps("m", [("k", -1.0, 2)])
    assert sent[-2:] == ["INSERT OR REPLACE INTO train_metrics (run_id, step, name, value)",
                         "INSERT OR IGNORE INTO reference_logps (key, model, logp, n_tokens)"]


def test_typed_rows_round_trip(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    assert store.get_prompts(["p1"]) == {} and not (tmp_path / "s.duckdb").exists()  # a read makes no store
    assert store.insert_prompts([ROWS[PromptRecord]]) == 1
    assert store.insert_generations([ROWS[GenerationRecord]]) == 1
    assert store.insert_judgments([ROWS[JudgmentRecord]]) == 1
    assert store.insert_scores([ROWS[ScoreRecord]]) == 1
    assert store.insert_metrics([ROWS[MetricRecord]]) == 1
    assert store.insert_diagnostics([ROWS[DiagnosticRecord]]) == 1
    store.upsert_experiment(ROWS[ExperimentRecord])
    assert store.get_prompts(["p1", "nope"]) == {"p1": ROWS[PromptRecord]}
    assert store.get_generations(["g1"]) == {"g1": ROWS[GenerationRecord]}
    assert store.get_judgments(["j1"]) == {"j1": ROWS[JudgmentRecord]}
    assert store.get_scores(["s1", "nope"]) == {"s1": 0.25}
    assert store.get_metrics(["m1"]) == {"m1": ROWS[MetricRecord]}
    assert store.get_diagnostics("gradient", "ck", "hh@abc") == [ROWS[DiagnosticRecord]]
    assert store.get_diagnostics("gradient", "ck", "other") == []
    experiment = store.get_experiment("e1")
    assert experiment._replace(updated_at=T) == ROWS[ExperimentRecord]
    assert store.stored_ids(GenerationRecord, ["g1", "g2"]) == {"g1"}
    # A key the table holds stays as it was; the count says what was added.
    assert store.insert_scores([ROWS[ScoreRecord]._replace(score=9.0)]) == 0
    assert store.get_scores(["s1"]) == {"s1": 0.25}
    assert store.insert_rows([ROWS[PromptRecord]], [ROWS[ScoreRecord]._replace(score_id="s2", created_at=None)]) == {
        "prompts": 0, "scores": 1}
    assert store.get_rows(ScoreRecord, ["s2"])["s2"].created_at is not None  # stamped on insert


def test_updates_are_named_store_methods(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    gen = ROWS[GenerationRecord]
    store.insert_generations([gen, gen._replace(generation_id="g2")])
    store.set_reference_logps([("g2", "model:ref", -2.5)])
    got = store.get_generations(["g1", "g2"])
    assert (got["g1"].reference, got["g1"].reference_logp) == (None, None)
    assert (got["g2"].reference, got["g2"].reference_logp) == ("model:ref", -2.5)
    assert got["g2"]._replace(reference=None, reference_logp=None, generation_id="g1") == gen

    failed = ROWS[JudgmentRecord]._replace(judgment_id="j2", verdict="failed", error="timeout")
    store.insert_judgments([ROWS[JudgmentRecord], failed])
    retried = [ROWS[JudgmentRecord]._replace(verdict="second"), failed._replace(verdict="tie", error=None)]
    # Only the failed row is replaced: a stored verdict keeps its tokens and cost.
    assert store.insert_judgments(retried, replace_failed=["j1", "j2"]) == 1
    got = store.get_judgments(["j1", "j2"])
    assert (got["j1"].verdict, got["j2"].verdict, got["j2"].error) == ("first", "tie", None)

    exp = ROWS[ExperimentRecord]
    store.upsert_experiment(exp)
    store.upsert_experiment(exp._replace(config='{"changed": true}', runs='{"dpo": "r2"}', status="finished"))
    got = store.get_experiment("e1")
    assert (got.config, got.runs, got.status, got.created_at) == (exp.config, '{"dpo": "r2"}', "finished", T)
    assert got.updated_at > T


def test_rows_that_are_not_records_are_refused(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    with pytest.raises(TypeError, match="records of one table"):
        store.insert_scores([tuple(ROWS[ScoreRecord])])
    with pytest.raises(TypeError, match="records of one table"):
        store.insert_rows([ROWS[ScoreRecord], ROWS[PromptRecord]])


def test_claim_verdicts_are_replaced_per_experiment_and_evaluation(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    first = ROWS[ClaimRecord]
    other = first._replace(claim_id="c2", evaluation='{"judge": "rm"}', verdict="inconclusive")
    store.replace_claims("e1", first.evaluation, [first])
    store.replace_claims("e1", other.evaluation, [other])
    assert sorted(r.claim_id for r in store.get_claims(["e1"])) == ["c1", "c2"]
    # re-evaluated on the oracle board: its old verdict goes, the reward model's stays
    again = first._replace(claim_id="c3", verdict="contradicted", effect=-0.2)
    store.replace_claims("e1", first.evaluation, [again])
    got = {r.claim_id: r for r in store.get_claims(["e1", "nope"])}
    assert set(got) == {"c2", "c3"} and got["c3"] == again and store.get_claims(["nope"]) == []

import duckdb
import pytest

from evalharness.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError, migrate


def test_migrations_run_once_in_order(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    with store.connect() as con:
        versions = [v for (v,) in con.execute("SELECT version FROM _migrations ORDER BY version").fetchall()]
        assert versions == list(range(1, len(MIGRATIONS) + 1))
        assert migrate(con) == SCHEMA_VERSION  # a second pass applies nothing and keeps the rows
        assert con.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_store_from_every_earlier_schema_version_is_migrated_forward(tmp_path, version):
    path = str(tmp_path / "old.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE TABLE _migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
    for v, (name, sql) in enumerate(MIGRATIONS[:version], start=1):  # the store as that version left it
        for statement in filter(None, (s.strip() for s in sql.split(";"))):
            con.execute(statement)
        con.execute("INSERT INTO _migrations VALUES (?, ?, now())", [v, name])
    con.execute("INSERT INTO train_metrics VALUES ('r', 1, 'loss', 0.7)")
    con.close()
    store = Store(path)
    assert store.metrics("r") == [(1, "loss", 0.7)]  # old rows survive
    store.put_reference_logps("m", [("k", -2.0, 3)])
    assert store.get_reference_logps(["k"]) == {"k": (-2.0, 3)}
    with store.connect() as con:
        assert con.execute("SELECT max(version) FROM _migrations").fetchone()[0] == SCHEMA_VERSION
        assert con.execute("SELECT count(*) FROM generations").fetchone()[0] == 0


def test_store_from_a_newer_version_is_refused(tmp_path):
    path = str(tmp_path / "new.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE TABLE _migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
    con.execute(f"INSERT INTO _migrations VALUES ({SCHEMA_VERSION + 1}, 'future', now())")
    con.close()
    with pytest.raises(StoreError, match="newer than this evalharness"):
        Store(path).runs()


def test_metrics_rewrite_instead_of_duplicating(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    store.add_metrics("run", [(1, "loss", 0.9), (2, "loss", 0.8)])
    store.add_metrics("run", [(2, "loss", 0.75), (3, "loss", 0.7)])  # a resumed run re-does step 2
    assert store.metrics("run") == [(1, "loss", 0.9), (2, "loss", 0.75), (3, "loss", 0.7)]


def test_reference_cache_ignores_repeats(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    store.put_reference_logps("m", [("a", -1.0, 2), ("b", -2.0, 4)])
    store.put_reference_logps("m", [("a", -1.0, 2)])
    assert store.get_reference_logps(["a", "b", "c"]) == {"a": (-1.0, 2), "b": (-2.0, 4)}


def test_run_upsert_and_lookup_by_prefix_and_name(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    run = dict(run_id="abcdef0123", name="dpo-test", loss="dpo", params={"beta": 0.1}, base_model="tiny-llama",
               init_from=None, data={"name": "hh-rlhf"}, config={}, code_version="0", status="running",
               out_dir="x", final_step=None)
    store.upsert_run(run)
    store.upsert_run(run)
    assert len(store.runs()) == 1
    store.set_run_status("abcdef0123", "finished", final_step=5)
    assert store.get_run("abcdef")["final_step"] == 5
    assert store.get_run("dpo-test")["status"] == "finished"
    assert store.get_run("nope") is None


def test_read_only_directory_gives_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os

        if os.access(ro, os.W_OK):  # running as root: permissions don't bind, nothing to test
            pytest.skip("permissions are not enforced for this user")
        with pytest.raises(StoreError, match="not writable"):
            Store(str(ro / "s.duckdb")).add_metrics("r", [(1, "loss", 1.0)])
    finally:
        ro.chmod(0o700)

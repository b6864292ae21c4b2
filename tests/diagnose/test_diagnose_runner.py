"""The one diagnose runner: each unit computed and stored once, read back on a re-run, and named once in the figure."""

from pathlib import Path

import pytest

from evalharness.diagnose import common, gradients, information
from evalharness.diagnose.common import DiagnoseConfig, Row, Unit
from evalharness.diagnose.runner import Job, Plan, execute
from evalharness.store import Store


def _plan(calls, seen):
    def compute(name):
        calls.append(name)
        return [Row("value", float(len(name)), {"n": 1})]

    units = [Unit("test-kind", ckpt, "data:abc", {"k": 1}) for ckpt in ("c1", "c2")]
    jobs = (Job(u, lambda u=u: compute(u.checkpoint), (u.checkpoint,)) for u in units)

    def figure(results, out, parts):
        seen["results"], seen["parts"] = results, parts
        return Path(out) / "fig.png"

    table = lambda results: " ".join(f"{label}={rows['value'].value:g}" for label, rows in results)  # noqa: E731
    return Plan("test", jobs, table, figure, lambda results: [f"{len(results)} results"]), units


def test_each_unit_is_computed_once_then_read_back(tmp_path):
    store = Store(str(tmp_path / "s.duckdb"))
    calls, seen = [], {}
    plan, units = _plan(calls, seen)
    report = execute(plan, store, str(tmp_path))
    assert calls == ["c1", "c2"] and (report.computed, report.cached) == (2, 0)
    assert report.table == "c1=2 c2=2" and report.notes == ["2 results"]
    assert seen["parts"] == [u.row_id("") for u in units]
    plan, _ = _plan(calls, seen)
    again = execute(plan, store, str(tmp_path))
    assert calls == ["c1", "c2"] and (again.computed, again.cached) == (0, 2) and again.table == report.table
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM diagnostics").fetchone()[0] == 2


@pytest.mark.parametrize("module, cfg", [
    (information, DiagnoseConfig(checkpoints=["tiny-llama"], limit=2, settings={"random_init": False})),
    (gradients, DiagnoseConfig(checkpoints=["tiny-llama"], limit=1, losses=["dpo"])),
])
def test_a_diagnostic_names_each_unit_once_in_its_figure(module, cfg, tmp_path, monkeypatch):
    stored = []
    real_store_unit = common.store_unit
    monkeypatch.setattr(common, "store_unit", lambda store, unit, rows: (stored.append(unit),
                                                                         real_store_unit(store, unit, rows)))
    seen = {}
    monkeypatch.setattr(module, "render_figure", lambda results, out, parts: seen.setdefault("parts", parts))
    cfg.out = str(tmp_path)
    report = module.run(cfg, Store(str(tmp_path / "s.duckdb")))
    assert report.computed == 1 and len(stored) == 1
    assert seen["parts"] == [stored[0].row_id("")]  # one unit, named once (it used to be appended twice)

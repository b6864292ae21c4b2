"""The seed examples (examples/seed*.toml) and the runner features they rely on.

Every example binds at its default scale (`--dry-run`: the controlled task, seed replicates, claims) and at every
scale it defines; each runs end to end at its smallest size (`--scale smoke`) on tiny random models with its
full-scale judges added: an LLM judge answered by the loopback server, PairRM as a random checkpoint. The runner features: `[scales.*]` tables and `unset`, dotted `--set`
paths with TOML values, several baselines, `[[pairs]]` of reward-scored samples, per-judge limits, ``limit = "all"``.
"""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib
from typer.testing import CliRunner

from evalharness.cli import app
from evalharness.config import ConfigError
from evalharness.experiment import Runner, load_experiment, nest_overrides, parse_experiment, parse_value
from evalharness.store import Store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("seed*.toml"))
SHARED = "../shared/data"  # how the examples name the third-party data: relative to the repository root
HH = ROOT / SHARED / "hh-rlhf" / "harmless-base-test.jsonl.gz"
# one answer every built-in template's parser reads: [[A]] (mt-bench), "Preferred: A", "More helpful: A", and a last
# line naming Response 1 (human-preference)
VERDICT = "Both replies are on topic.\nMore helpful: A\nPreferred: A\n[[A]]\nResponse 1"

runner = CliRunner()


def _raw(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def _needs_shared_data(path: Path) -> None:
    if SHARED in path.read_text() and not (ROOT / SHARED).is_dir():
        pytest.skip(f"{path.name} reads third-party data from {SHARED}, which is absent here")


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples' data paths are relative to the repository root


def _ids(paths):
    return [p.stem for p in paths]


# ------------------------------------------------------------------------------------------------ the examples


def test_each_seed_paper_has_an_example_with_smollm2_full_and_smoke_scales():
    assert {p.name[:7] for p in EXAMPLES} == {"seed000", "seed002", "seed003", "seed004"}
    for path in EXAMPLES:
        scales = _raw(path).get("scales", {})
        assert {"smollm2", "full", "smoke"} <= set(scales), path.name


@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_dry_run_binds_at_the_default_scale(path, at_root, tmp_path):
    _needs_shared_data(path)
    result = runner.invoke(app, ["run", str(path), "--dry-run", "--store", str(tmp_path / "s.duckdb")],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    exp = load_experiment(path)
    planned = re.findall(r"^  train +(\S+) +to do", result.output, re.M)
    assert planned and sorted(planned) == sorted(r.name for r in exp.runs)
    assert f"experiment {exp.name} " in result.output and "judge" in result.output
    assert not (tmp_path / "runs").exists()  # a plan trains nothing
    # the controlled task: one SFT run shared with the quickstart (the same run id, trained once per store), every
    # other policy from it over three training seeds, judged by the oracle against it, and the paper's claims
    quickstart = load_experiment(ROOT / "evalharness/experiments/quickstart.toml")
    runner_ = Runner(exp, Store(str(tmp_path / "s.duckdb")))
    runner_.plan()
    theirs = Runner(quickstart, Store(str(tmp_path / "s.duckdb")))
    theirs.plan()
    assert all(r.config.model == "task-llama" for r in exp.runs)
    assert runner_.run_ids["sft"] == theirs.run_ids["sft"]
    policies = [r for r in exp.runs if not r.reward_model and r.name != "sft"]
    assert policies and all(r.config.init_from and r.group and r.config.seed in (0, 1, 2) for r in policies)
    assert {r.group for r in policies if r.config.seed == 2} == {r.group for r in policies}
    assert exp.judge.baselines == ["sft"] and exp.judge.entries[0].spec == "oracle" and exp.claims


@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_smoke_scale_is_the_smallest_size(path, at_root):
    _needs_shared_data(path)
    exp = load_experiment(path, scale="smoke")
    assert exp.name == _raw(path)["name"] + "-smoke"
    assert all(r.config.model == "tiny-llama" and r.config.max_steps <= 2 for r in exp.runs)
    assert 2 <= exp.generate.limit <= 3 and exp.generate.n == 1 and exp.judge.samples == 1
    assert all(p.limit <= 4 for p in exp.pairs)


@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_full_scale_binds_with_its_downloaded_data(path, at_root):
    """The paper's settings bind; where they read files the comments tell how to fetch, only those may be missing."""
    _needs_shared_data(path)
    raw = _raw(path)
    try:
        exp = load_experiment(path, scale="full")
    except ConfigError as e:
        missing = re.search(r"data path (\S+): no such file", str(e))
        assert missing, e
        assert not missing.group(1).startswith(SHARED) and missing.group(1) in path.read_text(), e
        if not HH.exists():
            pytest.skip("the full scale reads downloaded files; binding it with a stand-in needs the HH-RLHF file")
        exp = load_experiment(path, {"defaults.data.path": str(HH)}, scale="full")
    assert exp.name == raw["name"] + "-full"
    assert all(r.config.model != "smollm2-135m" and r.config.max_steps >= 400 for r in exp.runs)
    specs = [e.spec for e in exp.judge.entries]
    expected = {"seed000": "template=human-preference", "seed002": "template=mt-bench", "seed003": "pairrm",
                "seed004-exo-hh": "template=dialogue", "seed004-exo-frontier": "oracle"}
    want = next(v for k, v in expected.items() if path.stem.startswith(k))
    assert any(want in s for s in specs), specs  # the paper's judge (GPT-4, PairRM, the gold reward)


def test_the_papers_grids_at_full_scale(at_root):
    """Spot checks against the seeds: β grids (seed 000 §6, seed 003 B.2), λ grid (seed 002 §4.1), K (seed 004 §4.1)."""
    if not HH.exists():
        pytest.skip("needs the HH-RLHF file")
    stand_in = {"defaults.data.path": str(HH)}
    s000 = load_experiment(ROOT / "examples/seed000-exmate.toml", scale="full")
    assert sorted(r.config.params["beta"] for r in s000.runs if r.name.startswith("dpo-")) == [0.05, 0.1, 0.5, 1, 5]
    assert s000.judge.baselines == ["dpo-beta0.1", "sft-dpo-beta0.1"]  # Table 1's opponents exist at full scale
    s002 = load_experiment(ROOT / "examples/seed002-sr-dpo.toml", scale="full")
    assert sorted(r.config.params["lam"] for r in s002.runs if r.name.startswith("sr-dpo")) == [0.1, 0.3, 0.5, 1.0]
    assert s002.generate.limit is None  # all 80 questions
    s003 = load_experiment(ROOT / "examples/seed003-e-dpo.toml", stand_in, scale="full")
    tr = [r.config.params for r in s003.runs if r.name.startswith("tr-dpo-hard")]
    assert sorted(p["beta"] for p in tr) == [0.01, 0.05, 0.1, 0.5] and {p["tau"] for p in tr} == {128}
    assert s003.entry("sft").config.lr == 2e-5 and s003.entry("dpo-beta0.1").config.lr == 1e-6
    s004 = load_experiment(ROOT / "examples/seed004-exo-frontier.toml", scale="full")
    assert sorted(p.n for p in s004.pairs) == [4, 8] and s004.generate.n == 4


@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_the_smollm2_scale_is_the_real_small_model_without_replicates(path, at_root):
    _needs_shared_data(path)
    for extra in sorted(set(_raw(path)["scales"]) - {"full", "smoke", "smollm2"}):  # seed 002's vicuna-bench
        exp = load_experiment(path, scale=["smollm2", extra])
        assert exp.name == f"{_raw(path)['name']}-smollm2-{extra}"
    exp = load_experiment(path, scale="smollm2")
    assert exp.name == f"{_raw(path)['name']}-smollm2"
    assert all(r.config.model == "smollm2-135m" and r.group is None for r in exp.runs)
    assert not exp.claims  # a few steps of a 135M model: the pipeline, not verdicts


@pytest.fixture(scope="module")
def smoke_env(tmp_path_factory):
    """One store for every example (runs and samples they share are made once), a loopback endpoint, a random PairRM."""
    import torch

    from judges.pairrm_testing import build_random_pairrm
    from tests.judges.loopback import Loopback, completion, fixed

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core machine: several threads only wait on each other
    pairrm = build_random_pairrm(tmp_path_factory.mktemp("pairrm") / "random")
    with Loopback(behaviour=fixed(completion(VERDICT))) as server:
        yield SimpleNamespace(store=tmp_path_factory.mktemp("smoke") / "s.duckdb", pairrm=pairrm, server=server)
    torch.set_num_threads(threads)


def _ci_judges(path: Path, pairrm: Path) -> list[str]:
    """The smoke scale's judges plus the full scale's (GPT-4 → the loopback server, PairRM → a random checkpoint)."""
    raw = _raw(path)
    smoke = raw["scales"]["smoke"].get("judge", {}).get("judges", raw["judge"]["judges"])
    full = raw["scales"]["full"].get("judge", {}).get("judges", [])
    specs: list[str] = []
    for j in [*smoke, *full]:
        spec = j if isinstance(j, str) else j["spec"]
        spec = f"pairrm:path={pairrm}" if spec.split(":")[0] == "pairrm" else spec
        specs += [spec] if spec not in specs else []
    return specs


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_example_runs_end_to_end_at_its_smallest_size(path, smoke_env, at_root, monkeypatch):
    _needs_shared_data(path)
    monkeypatch.setenv("OPENAI_BASE_URL", smoke_env.server.url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    specs = _ci_judges(path, smoke_env.pairrm)
    overrides = ["--set", f"judge.judges={json.dumps(specs)}"]
    result = runner.invoke(app, ["run", str(path), "--scale", "smoke", *overrides, "--store", str(smoke_env.store),
                                 "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    exp = load_experiment(path, {"judge.judges": specs}, scale="smoke")
    store = Store(str(smoke_env.store))
    plan = Runner(exp, store).plan()
    assert [s.name for s in plan if s.kind in ("train", "pairs") and s.todo] == []  # every run finished, pairs built
    g, j = exp.generate, exp.judge
    run_ids = Runner(exp, store)
    run_ids.plan()
    policies = {r.name: run_ids.run_ids[r.name] for r in exp.runs if not r.reward_model}
    with store.connect() as con:
        for name, rid in policies.items():
            steps = con.execute("SELECT count(*) FROM checkpoints WHERE run_id = ?", [rid]).fetchone()[0]
            n = con.execute("SELECT count(*) FROM generations x JOIN checkpoints c ON x.checkpoint = c.checkpoint_id "
                            "JOIN prompts p USING (prompt_id) WHERE c.run_id = ? AND p.prompt_set = ? AND x.turn = 1",
                            [rid, g.prompts]).fetchone()[0]
            sampled = steps if g.every_checkpoint else 1
            assert n >= g.limit * g.n * sampled, (name, n)
        keys = [r[0] for r in con.execute(
            f"SELECT checkpoint_id FROM checkpoints WHERE run_id IN ({', '.join('?' * len(policies))})",
            list(policies.values())).fetchall()]
        # the store is shared with the other examples: count this run's judges (named in its output) on its models
        ids = sorted(set(re.findall(r"^judge (\S+): \d+ pairs", result.output, re.M)))
        judged = con.execute(
            f"SELECT judge, count(*), count(*) FILTER (WHERE verdict IN ('unparsed', 'failed')) FROM judgments "
            f"WHERE model_a IN ({', '.join('?' * len(keys))}) AND judge IN ({', '.join('?' * len(ids))}) "
            f"GROUP BY judge ORDER BY judge", keys + ids).fetchall()
    assert [row[0] for row in judged] == ids and len(ids) == len(specs), (ids, specs)  # every judge judged them
    assert all(count > 0 and bad == 0 for _, count, bad in judged), judged
    if any(s.startswith("llm:") for s in specs):
        assert any(judge.startswith("llm:") for judge in ids)
        assert smoke_env.server.completions, "the LLM judge never called the endpoint"
    judge_lines = [line for line in result.output.splitlines() if line.startswith("judge ")]
    assert len(judge_lines) == len(specs) * len(j.baselines), judge_lines
    assert result.output.count("Leaderboard: judge") == len(j.baselines)
    assert result.output.count("(baseline)") == len(j.baselines)
    if g.every_checkpoint:  # the intermediate checkpoints are sampled, judged and ranked too (a frontier per run)
        board = result.output.split("Leaderboard: judge", 1)[1]
        assert all(re.search(rf"\b{re.escape(name)}:1\b", board) for name in policies), board
    for p in exp.pairs:  # reward-scored samples: K completions and K finite rewards a line
        rows = [json.loads(line) for line in (smoke_env.store.parent / "experiments" / exp.name
                                               / f"{p.name}.jsonl").read_text().splitlines()]
        assert rows and all(len(r["completions"]) == len(r["rewards"]) == p.n for r in rows)


# ------------------------------------------------------------------------------------------- runner features

TINY = {
    "name": "t",
    "defaults": {"model": "tiny-llama", "max_steps": 2, "batch_size": 2, "max_length": 64, "max_prompt_length": 32,
                 "params": {}, "data": {"name": "synthetic", "limit": 16}},
    "runs": [{"name": "sft", "loss": "sft"},
             {"name": "dpo", "loss": "dpo", "init_from": "sft", "params": {"beta": 0.1}, "grid": {"beta": [0.1]}},
             {"name": "ipo", "loss": "ipo", "init_from": "sft"},
             {"name": "rm", "loss": "bradley-terry"},
             {"name": "exo-rw", "loss": "exo-rw", "init_from": "sft", "data": "@k4"}],
    "pairs": [{"name": "k4", "policy": "sft", "kind": "scored", "n": 4, "judge": "reward-model:path=@rm"}],
    "generate": {"limit": 3, "n": 1},
    "judge": {"judges": ["oracle"], "baseline": "sft"},
    "scales": {"small": {"unset": ["defaults.data.limit", "runs.ipo"],
                         "defaults": {"max_steps": 1}, "runs": {"dpo": {"grid": {"beta": [0.5, 1.0]}}},
                         "generate": {"limit": "all"}}},
}


def test_doctests_of_the_runner_pass():
    import importlib
    import pkgutil

    import evalharness.experiment as package

    modules = [importlib.import_module(f"{package.__name__}.{m.name}") for m in pkgutil.iter_modules(package.__path__)]
    results = [doctest.testmod(m) for m in modules]
    assert sum(r.failed for r in results) == 0 and sum(r.attempted for r in results) > 0


def test_set_keys_address_sections_entries_and_parameters():
    flat = {"max_steps": 3, "data.limit": 8, "runs.dpo.grid.beta": [0.5], "runs.x.params.dpo.beta": 0.2,
            "judge.judges": ["oracle"], "pairs.k4.n": 8}
    assert nest_overrides(flat) == {
        "defaults": {"max_steps": 3, "data": {"limit": 8}},
        "runs": {"dpo": {"grid": {"beta": [0.5]}}, "x": {"params": {"dpo.beta": 0.2}}},
        "judge": {"judges": ["oracle"]}, "pairs": {"k4": {"n": 8}}}
    # values are TOML; anything that is not TOML stays text
    assert [parse_value(v) for v in ("2", "0.5", "true", '["a=1,b", "c"]', "{beta = [0.1]}", "smollm2-135m")] == [
        2, 0.5, True, ["a=1,b", "c"], {"beta": [0.1]}, "smollm2-135m"]
    with pytest.raises(ConfigError, match="runs.NAME.KEY"):
        nest_overrides({"runs.dpo": 1})


def test_a_scale_merges_by_entry_name_unsets_and_renames():
    exp = parse_experiment(TINY, "t.toml", scale="small")
    assert exp.name == "t-small"
    assert [r.name for r in exp.runs] == ["sft", "dpo-beta0.5", "dpo-beta1.0", "rm", "exo-rw"]  # ipo dropped
    assert exp.entry("dpo-beta0.5").config.init_from == "sft"  # the entry's other fields kept
    assert all(r.config.max_steps == 1 and r.config.data.limit is None for r in exp.runs if not r.config.init_from)
    assert exp.generate.limit is None  # "all"
    assert TINY["runs"][2]["name"] == "ipo" and TINY["defaults"]["data"]["limit"] == 16  # the file is not changed
    # --set applies after the scale, and keeps the name
    exp = parse_experiment(TINY, "t.toml", {"runs.dpo.grid.beta": [2.0], "max_steps": 2}, scale="small")
    assert [r.name for r in exp.runs if r.name.startswith("dpo")] == ["dpo-beta2.0"]
    assert exp.entry("sft").config.max_steps == 2 and exp.name == "t-small"


@pytest.mark.parametrize("scale, overrides, message", [
    ("big", None, r"no scale 'big' \(its \[scales.\*\] tables: small\)"),
    (None, {"runs.dop.lr": 1e-3}, r"no entry named 'dop' \(entries: sft, dpo, ipo, rm, exo-rw\)"),
    (None, {"generate.limt": 2}, r"\[generate\]: unknown key 'limt'; did you mean 'limit'"),
    (None, {"generate.limit": 0}, r'limit must be a positive integer or "all"'),
    (None, {"judge.baseline": ["dpo-beta0.1", "dpo-beta0.1"]}, "list of distinct names"),
    (None, {"judge.baseline": ["sft", "nobody"]}, "baseline 'nobody' is not a run"),
    (None, {"judge.judges": [{"spec": "oracle", "limt": 2}]}, r"judges\[0\]: unknown key 'limt'"),
    (None, {"judge.judges": [3]}, r"judges\[0\]: expected a spec string or a table"),
    (None, {"pairs.k4.judge": "reward-model:path=@sft"}, r"\[\[pairs\]\] k4: .* names @sft, which is not a reward"),
    (None, {"pairs.k4.kind": "triples"}, "kind must be one of pairs, scored"),
])
def test_bad_scales_and_overrides_are_one_line_errors(scale, overrides, message):
    with pytest.raises(ConfigError, match=message):
        parse_experiment(TINY, "t.toml", overrides, scale=scale)


def test_unset_of_a_missing_key_is_an_error():
    raw = {**TINY, "scales": {"s": {"unset": ["generate.temperature"]}}}
    with pytest.raises(ConfigError, match="'generate.temperature' is not set in the file"):
        parse_experiment(raw, "t.toml", scale="s")


def test_several_baselines_judge_each_pair_of_models_once(tmp_path):
    exp = parse_experiment(TINY, "t.toml", {"judge.baseline": ["dpo-beta0.1", "ipo", "reference"],
                                            "judge.judges": ["oracle", {"spec": "reward-model:path=@rm", "limit": 2}],
                                            "generate.base": False})
    assert [e.limit for e in exp.judge.entries] == [None, 2]
    steps = [s.detail for s in Runner(exp, Store(str(tmp_path / "s.duckdb"))).plan() if s.kind == "judge"]
    # policies: sft, dpo-beta0.1, ipo, exo-rw. vs dpo: the other 3; vs ipo: sft and exo-rw (ipo-vs-dpo was judged in
    # the first round); vs the reference answers: all 4
    rounds = ["3 models vs dpo-beta0.1", "2 models vs ipo", "4 models vs reference"]
    assert [d.split(" x ")[0] for d in steps] == rounds * 2
    assert [d.split(" x ")[1] for d in steps] == ["3 prompts"] * 3 + ["2 prompts"] * 3


def test_scored_pairs_train_through_the_scored_samples_preset_after_the_reward_model(tmp_path):
    from evalharness.experiment import order

    exp = parse_experiment(TINY, "t.toml")
    names = order(exp)
    assert names.index("rm") < names.index("k4") < names.index("exo-rw")  # the judge's @rm is trained first
    run = Runner(exp, Store(str(tmp_path / "s.duckdb")))
    bound = run.bound(exp.entry("exo-rw"))
    assert bound.data.name == "scored-samples" and bound.data.path == run.pair_files["k4"]
    plan = {s.name: s.detail for s in run.plan()}
    assert plan["k4"] == "4 samples x 64 prompts of 'synthetic' from 'sft', scored by reward-model:path=@rm"


def test_cli_scale_and_set(at_root, tmp_path):
    path = ROOT / "examples" / "seed004-exo-frontier.toml"
    store = str(tmp_path / "s.duckdb")
    result = runner.invoke(app, ["run", str(path), "--dry-run", "--scale", "smoke", "--set", "generate.limit=3",
                                 "--set", "runs.dpo-pref.params.beta=0.25", "--store", store], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "experiment seed004-exo-frontier-smoke " in result.output
    assert "dpo beta=0.25 2 steps x 2 from sft" in result.output and "x 3 prompts x 1 samples" in result.output
    result = runner.invoke(app, ["run", str(path), "--dry-run", "--scale", "tiny", "--store", store])
    assert result.exit_code == 2 and "no scale 'tiny' (its [scales.*] tables: full, smoke, smollm2)" in result.output

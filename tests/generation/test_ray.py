"""Generation engines as Ray actors (``--ray-address``): the same samples as one engine, the parent the only writer.

The actor test starts a local single-node Ray and is skipped where Ray is not installed (CI); the refusal without Ray
runs everywhere, with Ray hidden when it is installed.
"""

import os
import sys

import pytest
from typer.testing import CliRunner

from evalharness.cli import app
from evalharness.config import ConfigError
from evalharness.generate import GenerateConfig, generate
from evalharness.generation.base import Sampling
from evalharness.store import Store

SAMPLING = Sampling(temperature=0.9, top_p=1.0, max_new_tokens=10, seed=5)


def _texts(store):
    with store.connect() as con:
        return con.execute("SELECT generation_id, sample_index, text, backend FROM generations ORDER BY 1").fetchall()


@pytest.mark.ray
def test_ray_actors_store_the_same_texts_as_one_engine(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from evalharness.generation import ray_parallel

    started = []
    real_init = ray_parallel.RayGenerator.__init__

    def spy(self, *a, **kw):
        real_init(self, *a, **kw)
        started.append(sorted(ray.get([h.__ray_call__.remote(lambda engine: os.getpid()) for h in self._actors])))

    monkeypatch.setattr(ray_parallel.RayGenerator, "__init__", spy)
    cfg = dict(checkpoints=["tiny-llama"], prompts="synthetic", limit=5, n=2, sampling=SAMPLING, backend="hf",
               batch_size=3, chunk=6, score_reference=False)
    one, two = Store(str(tmp_path / "one.duckdb")), Store(str(tmp_path / "two.duckdb"))
    [r1] = generate(GenerateConfig(**cfg), one, progress=False)
    [r2] = generate(GenerateConfig(**cfg, data_parallel=2, ray_address="local"), two, progress=False)
    assert len(started) == 1 and len(set(started[0])) == 2 and os.getpid() not in started[0]  # two real actors
    assert not ray.is_initialized()  # the session the generator started is shut down with it
    assert r1.generated == r2.generated == 10
    assert _texts(two) == _texts(one)
    assert len({t for _, _, t, _ in _texts(one)}) > 1  # real samples, not one repeated string


def test_ray_address_without_ray_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed, also where it is
    store = tmp_path / "s.duckdb"
    result = CliRunner().invoke(app, ["generate", "-c", "tiny-llama", "--limit", "2", "--no-progress", "--store",
                                      str(store), "--data-parallel", "2", "--ray-address", "auto"],
                                catch_exceptions=False)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "install the ray extra: pip install 'evalharness[ray]'" in err
    assert not store.exists()


def test_an_unreachable_cluster_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    import importlib.machinery
    import types

    def init(**kwargs):
        raise ConnectionError("Could not find any running Ray instance.\nSet RAY_ADDRESS.")

    fake = types.ModuleType("ray")  # a stand-in, so this runs with and without Ray installed
    fake.__spec__ = importlib.machinery.ModuleSpec("ray", None)
    fake.is_initialized, fake.init = lambda: False, init
    monkeypatch.setitem(sys.modules, "ray", fake)
    store = tmp_path / "s.duckdb"
    result = CliRunner().invoke(app, ["generate", "-c", "tiny-llama", "--limit", "2", "--no-progress", "--store",
                                      str(store), "--ray-address", "auto"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err == "error: could not connect to the Ray cluster at auto: Could not find any running Ray instance."
    assert not store.exists()


def test_run_generate_section_takes_ray_address(tmp_path, monkeypatch):
    import evalharness.generate
    from evalharness.experiment import Runner, parse_experiment

    experiment = {"name": "scale", "defaults": {"model": "tiny-llama"}, "runs": [{"name": "dpo", "loss": "dpo"}],
                  "generate": {"data_parallel": 2, "ray_address": "auto"}}
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"install the ray extra"):
        parse_experiment(experiment)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())  # as if installed, also where not
    seen = []
    monkeypatch.setattr(evalharness.generate, "generate", lambda cfg, store, progress: seen.append(cfg) or [])
    runner = Runner(parse_experiment(experiment), Store(str(tmp_path / "s.duckdb")), progress=False)
    runner.run_ids["dpo"] = "run-id"
    runner._generate()
    assert [cfg.ray_address for cfg in seen] == ["auto"]


def test_more_gpus_than_the_cluster_has_is_refused():
    from evalharness.generation.ray_parallel import actor_resources

    assert actor_resources(2, 2, 4) == {"num_gpus": 2, "num_cpus": 1}
    assert actor_resources(2, 1, 0) == {"num_gpus": 0, "num_cpus": 1}
    with pytest.raises(ConfigError, match="needs 4 GPUs; the Ray cluster has 3"):
        actor_resources(2, 2, 3)

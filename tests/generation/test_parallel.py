"""Data-parallel generation and the engine settings passed to vLLM.

Two worker processes store the same samples as one engine (per-request seeds); the parent is the only writer. The
vLLM settings are checked at the ``vllm.LLM`` constructor with a stand-in module, so no vLLM is needed.
"""

import os
import sys
import types

import pytest
from typer.testing import CliRunner

from evalharness.cli import app
from evalharness.generate import GenerateConfig, generate
from evalharness.generation.base import Sampling
from evalharness.store import Store

SAMPLING = Sampling(temperature=0.9, top_p=1.0, max_new_tokens=10, seed=5)


def _texts(store):
    with store.connect() as con:
        return con.execute("SELECT generation_id, sample_index, text, backend FROM generations ORDER BY 1").fetchall()


def test_two_workers_store_the_same_texts_as_one(tmp_path, monkeypatch):
    from evalharness.generation import parallel

    started = []
    real_init = parallel.ParallelGenerator.__init__

    def spy(self, workers, *a, **kw):
        real_init(self, workers, *a, **kw)
        started.append(sorted(p.pid for _, p in self._workers))

    monkeypatch.setattr(parallel.ParallelGenerator, "__init__", spy)
    cfg = dict(checkpoints=["tiny-llama"], prompts="synthetic", limit=5, n=2, sampling=SAMPLING, backend="hf",
               batch_size=3, chunk=6, score_reference=False)
    one, two = Store(str(tmp_path / "one.duckdb")), Store(str(tmp_path / "two.duckdb"))
    [r1] = generate(GenerateConfig(**cfg), one, progress=False)
    [r2] = generate(GenerateConfig(**cfg, data_parallel=2), two, progress=False)
    assert len(started) == 1 and len(started[0]) == 2 and os.getpid() not in started[0]  # two real workers
    assert r1.generated == r2.generated == 10
    assert _texts(two) == _texts(one)
    assert len({t for _, _, t, _ in _texts(one)}) > 1  # real samples, not one repeated string


class _Stop(Exception):
    pass


@pytest.fixture
def fake_vllm(monkeypatch):
    """A ``vllm`` module whose ``LLM`` records its keyword arguments and stops there."""
    from evalharness.generation.vllm import VLLMGenerator

    seen = {}

    def llm(**kwargs):
        seen.update(kwargs)
        raise _Stop

    module = types.ModuleType("vllm")
    module.LLM = llm
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: False)
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    monkeypatch.setattr(VLLMGenerator, "availability", classmethod(lambda cls: (True, "stand-in")))
    return seen


def test_engine_settings_reach_the_vllm_constructor(tmp_path, fake_vllm):
    args = ["generate", "-c", "tiny-llama", "--backend", "vllm", "--limit", "2", "--no-progress", "--store",
            str(tmp_path / "s.duckdb"), "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.5",
            "--dtype", "bf16", "--max-model-len", "512"]
    with pytest.raises(_Stop):
        CliRunner().invoke(app, args, catch_exceptions=False)
    assert fake_vllm["tensor_parallel_size"] == 2
    assert fake_vllm["gpu_memory_utilization"] == 0.5
    assert fake_vllm["dtype"] == "bfloat16" and fake_vllm["max_model_len"] == 512
    assert "kv_cache_memory_bytes" not in fake_vllm  # the fraction sizes the KV cache, not the fixed default


def test_without_engine_settings_vllm_keeps_its_defaults(tmp_path, fake_vllm):
    with pytest.raises(_Stop):
        generate(GenerateConfig(["tiny-llama"], limit=2, backend="vllm"), Store(str(tmp_path / "s.duckdb")))
    assert fake_vllm["dtype"] == "float32" and fake_vllm["max_model_len"] == 2048
    assert fake_vllm["kv_cache_memory_bytes"] == 256 << 20 and "tensor_parallel_size" not in fake_vllm


@pytest.mark.parametrize("flags, message", [
    (["--backend", "hf", "--tensor-parallel-size", "2"], "tensor_parallel_size only apply to the vllm backend"),
    (["--backend", "hf", "--gpu-memory-utilization", "0.5"], "gpu_memory_utilization only apply to the vllm"),
    (["--data-parallel", "0"], "data_parallel must be"),
    (["--gpu-memory-utilization", "1.5"], "gpu_memory_utilization must be in (0, 1]"),
    (["--dtype", "fp8"], "dtype must be one of"),
])
def test_bad_engine_settings_are_one_line_and_write_nothing(tmp_path, flags, message):
    store = tmp_path / "s.duckdb"
    result = CliRunner().invoke(app, ["generate", "-c", "tiny-llama", "--limit", "2", "--no-progress", "--store",
                                      str(store), *flags], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not store.exists()


def test_more_engines_than_gpus_is_refused():
    from evalharness.config import ConfigError
    from evalharness.generation.parallel import device_groups

    assert device_groups(2, 2, 4) == ["0,1", "2,3"]
    with pytest.raises(ConfigError, match="needs 4 GPUs; this machine has 3"):
        device_groups(2, 2, 3)


EXPERIMENT = {"name": "scale", "defaults": {"model": "tiny-llama"}, "runs": [{"name": "dpo", "loss": "dpo"}],
              "generate": {"backend": "vllm", "data_parallel": 2, "dtype": "bfloat16", "tensor_parallel_size": 2,
                           "gpu_memory_utilization": 0.8, "max_model_len": 1024}}


def test_run_generate_section_takes_the_same_engine_settings(tmp_path, monkeypatch):
    import evalharness.generate
    from evalharness.experiment import Runner, parse_experiment

    seen = []
    monkeypatch.setattr(evalharness.generate, "generate", lambda cfg, store, progress: seen.append(cfg) or [])
    runner = Runner(parse_experiment(EXPERIMENT), Store(str(tmp_path / "s.duckdb")), progress=False)
    runner.run_ids["dpo"] = "run-id"
    runner._generate()
    [cfg] = seen
    assert (cfg.data_parallel, cfg.dtype, cfg.tensor_parallel_size, cfg.gpu_memory_utilization,
            cfg.max_model_len) == (2, "bfloat16", 2, 0.8, 1024)


def test_run_generate_section_refuses_bad_engine_settings():
    from evalharness.config import ConfigError
    from evalharness.experiment import parse_experiment

    bad = dict(EXPERIMENT, generate={"data_parallel": 0})
    with pytest.raises(ConfigError, match="data_parallel must be"):
        parse_experiment(bad)

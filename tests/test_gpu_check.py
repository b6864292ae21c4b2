"""scripts/gpu-check.sh where no GPU is: its syntax, its dry-run plan, and one line with exit 2 before anything runs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu-check.sh"
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(out, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_")}
    full.update(PYTHON=sys.executable, **env)
    return subprocess.run(["bash", str(SCRIPT), str(out)], env=full, capture_output=True, text=True, timeout=120)


@needs_bash
def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


@needs_bash
def test_dry_mode_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "check"
    result = _run(out, GPU_CHECK_DRY="1", GPU_CHECK_MODEL="tiny-llama")
    assert result.returncode == 0, result.stderr
    plan = result.stdout
    for part in ("--dtype bfloat16", "--backend vllm", "pairrm:device=cuda", "llm:model=loopback", "leaderboard",
                 "tiny-llama", f"{out}/gpu-check.json"):
        assert part in plan, part
    assert not out.exists()


@needs_bash
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "check"
    result = _run(out)
    assert result.returncode == 2
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "CUDA GPU" in err
    assert result.stdout == "" and not out.exists()


@needs_bash
@pytest.mark.skipif(__import__("importlib").util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_a_gpu_without_vllm_is_one_line_and_exit_2(tmp_path):
    # A GPU is faked for the script's check: torch reports one, and vLLM is still missing.
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text("import torch\ntorch.cuda.is_available = lambda: True\n")
    out = tmp_path / "check"
    result = _run(out, PYTHONPATH=str(fake))
    assert result.returncode == 2
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "needs vLLM" in err
    assert result.stdout == "" and not out.exists()

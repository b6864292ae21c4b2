"""The loop under torchrun (DDP, gloo on CPU): two ranks equal one process with twice the accumulation.

2 ranks x batch 2 x accum 2 and 1 rank x batch 2 x accum 4 consume the same micro-batches in each optimizer step
(global micro-batch index = (step·accum + a)·world + rank), so with the loss averaged over the global batch both
must end with the same weights, and e-DPO's β (updated from statistics gathered over all ranks and micro-batches)
must agree.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from evalharness.store import Store

ARGS = ["train", "--loss", "e-dpo", "--set", "epsilon=0.3", "--limit", "40", "--max-steps", "3", "--batch-size", "2",
        "--lr", "1e-3", "--max-length", "96", "--max-prompt-length", "48", "--no-progress"]


def _run(cmd, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
@pytest.mark.ci
def test_two_ranks_equal_one_process_with_double_accumulation(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    (tmp_path / "ddp").mkdir()
    (tmp_path / "one").mkdir()
    ddp_out = _run(torchrun + ["-m", "evalharness"] + ARGS + ["--grad-accum", "2"], tmp_path / "ddp")
    _run([sys.executable, "-m", "evalharness"] + ARGS + ["--grad-accum", "4"], tmp_path / "one")
    assert ddp_out.count("checkpoint:") == 1  # only rank 0 reports

    def final(d):
        [run] = Store(str(d / "evalharness.duckdb")).runs()
        weights = load_file(str(Path(d / run["out_dir"]) / "checkpoint-000003" / "model.safetensors"))
        metrics = {(s, n): v for s, n, v in Store(str(d / "evalharness.duckdb")).metrics(run["run_id"])}
        return run, weights, metrics

    run_d, w_d, m_d = final(tmp_path / "ddp")
    run_1, w_1, m_1 = final(tmp_path / "one")
    assert run_d["status"] == run_1["status"] == "finished"
    worst = max((w_d[k] - w_1[k]).abs().max().item() for k in w_d)
    assert worst < 1e-5, worst
    for step in (1, 2, 3):
        assert m_d[(step, "state/beta")] == pytest.approx(m_1[(step, "state/beta")], abs=1e-6)
        assert m_d[(step, "loss")] == pytest.approx(m_1[(step, "loss")], abs=1e-5)
    assert m_d[(3, "state/beta")] != pytest.approx(0.1, abs=1e-4)  # β really moved

"""The loop under FSDP2 through accelerate (gloo on CPU): two sharded ranks equal one process with twice the
accumulation, the checkpoint is a whole HF directory, and a run stopped mid-way resumes to the same weights.

Global micro-batch index = (step·accum + a)·world + rank, so 2 ranks x batch 2 x accum 1 and 1 rank x batch 2 x accum 2
consume the same examples in each optimizer step; FSDP averages the reduce-scattered gradients over the ranks as DDP
does, so both must end with the same weights, and e-DPO's β (from statistics gathered over all ranks) must agree.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evalharness.store import Store

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "accelerate" / "fsdp.yaml"
ARGS = ["train", "--loss", "e-dpo", "--set", "epsilon=0.3", "--limit", "40", "--batch-size", "2", "--lr", "1e-3",
        "--max-length", "96", "--max-prompt-length", "48", "--no-progress"]
# Stops every rank after step 3 (the on_step hook the CLI does not expose), as an interruption would.
STOP_AT_3 = """
import sys
import trainers.loop as loop
from trainers.loop import StopTraining
real = loop.train_stage
def stop(step, metrics):
    if step == 3:
        raise StopTraining
loop.train_stage = lambda *a, **k: real(*a, **{**k, "on_step": stop})
from evalharness.cli import app
sys.argv = ["evalharness"] + sys.argv[1:]
app()
"""


def _launch(args, cwd, port, module=True, ok=True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG), "--num_processes", "2",
           "--main_process_port", str(port)] + (["-m", "evalharness"] if module else []) + args
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def _one(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "evalharness"] + args, cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


def _final(d, step):
    [run] = Store(str(d / "evalharness.duckdb")).runs()
    ckpt = Path(d / run["out_dir"]) / f"checkpoint-{step:06d}"
    metrics = {(s, n): v for s, n, v in Store(str(d / "evalharness.duckdb")).metrics(run["run_id"])}
    return run, ckpt, load_file(str(ckpt / "model.safetensors")), metrics


@pytest.mark.slow
@pytest.mark.distributed
def test_two_sharded_ranks_equal_one_process_with_double_accumulation(tmp_path):
    (tmp_path / "fsdp").mkdir()
    (tmp_path / "one").mkdir()
    out = _launch(ARGS + ["--max-steps", "3", "--grad-accum", "1"], tmp_path / "fsdp", 29561)
    assert out.stdout.count("checkpoint:") == 1  # only rank 0 reports
    _one(ARGS + ["--max-steps", "3", "--grad-accum", "2"], tmp_path / "one")
    run_f, ckpt_f, w_f, m_f = _final(tmp_path / "fsdp", 3)
    run_1, _, w_1, m_1 = _final(tmp_path / "one", 3)
    assert run_f["status"] == run_1["status"] == "finished"
    assert w_f.keys() == w_1.keys()
    worst = max((w_f[k] - w_1[k]).abs().max().item() for k in w_f)
    assert worst < 1e-4, worst
    for step in (1, 2, 3):
        assert m_f[(step, "state/beta")] == pytest.approx(m_1[(step, "state/beta")], abs=1e-6)
        assert m_f[(step, "loss")] == pytest.approx(m_1[(step, "loss")], abs=1e-5)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(ckpt_f)  # a whole HF checkpoint, loadable as it is


@pytest.mark.slow
@pytest.mark.distributed
def test_a_sharded_run_stopped_after_a_checkpoint_resumes_to_the_same_weights(tmp_path):
    args = ARGS + ["--max-steps", "4", "--save-every", "2"]
    (tmp_path / "full").mkdir()
    (tmp_path / "cut").mkdir()
    _launch(args, tmp_path / "full", 29562)
    script = tmp_path / "stop_at_3.py"
    script.write_text(STOP_AT_3)
    stopped = _launch([str(script)] + args, tmp_path / "cut", 29563, module=False, ok=False)
    assert stopped.returncode != 0
    [run] = Store(str(tmp_path / "cut" / "evalharness.duckdb")).runs()
    assert run["status"] == "interrupted"
    # The checkpoint a resume reads holds the optimizer state gathered from shards: keyed by parameter name, each
    # tensor whole (a final checkpoint holds none: nothing is left to train from it).
    cut = Path(tmp_path / "cut" / run["out_dir"])
    saved = torch.load(cut / "checkpoint-000002" / "trainer_state.pt", weights_only=False)["optimizer"]["state"]
    head = load_file(str(cut / "checkpoint-000002" / "model.safetensors"))["lm_head.weight"]
    assert all(isinstance(k, str) for k in saved)
    assert saved["lm_head.weight"]["exp_avg"].shape == head.shape
    resumed = _launch(args, tmp_path / "cut", 29564)
    assert "resumed from step 2" in resumed.stdout
    _, ckpt_full, w_full, m_full = _final(tmp_path / "full", 4)
    assert "optimizer" not in torch.load(ckpt_full / "trainer_state.pt", weights_only=False)
    _, _, w_cut, m_cut = _final(tmp_path / "cut", 4)
    worst = max((w_full[k] - w_cut[k]).abs().max().item() for k in w_full)
    assert worst <= 1e-6, worst
    assert m_cut[(4, "state/beta")] == pytest.approx(m_full[(4, "state/beta")], abs=1e-9)

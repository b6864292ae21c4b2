"""Checkpoints: HF ``save_pretrained`` weights (loadable by transformers and vLLM) plus the trainer state that makes
``--resume`` exact: optimizer, scheduler, RNG states, the step (which fixes the data position) and the loss state."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from evalharness.store import StoreError

STATE_FILE = "trainer_state.pt"


# How safetensors and torch's zip writer word a write the disk refused.
_WRITE_FAILURES = ("I/O error", "os error", "unexpected pos", "No space", "File too large", "Read-only", "write")


class CheckpointError(StoreError):
    """A checkpoint or run file can't be written (disk full, quota, read-only): one line, the path and the reason."""


@contextlib.contextmanager
def _writing(path: Path, partial: Path | None = None):
    """Turn a failed write into a CheckpointError and remove ``partial`` (nothing half-written is left behind).

    Writers fail in their own types: OSError from Python, SafetensorError from safetensors, RuntimeError from torch's
    zip writer ("unexpected pos") when a write comes up short.
    """
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, RuntimeError, SafetensorError) as e:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not isinstance(e, OSError) and not any(s in reason for s in _WRITE_FAILURES):
            raise  # not a failed write: a bug keeps its traceback
        raise CheckpointError(f"{path}: could not write ({reason}); is the disk full or read-only?") from e



def checkpoint_dir(out: Path, step: int) -> Path:
    return out / f"checkpoint-{step:06d}"


def discard_run(out: Path) -> None:
    """Remove the run's checkpoints (finished and half-written) from ``out``, which the caller has checked is this
    run's. Its config.json stays (the same run writes it again) and so does anything else found there."""
    if not out.is_dir():
        return
    for p in sorted(out.iterdir()):
        if re.fullmatch(r"(\.tmp-)?checkpoint-\d{6,}", p.name):  # the names checkpoint_dir and save give
            if p.is_symlink() or not p.is_dir():
                p.unlink()
            else:
                shutil.rmtree(p)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint (the state file is written last, so its presence means complete)."""
    if not out.is_dir():
        return None
    done = sorted(p for p in out.glob("checkpoint-*") if (p / STATE_FILE).exists())
    return done[-1] if done else None


def export_model(model, path: Path) -> None:
    """Save full weights; LoRA adapters are merged into a copy so the checkpoint loads without peft."""
    if hasattr(model, "merge_and_unload"):
        merged = copy.deepcopy(model).merge_and_unload()
        merged.save_pretrained(path, safe_serialization=True)
        model.save_pretrained(path / "adapter")
    else:
        model.save_pretrained(path, safe_serialization=True)


def save(out: Path, step: int, model, tokenizer, optimizer, scheduler, loss_state: dict, reference=None, extra=None) -> Path:
    final = checkpoint_dir(out, step)
    tmp = out / f".tmp-checkpoint-{step:06d}"
    with _writing(final, partial=tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        export_model(model, tmp)
        tokenizer.save_pretrained(tmp)
        if reference is not None:  # a moving reference (TR-DPO) is part of the state
            reference.save_pretrained(tmp / "reference", safe_serialization=True)
        _save_state(tmp, step, optimizer, scheduler, loss_state, extra)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    return final


def _save_state(tmp: Path, step: int, optimizer, scheduler, loss_state: dict, extra) -> None:
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "loss_state": dict(loss_state),
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        "extra": extra or {},
    }
    torch.save(state, tmp / STATE_FILE)


def load_state(path: Path) -> dict:
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

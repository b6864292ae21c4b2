"""Checkpoints: HF ``save_pretrained`` weights (loadable by transformers and vLLM) plus the trainer state that makes
``--resume`` exact: optimizer, scheduler, RNG states, the step (which fixes the data position) and the loss state."""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / f"checkpoint-{step:06d}"


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
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    export_model(model, tmp)
    tokenizer.save_pretrained(tmp)
    if reference is not None:  # a moving reference (TR-DPO) is part of the state
        reference.save_pretrained(tmp / "reference", safe_serialization=True)
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
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


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
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)

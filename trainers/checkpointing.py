"""Checkpoints: HF ``save_pretrained`` weights (loadable by transformers and vLLM) plus the trainer state that makes
``--resume`` exact: optimizer, scheduler, RNG states, the step (which fixes the data position) and the loss state.

What a disk can hold: the weights are written in the training dtype (bfloat16 runs write bfloat16, half the bytes;
their float32 master weights then travel in the trainer state), and only the newest checkpoint keeps the trainer
state: once a newer one is complete, an older one keeps its weights and tokenizer alone (the optimizer state is twice
the weights under AdamW). A run's final checkpoint holds no optimizer state and no float32 master weights: its run id
fixes ``max_steps``, so nothing is left to train from it (training on means a new run with ``init_from``). Its small
trainer state stays, so a run killed right after writing it resumes as finished. ``keep_last`` bounds how many
intermediate checkpoints stay at all.
"""

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


def export_model(model, path: Path, dtype: torch.dtype | None = None) -> None:
    """Save full weights (cast to ``dtype`` where given); LoRA adapters are merged into a copy so the checkpoint loads
    without peft."""
    if hasattr(model, "merge_and_unload"):
        merged = copy.deepcopy(model).merge_and_unload()
        _save_pretrained(merged, path, dtype)
        model.save_pretrained(path / "adapter")
    else:
        _save_pretrained(model, path, dtype)


def _save_pretrained(model, path: Path, dtype: torch.dtype | None) -> None:
    if dtype is None or all(t.dtype == dtype for t in model.state_dict().values() if t.is_floating_point()):
        model.save_pretrained(path, safe_serialization=True)
        return
    cast, by_storage = {}, {}
    for k, t in model.state_dict().items():
        # tied weights (embeddings and LM head) stay one tensor, so save_pretrained still writes them once
        cast[k] = by_storage.setdefault(t.data_ptr(), t.to(dtype)) if t.is_floating_point() else t
    model.save_pretrained(path, safe_serialization=True, state_dict=cast)


def save(out: Path, step: int, model, tokenizer, optimizer, scheduler, loss_state: dict, reference=None, extra=None,
         dtype: torch.dtype | None = None, keep_last: int = 0, is_final: bool = False) -> Path:
    """Write checkpoint ``step`` (atomically: complete or absent), then trim the older ones: they lose the trainer
    state (and a moving reference), and with ``keep_last`` > 0 only that many intermediate checkpoints stay (the
    final one always does).

    ``dtype``: the weights' dtype on disk; where it is not the parameters' own, the parameters being trained are kept
    exactly in the trainer state, so a resume continues from the same bits."""
    final = checkpoint_dir(out, step)
    tmp = out / f".tmp-checkpoint-{step:06d}"
    with _writing(final, partial=tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        export_model(model, tmp, dtype)
        tokenizer.save_pretrained(tmp)
        if reference is not None:  # a moving reference (TR-DPO) is part of the state
            reference.save_pretrained(tmp / "reference", safe_serialization=True)
        master = None
        if not is_final and dtype is not None and any(q.dtype != dtype for q in model.parameters()):
            master = {n: q.detach().clone() for n, q in model.named_parameters() if q.requires_grad}
        _save_state(tmp, step, None if is_final else optimizer, scheduler, loss_state, extra, master)
        if is_final:
            (tmp / FINAL_MARK).touch()
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    trim(out, keep_last)
    return final


FINAL_MARK = "final"  # in a run's final checkpoint: keep_last never removes it


def trim(out: Path, keep_last: int = 0) -> None:
    """Only the newest complete checkpoint keeps its trainer state; with ``keep_last`` > 0 only the newest
    ``keep_last`` intermediate checkpoints (the newest and the final one aside) stay on disk."""
    done = sorted(p for p in out.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d{6,}", p.name))
    newest = latest_checkpoint(out)
    if newest is None:
        return
    older = [p for p in done if p.name < newest.name]
    for p in older:
        # the state file goes first: without it the directory is weights only, whatever happens next
        (p / STATE_FILE).unlink(missing_ok=True)
        shutil.rmtree(p / "reference", ignore_errors=True)
    if keep_last > 0:
        intermediate = [p for p in older if not (p / FINAL_MARK).exists()]
        for p in intermediate[: max(len(intermediate) - keep_last, 0)]:
            shutil.rmtree(p, ignore_errors=True)


def _save_state(tmp: Path, step: int, optimizer, scheduler, loss_state: dict, extra, master=None) -> None:
    state = {
        "step": step,
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
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if master is not None:
        state["master_weights"] = master
    torch.save(state, tmp / STATE_FILE)


def load_state(path: Path, model=None) -> dict:
    """The trainer state of checkpoint ``path``, with the RNG states restored; ``model`` gets the exact trained
    parameters where the weight files hold them rounded to a narrower dtype."""
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    master = state.pop("master_weights", None)
    if master is not None and model is not None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in master.items():
                params[name].copy_(value)
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

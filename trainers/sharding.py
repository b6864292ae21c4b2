"""FSDP through accelerate: what the loop needs beyond DDP.

``accelerate launch --config_file examples/accelerate/fsdp.yaml`` shards the policy with FSDP2 in ``acc.prepare``: each
rank then holds a slice of every parameter and of its optimizer state (DTensors). A checkpoint is written from full
state dicts that every rank helps gather and rank 0 receives (``torch.distributed.checkpoint.state_dict``), so it is
the same HF directory a single process writes; a resume loads the full weights before sharding (``setup.prepare``)
and hands each rank its slice of the saved optimizer state.

Without CUDA, accelerate sets a multi-process run up as MULTI_CPU (DDP over gloo) whatever its config says, though
torch's FSDP2 runs on CPU over gloo too; ``enable_fsdp_on_cpu`` makes accelerate's state FSDP there, so the sharded path
can be tested on a CPU machine.
"""

from __future__ import annotations

import os

import torch


def fsdp_requested() -> bool:
    """Whether the launcher asked for FSDP (accelerate launch sets this from the config's distributed_type)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def enable_fsdp_on_cpu(acc) -> None:
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if not fsdp_requested() or acc.distributed_type != DistributedType.MULTI_CPU:
        return
    acc.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # its settings come from the FSDP_* the launcher set
    acc.state.distributed_type = DistributedType.FSDP
    # Every later AcceleratorState() (accelerate makes several) copies the process state over its own: set both.
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def is_sharded(acc) -> bool:
    from accelerate.utils import DistributedType

    return acc.distributed_type == DistributedType.FSDP


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def for_saving(acc, model, optimizer):
    """(model, optimizer) for ``checkpointing.save``. Sharded: full views gathered now, a collective every rank must
    call (rank 0 gets the tensors, the others empty dicts); otherwise the unwrapped model and the optimizer."""
    if not is_sharded(acc):
        return acc.unwrap_model(model), optimizer
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper around the torch optimizer
    weights = get_model_state_dict(model, options=_options())
    state = get_optimizer_state_dict(model, inner, options=_options())
    return FullModel(acc.unwrap_model(model), weights), FullOptimizer(optimizer, state)


def load_optimizer(acc, model, optimizer, saved: dict) -> None:
    """Resume: the saved (full) optimizer state, sliced to this rank's shard where the model is sharded."""
    if not is_sharded(acc):
        optimizer.load_state_dict(saved)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    inner = getattr(optimizer, "optimizer", optimizer)
    set_optimizer_state_dict(model, inner, saved, options=_options())


class FullModel:
    """A sharded model as checkpointing sees it: its state dict and parameters are the gathered full tensors, and
    ``save_pretrained`` writes them through the model's own (HF) method."""

    def __init__(self, model, weights: dict[str, torch.Tensor]):
        self._model, self._weights = model, weights

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._weights

    def named_parameters(self):
        for name, p in self._model.named_parameters():
            yield name, torch.nn.Parameter(self._weights[name], requires_grad=p.requires_grad)

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def save_pretrained(self, path, **kwargs):
        kwargs.setdefault("state_dict", self._weights)
        return self._model.save_pretrained(path, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


class FullOptimizer:
    def __init__(self, optimizer, state: dict):
        self._optimizer, self._state = optimizer, state

    def state_dict(self) -> dict:
        return self._state

    def __getattr__(self, name):
        return getattr(self._optimizer, name)

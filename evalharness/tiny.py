"""Tiny random models for tests and the offline quickstart: real checkpoint directories, built in-process.

``build_tiny(arch, path)`` writes a small randomly initialised GPT-2, GPT-NeoX or Llama (hidden 64, 2 layers, 2 heads, so
head dim 32 as vLLM's CPU attention requires) and a byte-level tokenizer into ``path`` with ``save_pretrained``, so
transformers and vLLM load the directory like any hub checkpoint. The same arch and seed give bit-identical weights.

The tokenizer is built here, not downloaded: byte-level BPE whose vocabulary is three special tokens followed by the
256 byte symbols, with no merges, so every UTF-8 string (emoji included) round-trips one token per byte. Its special
tokens follow SmolLM2's conventions (bos ``<|im_start|>``, eos ``<|im_end|>``) and its chat template is ChatML, so code
written against the tiny models meets the same end-of-turn handling as the real small model.
"""

from __future__ import annotations

import warnings
from pathlib import Path

# Bump when anything below changes the saved files: the cache key of resolved tiny names includes it.
TINY_VERSION = 1

ARCHES = ("llama", "gpt-neox", "gpt2")
TINY_NAMES = tuple(f"tiny-{a}" for a in ARCHES)

PAD, BOS, EOS = "<|pad|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, BOS, EOS)  # ids 0, 1, 2; byte b is id 3 + b
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MAX_POSITIONS = 2048  # one token per byte: HH-style prompts of a few hundred words must fit
VLLM_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)  # the head sizes vLLM attention kernels accept


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (what the ByteLevel pre-tokenizer emits)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def build_tokenizer():
    """The tiny models' tokenizer (a transformers fast tokenizer), deterministic and offline."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    byte_chars = _bytes_to_unicode()
    vocab.update({byte_chars[b]: len(SPECIAL_TOKENS) + b for b in range(256)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # No regex split: with no merges it would not change the tokens, only cost time.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, model_max_length=MAX_POSITIONS
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def _config(arch: str, vocab_size: int, overrides: dict):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    ids = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, vocab_size=vocab_size)
    if arch == "llama":
        kw = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS, attention_dropout=0.0,
                  tie_word_embeddings=False)
        cls = LlamaConfig
    elif arch == "gpt-neox":
        kw = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  max_position_embeddings=MAX_POSITIONS, hidden_dropout=0.0, attention_dropout=0.0,
                  tie_word_embeddings=False)
        cls = GPTNeoXConfig
    else:
        kw = dict(n_embd=64, n_inner=128, n_layer=2, n_head=2, n_positions=MAX_POSITIONS, resid_pdrop=0.0,
                  embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0, tie_word_embeddings=True)
        cls = GPT2Config
    return cls(**{**ids, **kw, **overrides})


def normalise_arch(arch: str) -> str:
    a = arch.lower().removeprefix("tiny-").replace("_", "-")
    if a not in ARCHES:
        from evalharness.registry import unknown_message

        raise ValueError(unknown_message("tiny architecture", arch, ARCHES))
    return a


def build_tiny(arch: str, path: str | Path, seed: int = 0, head: str | None = None, **overrides) -> Path:
    """Write a tiny random model of ``arch`` ("llama", "gpt-neox", "gpt2"; a "tiny-" prefix is allowed) to ``path``.

    ``overrides`` are config fields (``hidden_size=128``, ``num_labels=1``...). ``head`` is "causal-lm" or
    "sequence-classification" (a reward model); left out, it is sequence-classification exactly when ``num_labels`` is
    given. Weights come from ``seed`` alone (the caller's RNG state is untouched). Returns ``path``.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    arch = normalise_arch(arch)
    head = head or ("sequence-classification" if "num_labels" in overrides else "causal-lm")
    if head not in ("causal-lm", "sequence-classification"):
        raise ValueError(f"head must be 'causal-lm' or 'sequence-classification', not {head!r}")
    tokenizer = build_tokenizer()
    config = _config(arch, len(tokenizer), overrides)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head_dim not in VLLM_HEAD_DIMS:
        warnings.warn(f"tiny {arch}: head dim {head_dim} will not load in vLLM's CPU attention", stacklevel=2)
    auto = AutoModelForCausalLM if head == "causal-lm" else AutoModelForSequenceClassification
    return save_random(auto, config, tokenizer, path, seed)


def save_random(auto, config, tokenizer, path: str | Path, seed: int) -> Path:
    """Build ``auto.from_config(config)`` in float32 with weights from ``seed`` alone (the caller's RNG state is
    untouched) and save it with ``tokenizer`` into ``path``."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(config, dtype=torch.float32)
    model.eval()
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path

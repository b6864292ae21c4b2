"""``task-llama``: a small Llama with a word-level tokenizer over the synthetic review task, built in-process.

The tiny models (``evalharness.tiny``) read bytes, so a review of 60 characters is 60 steps of a random byte model:
nothing a CPU trains to convergence in a minute. This model reads the task's own words, so a review is ~20 tokens
from a vocabulary of a few hundred, and a policy of under a million parameters learns the task's grammar in a few
hundred SFT steps; alignment then has only the sentiment left to move.

The tokenizer's vocabulary is every word and punctuation mark the task's prompts and responses produce
(``evalharness.data.synthetic``), each word both bare and with its leading space (a word after a space is one token
that carries the space), the chat template's role words and newline, and the specials ``<|pad|>``, ``<|im_start|>``,
``<|im_end|>``, ``<unk>``. Decoding concatenates the tokens, so task text round-trips exactly and the oracle scores
decoded samples as written; a word outside the task (or a run of spaces) encodes as ``<unk>``. The chat template is
ChatML, as the tiny models' and SmolLM2's are, so code written against them meets the same end-of-turn handling.
"""

from __future__ import annotations

import re
from pathlib import Path

# Bump when anything below changes the saved files (vocabulary, config, seed use): resolved names are cached under it.
TASK_VERSION = 1
TASK_NAMES = ("task-llama",)

PAD, BOS, EOS, UNK = "<|pad|>", "<|im_start|>", "<|im_end|>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0..3
ROLES = ("system", "user", "assistant")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# A word with the one space before it, one punctuation mark, or one whitespace character: each piece is one token.
PIECE = r" ?[A-Za-z]+|[^A-Za-z\s]|\s"
# Position embeddings are rotary: this bounds nothing at run time, it is what the config says the model was made for
# (a prompt of ~15 tokens and a review of ~25).
MAX_POSITIONS = 256
# 4 layers x hidden 128 (4 heads of 32, a head size vLLM's CPU attention takes): ~0.7M parameters, enough to learn
# the task's grammar in a few hundred steps on two CPU threads.
CONFIG = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=4, max_position_embeddings=MAX_POSITIONS, attention_dropout=0.0,
              tie_word_embeddings=False)


def task_words() -> list[str]:
    """Every word and punctuation mark the synthetic task's prompts and responses can produce, sorted."""
    from evalharness.data import synthetic

    texts = [synthetic.prompt_for(item)[0].content for item in synthetic.ITEMS]
    texts += [synthetic.review(item, [(noun, adj)] * 2) for item in synthetic.ITEMS for noun in synthetic.NEUTRAL
              for adj in synthetic.POSITIVE + synthetic.NEGATIVE]
    pieces = {p.strip() or p for t in texts for p in re.findall(PIECE, t)}
    return sorted(p for p in pieces if p != " ")


def vocabulary() -> dict[str, int]:
    """Token -> id: the specials, newline, the role words, then each task word bare and with its leading space."""
    tokens = list(SPECIAL_TOKENS) + ["\n"]
    for word in list(ROLES) + task_words():
        tokens.append(word)
        if word[0].isalpha():
            tokens.append(" " + word)
    seen: dict[str, int] = {}
    for t in tokens:
        seen.setdefault(t, len(seen))
    return seen


def build_tokenizer():
    """The task tokenizer (a transformers fast tokenizer), deterministic and offline."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=vocabulary(), unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE), behavior="isolated")
    tok.decoder = decoders.Fuse()  # the pieces carry their own spaces: decoding is concatenation
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
                                 model_max_length=MAX_POSITIONS, clean_up_tokenization_spaces=False)
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_task_model(path: str | Path, seed: int = 0) -> Path:
    """Write ``task-llama`` (random weights from ``seed`` alone; the caller's RNG is untouched) to ``path``."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from evalharness.tiny import save_random

    tokenizer = build_tokenizer()
    config = LlamaConfig(pad_token_id=0, bos_token_id=1, eos_token_id=2, vocab_size=len(tokenizer), **CONFIG)
    return save_random(AutoModelForCausalLM, config, tokenizer, path, seed)

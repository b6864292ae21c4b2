"""Random PairRM checkpoints for tests and benchmarks, and llm-blender's own PairRM as the peer to check against.

``build_random_pairrm(path)`` writes a randomly initialised PairRM in the ``llm-blender/PairRM-hf`` layout: a small
DeBERTa-v2 encoder configured like DeBERTa-v3 (relative attention with 256 position buckets, no absolute positions),
the head, the PairRM config fields and a DeBERTa-v2 tokenizer whose markers sit right after ``[MASK]``, as in the real
checkpoint (there [MASK] is 128000 and the markers 128001-128004). The same seed gives bit-identical weights.

The tokenizer is built here, not downloaded: a sentencepiece-style Unigram whose vocabulary is DeBERTa-v3's four
special tokens, the word boundary ``▁``, every printable ASCII character (alone and after ``▁``) and the words of the
synthetic review task as whole pieces, so task texts tokenize into about one token per word and any other ASCII text
still tokenizes (other characters become [UNK]).
"""

from __future__ import annotations

import string
from pathlib import Path

from judges.pairrm import CANDIDATE_MARKER, MARKERS

SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")  # ids 0-3, as in DeBERTa-v3
EXTRA_WORDS = ("write", "short", "review", "of", "visited", "was", "and", "but", "a", "i", "it", "is", "you", "hello",
               "hi", "love", "hate", "thanks", "bye", "yes", "no", "good", "bad", "very", "not", "too")


def _words() -> list[str]:
    from evalharness.data import synthetic

    words = set(EXTRA_WORDS)
    for phrase in (*synthetic.ITEMS, *synthetic.POSITIVE, *synthetic.NEGATIVE, *synthetic.NEUTRAL):
        words.update(phrase.split())
    return sorted(words)


def build_tokenizer():
    """A DeBERTa-v2 tokenizer (transformers' ``DebertaV2Tokenizer``) with the PairRM markers, built offline."""
    from transformers import DebertaV2Tokenizer

    chars = [c for c in string.printable if not c.isspace()]
    # Unigram log-probabilities: a whole word (-5) beats spelling it out (-10 per character), so words stay whole.
    vocab = [(t, 0.0) for t in SPECIALS] + [("▁", -8.0)]
    vocab += [(c, -10.0) for c in chars] + [("▁" + c, -9.0) for c in chars]
    vocab += [("▁" + w, -5.0) for word in _words() for w in dict.fromkeys((word, word.capitalize()))
              if len(w) > 1]
    tokenizer = DebertaV2Tokenizer(vocab=vocab)  # adds [MASK] after the vocabulary
    tokenizer.add_tokens([*MARKERS, CANDIDATE_MARKER])
    return tokenizer


def pairrm_config(tokenizer, **overrides):
    """A DeBERTa-v3-shaped config, tiny unless ``overrides`` say otherwise, with PairRM's extra fields."""
    from transformers import DebertaV2Config

    ids = tokenizer.convert_tokens_to_ids([*MARKERS, CANDIDATE_MARKER])
    fields = dict(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
        share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0,
        layer_norm_eps=1e-7, pad_token_id=tokenizer.pad_token_id,
        # A wider init than DeBERTa's 0.02, so random logits are O(1) and a parity tolerance of 1e-5 means something.
        initializer_range=0.2,
        n_tasks=1, drop_out=0.05, source_prefix_id=ids[0], cand1_prefix_id=ids[1], cand2_prefix_id=ids[2],
        cand_prefix_id=ids[3], sep_token_id=tokenizer.sep_token_id, architectures=["DebertaV2PairRM"],
    )
    return DebertaV2Config(**{**fields, **overrides})


def build_random_pairrm(path: str | Path, seed: int = 0, **overrides) -> Path:
    """Write a random PairRM (weights from ``seed`` alone; the caller's RNG is untouched) and its tokenizer to path."""
    import torch

    from judges.pairrm_model import DebertaV2PairRM

    tokenizer = build_tokenizer()
    config = pairrm_config(tokenizer, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DebertaV2PairRM(config).eval()
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def import_llm_blender():
    """llm-blender's ``DebertaV2PairRM`` class and ``tokenize_pair`` function, or ImportError saying why not.

    llm-blender 0.0.2 imports ``TRANSFORMERS_CACHE`` from ``transformers.utils.hub``, a constant transformers 5
    removed; it only names a cache directory, so it is set to the HF hub cache first when missing.
    """
    import transformers.utils.hub as hub

    if not hasattr(hub, "TRANSFORMERS_CACHE"):
        from huggingface_hub.constants import HF_HUB_CACHE

        hub.TRANSFORMERS_CACHE = HF_HUB_CACHE
    from llm_blender.blender.blender_utils import tokenize_pair
    from llm_blender.pair_ranker.pairrm import DebertaV2PairRM

    return DebertaV2PairRM, tokenize_pair

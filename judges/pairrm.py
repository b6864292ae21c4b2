"""The PairRM judge: llm-blender's pairwise ranker (DeBERTa-v3-large, 0.4B) on the ``llm-blender/PairRM-hf`` layout.

PairRM reads the prompt and both responses in one sequence and scores them side by side. The sequence is built as
llm-blender's ``tokenize_pair`` builds it for this checkpoint: three parts, each encoded on its own with the
tokenizer's special tokens and led by its marker,

    [CLS] <|source|> prompt… [SEP]  [CLS] <|candidate1|> first… [SEP]  [CLS] <|candidate2|> second… [SEP]

Token budget: the prompt part holds at most 1224 tokens; the two candidate parts share what is left of 2048
(= 1224 + 2 × 412), each at most ``(2048 - len(prompt part)) // 2``, so a short prompt leaves each response more than
412 tokens. A part over its budget keeps its first tokens and its closing special token. Marker strings inside the
texts are replaced by a space, so each marker occurs once, where the model expects it.

The judge scores both orders and averages: ``logit = (l[A,B] - l[B,A]) / 2`` where ``l[X,Y]`` is the model's logit
that X (shown as candidate 1) beats Y. Swapping the two responses negates the logit, so the verdict does not depend
on the order shown. P(first preferred) = σ(logit). (llm-blender's ``compare(mode="[A,B]+[B,A]")`` returns
``l[A,B] - l[B,A]``, twice this logit: same winner, but σ of the sum would double-count the evidence.)

The prompt a single-turn conversation shows is its user message (a system message, if any, comes first); a multi-turn
conversation is shown whole, one "Role: content" block per message.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalharness.data.types import Message
from evalharness.hashing import bytes_hash, content_hash
from judges.base import Comparison, JudgeError, Verdict

VERSION = "1"  # bump when the sequence layout, the order averaging or the verdict rule changes
HUB_ID = "llm-blender/PairRM-hf"
SOURCE_MARKER, CANDIDATE1_MARKER, CANDIDATE2_MARKER = "<|source|>", "<|candidate1|>", "<|candidate2|>"
CANDIDATE_MARKER = "<|candidate|>"  # in the vocabulary (llm-blender's list-wise ranker); never shown here
MARKERS = (SOURCE_MARKER, CANDIDATE1_MARKER, CANDIDATE2_MARKER)
SOURCE_MAX_LENGTH, CANDIDATE_MAX_LENGTH = 1224, 412  # llm-blender's defaults for PairRM (tokenize_pair)
# Files that define the tokenizer: hashed into the judge id, since the same weights read other ids differently.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spm.model", "added_tokens.json",
                   "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt")


@dataclass(frozen=True)
class EncodedPair:
    """One order of one comparison, ready for the model."""

    ids: tuple[int, ...]  # [T]
    markers: tuple[int, int, int]  # positions in ids of <|source|>, <|candidate1|>, <|candidate2|>
    truncated: bool  # whether any part was cut to its budget


def pairrm_source(messages: Sequence[Message]) -> str:
    """The text PairRM sees as the source (its "instruction") for a conversation.

    >>> pairrm_source((Message("user", "Hi?"),))
    'Hi?'
    >>> pairrm_source((Message("system", "Be brief."), Message("user", "Hi?")))
    'Be brief.\\n\\nHi?'
    >>> pairrm_source((Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Bye?")))
    'User: Hi\\n\\nAssistant: Hello\\n\\nUser: Bye?'
    """
    if messages and messages[-1].role == "user" and all(m.role == "system" for m in messages[:-1]):
        return "\n\n".join(m.content for m in messages)
    return "\n\n".join(f"{m.role.capitalize()}: {m.content}" for m in messages)


def special_layout(tokenizer) -> tuple[int, int]:
    """(leading, trailing) special tokens the tokenizer puts around one sequence: (1, 1) for DeBERTa's [CLS] … [SEP]."""
    core = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for head in range(len(full) - len(core) + 1):
        if full[head : head + len(core)] == core:
            return head, len(full) - head - len(core)
    raise JudgeError(f"tokenizer {type(tokenizer).__name__}: cannot locate a text among its special tokens")


def encode_pairs(tokenizer, sources: Sequence[str], firsts: Sequence[str], seconds: Sequence[str],
                 source_max_length: int = SOURCE_MAX_LENGTH, candidate_max_length: int = CANDIDATE_MAX_LENGTH,
                 layout: tuple[int, int] | None = None) -> list[tuple[EncodedPair, EncodedPair]]:
    """Both orders, ([first, second], [second, first]), of each comparison, within the token budget above.

    The same ids as llm-blender's ``tokenize_pair(tokenizer, sources, firsts, seconds)`` (and with the candidates
    swapped), without its padding; all texts go through the tokenizer in one batched call. ``layout`` is
    :func:`special_layout` of the tokenizer (computed when not given).
    """
    if not len(sources) == len(firsts) == len(seconds):
        raise ValueError("sources, firsts and seconds differ in length")
    if not sources:
        return []
    head, tail = layout or special_layout(tokenizer)
    marker_ids = tokenizer.convert_tokens_to_ids(list(MARKERS))
    total = source_max_length + 2 * candidate_max_length
    texts = []
    for s, a, b in zip(sources, firsts, seconds):
        s, a, b = _unmark(s), _unmark(a), _unmark(b)
        texts += [SOURCE_MARKER + s, CANDIDATE1_MARKER + a, CANDIDATE2_MARKER + b,
                  CANDIDATE1_MARKER + b, CANDIDATE2_MARKER + a]
    ids = tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]

    def cut(part: list[int], budget: int) -> tuple[list[int], bool]:
        if len(part) <= budget:
            return part, False
        return part[: budget - tail] + part[len(part) - tail :], True

    out = []
    for i in range(len(sources)):
        src, src_cut = cut(ids[5 * i], source_max_length)
        budget = (total - len(src)) // 2
        parts = [cut(ids[5 * i + k], budget) for k in range(1, 5)]
        orders = []
        for c1, c2 in ((parts[0], parts[1]), (parts[2], parts[3])):
            seq = src + c1[0] + c2[0]
            markers = (head, len(src) + head, len(src) + len(c1[0]) + head)
            if tuple(seq[m] for m in markers) != tuple(marker_ids):  # a tokenizer that splits a marker
                raise JudgeError(f"tokenizer {type(tokenizer).__name__} does not keep the PairRM markers whole")
            orders.append(EncodedPair(tuple(seq), markers, src_cut or c1[1] or c2[1]))
        out.append((orders[0], orders[1]))
    return out


def _unmark(text: str) -> str:
    for m in (*MARKERS, CANDIDATE_MARKER):
        text = text.replace(m, " ")
    return text


def sigmoid(x: float) -> float:
    """σ(x), without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def verdict_from_logits(ab: float, ba: float) -> Verdict:
    """The verdict from the two orders' logits: logit = (ab - ba) / 2, P(first) = σ(logit); a tie only at exactly 0.

    >>> v = verdict_from_logits(1.0, -1.0)  # both orders prefer the first response: logit 1
    >>> v.winner, round(v.probability, 4)
    ('first', 0.7311)
    >>> verdict_from_logits(0.5, 0.5).winner  # each order prefers whichever is shown first: no preference
    'tie'
    """
    logit = (ab - ba) / 2
    raw = f"[A,B]={ab!r} [B,A]={ba!r}"
    if math.isnan(logit):
        return Verdict("failed", raw=raw, error="PairRM gave a NaN logit")
    winner = "first" if logit > 0 else "second" if logit < 0 else "tie"
    return Verdict(winner, probability=sigmoid(logit), raw=raw)


class PairRMJudge:
    """``pairrm[:path=DIR|HUB_ID,batch_size=8,device=cpu,dtype=float32,source_max_length=1224,candidate_max_length=412]``.

    ``batch_size`` counts comparisons per step; a step runs one forward pass of batch_size sequences per order. The id
    is ``pairrm:`` and a fingerprint of the weights, config and tokenizer files; ``version`` also names any budget or
    dtype that differs from the defaults, since both change the logits.
    """

    template = ""

    def __init__(self, path: str = HUB_ID, batch_size: int = 8, device: str = "cpu", dtype: str = "float32",
                 source_max_length: int = SOURCE_MAX_LENGTH, candidate_max_length: int = CANDIDATE_MAX_LENGTH):
        from evalharness.models import DTYPES

        if batch_size < 1:
            raise JudgeError(f"pairrm: batch_size must be at least 1, not {batch_size}")
        if min(source_max_length, candidate_max_length) < 4:
            raise JudgeError("pairrm: source_max_length and candidate_max_length must be at least 4 tokens")
        if dtype not in DTYPES:
            raise JudgeError(f"pairrm: unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        self.batch_size, self.device, self.dtype = batch_size, _check_device(device), DTYPES[dtype]
        self.source_max_length, self.candidate_max_length = source_max_length, candidate_max_length
        self.path = resolve_pairrm(path)
        self.tokenizer = _load_tokenizer(self.path)
        self._layout = special_layout(self.tokenizer)
        self.id = f"pairrm:{pairrm_fingerprint(self.path)}"
        settings = [f"source={source_max_length}" if source_max_length != SOURCE_MAX_LENGTH else "",
                    f"candidate={candidate_max_length}" if candidate_max_length != CANDIDATE_MAX_LENGTH else "",
                    self.dtype if self.dtype != "float32" else ""]
        self.version = ";".join([VERSION, *filter(None, settings)])
        self._model = None

    @property
    def model(self):
        """The network, loaded on first use (building the judge to read its id costs no model load)."""
        if self._model is None:
            self._model = load_pairrm(self.path, self.dtype).to(self.device)
        return self._model

    def encode(self, items: Sequence[Comparison]) -> list[tuple[EncodedPair, EncodedPair]]:
        return encode_pairs(self.tokenizer, [pairrm_source(c.messages) for c in items], [c.first for c in items],
                            [c.second for c in items], self.source_max_length, self.candidate_max_length,
                            self._layout)

    def order_logits(self, items: Sequence[Comparison]) -> list[tuple[float, float]]:
        """(l[first, second], l[second, first]) per comparison: the model's logit for each order."""
        return [(ab, ba) for ab, ba, _ in self._run(self.encode(items))]

    def compare(self, items: Sequence[Comparison]) -> list[Verdict]:
        encoded = self.encode(items)
        verdicts = []
        for (ab, ba, seconds), (first, _) in zip(self._run(encoded), encoded):
            v = verdict_from_logits(ab, ba)
            v.latency, v.prompt_tokens = seconds, 2 * len(first.ids)
            v.meta = {"truncated": first.truncated}
            verdicts.append(v)
        return verdicts

    def _run(self, encoded: Sequence[tuple[EncodedPair, EncodedPair]]) -> list[tuple[float, float, float]]:
        """(l[A,B], l[B,A], seconds of its batch / batch size) per comparison."""
        import torch

        if not encoded:
            return []
        model, pad = self.model, self.tokenizer.pad_token_id or 0
        # Longest first, so padding is wasted only between near-equal lengths and memory peaks at the start.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0].ids))
        out: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * len(encoded)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                t0 = time.perf_counter()
                idx = order[start : start + self.batch_size]
                # One pass per order, batch_size rows each: on CPU one pass of 2 x batch_size rows is slower (DeBERTa's
                # [B, heads, T, T] attention tensors outgrow the caches); on a GPU, raise batch_size instead.
                logits = [model(**_collate([encoded[i][k] for i in idx], pad, self.device)).logits.float().tolist()
                          for k in (0, 1)]
                per_item = (time.perf_counter() - t0) / len(idx)
                for k, i in enumerate(idx):
                    out[i] = (logits[0][k], logits[1][k], per_item)
        return out


def _collate(rows: Sequence[EncodedPair], pad: int, device: str) -> dict:
    """-> input_ids [B, T] (right-padded with ``pad``), attention_mask [B, T], markers [B, 3]: the model's inputs."""
    import torch

    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        ids[k, : len(r.ids)] = torch.tensor(r.ids)
        mask[k, : len(r.ids)] = 1
    markers = torch.tensor([r.markers for r in rows], dtype=torch.long)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "markers": markers.to(device)}


def _check_device(device: str) -> str:
    import torch

    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise JudgeError(f"pairrm: unknown device {device!r}; use cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise JudgeError(f"pairrm: device {device!r} asked for, but torch sees no CUDA device")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise JudgeError("pairrm: device 'mps' asked for, but torch has no MPS backend here")
    return device


# -------------------------------------------------------------------------------------------------------------- load


def resolve_pairrm(path: str) -> Path:
    """The checkpoint directory for a local path or hub id; a JudgeError that says what to do when there is none."""
    from evalharness.models import ModelError, resolve_model

    try:
        found = resolve_model(path)
    except ModelError as e:
        if Path(path).expanduser().exists() or path.startswith((".", "/", "~")):
            raise JudgeError(f"PairRM: {e}; pass path=DIR, a directory in the llm-blender/PairRM-hf layout") from None
        tried = str(e).partition("(tried: ")[2].rstrip(")") or str(e)
        raise JudgeError(f"PairRM model {path!r} is not available here ({tried}): download it where the hub is "
                         f"reachable (`huggingface-cli download {path}` fills the HF cache, which is read offline) "
                         "or pass path=DIR, a local copy in the PairRM-hf layout") from None
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(found)
    lacking = [f for f in ("source_prefix_id", "cand1_prefix_id", "cand2_prefix_id", "n_tasks")
               if getattr(config, f, None) is None]
    if config.model_type != "deberta-v2" or lacking:
        why = f"model_type {config.model_type!r}" if config.model_type != "deberta-v2" else f"no {', '.join(lacking)}"
        raise JudgeError(f"{found} is not a PairRM checkpoint in the llm-blender/PairRM-hf layout "
                         f"({why} in config.json)")
    return found


def _load_tokenizer(path: Path):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    for marker, field in zip(MARKERS, ("source_prefix_id", "cand1_prefix_id", "cand2_prefix_id")):
        got = tokenizer.convert_tokens_to_ids(marker)
        if got != getattr(config, field):
            raise JudgeError(f"{path}: the tokenizer maps {marker} to id {got}, config.json's {field} says "
                             f"{getattr(config, field)}; the tokenizer and weights do not belong together")
    return tokenizer


def load_pairrm(path: str | Path, dtype: str = "float32"):
    """The PairRM network in eval mode; a JudgeError naming the keys when the checkpoint does not match the layout."""
    import torch

    from judges.pairrm_model import DebertaV2PairRM

    model, info = DebertaV2PairRM.from_pretrained(path, dtype=getattr(torch, dtype), output_loading_info=True)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        listed = "; ".join(f"{k}: {', '.join(sorted(map(str, v))[:6])}{' …' if len(v) > 6 else ''}"
                           for k, v in bad.items())
        raise JudgeError(f"{path} does not match the PairRM-hf layout ({listed})")
    return model.eval()


def pairrm_fingerprint(path: str | Path) -> str:
    """16 hex over the weights and config (``model_fingerprint``) and the bytes of the tokenizer files."""
    from evalharness.models import model_fingerprint

    path = Path(path)
    tokenizer = [(name, bytes_hash([(path / name).read_bytes()])) for name in TOKENIZER_FILES if (path / name).is_file()]
    return content_hash([model_fingerprint(path), tokenizer], size=8)

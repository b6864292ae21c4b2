"""The reward-model judge: any one-output ``*ForSequenceClassification`` checkpoint, scored pointwise.

Each response is rendered exactly as the project's ``bradley-terry`` loss saw it in training (the chat template when the
tokenizer has one, the response ending with the template's end-of-turn token), so a reward model trained here judges
in the format it learned. A pairwise verdict is the score difference: P(first) = sigmoid(r_first - r_second).
"""

from __future__ import annotations

from collections.abc import Sequence

from judges.base import Comparison, JudgeError, Verdict, verdict_from_scores

VERSION = "1"


class RewardModelJudge:
    """``reward-model:path=DIR[,batch_size=16,max_length=1024,tie_margin=0]``."""

    template = ""
    version = VERSION

    def __init__(self, path: str | None = None, batch_size: int = 16, max_length: int = 1024,
                 max_prompt_length: int = 768, tie_margin: float = 0.0, style: str = "auto", dtype: str = "float32",
                 trust_remote_code: bool = False):
        if not path:
            raise JudgeError("the reward-model judge needs a model: reward-model:path=DIR (a run's final checkpoint "
                             "of the bradley-terry loss, or any sequence-classification checkpoint)")
        from evalharness.models import has_reward_head, model_fingerprint, resolve_model

        self.path = str(resolve_model(path))
        if not has_reward_head(self.path):
            raise JudgeError(f"{path} is not a reward model (no one-output sequence-classification head); train one "
                             "with `evalharness train --loss bradley-terry` or pass a reward-model checkpoint")
        if batch_size < 1 or max_length < 2 or not 0 < max_prompt_length < max_length:
            raise JudgeError("reward-model needs batch_size >= 1 and 0 < max_prompt_length < max_length")
        self.batch_size, self.max_length, self.max_prompt_length = batch_size, max_length, max_prompt_length
        self.tie_margin, self.style, self.dtype, self.trust_remote_code = tie_margin, style, dtype, trust_remote_code
        self.id = f"reward-model:{model_fingerprint(self.path)[:16]}"
        if tie_margin:
            self.id += f"@tie{tie_margin:g}"
        self._model = None

    def _load(self):
        if self._model is None:
            from evalharness.models import load_reward_model, load_tokenizer
            from evalharness.scoring import Encoder

            self._model = load_reward_model(self.path, self.dtype, self.trust_remote_code).eval()
            tok = load_tokenizer(self.path, trust_remote_code=self.trust_remote_code)
            self._pad = tok.pad_token_id if tok.pad_token_id is not None else 0
            self._encoder = Encoder(tok, self.style, self.max_length, self.max_prompt_length)
        return self._model

    def score(self, items: Sequence[tuple[tuple, str]]) -> list[float]:
        """Scores of (conversation messages, response) pairs, batched, shortest first to waste little padding."""
        import torch

        from evalharness.scoring import sequence_scores

        model = self._load()
        seqs = [self._encoder.seq(tuple(msgs), text) for msgs, text in items]
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out = [0.0] * len(seqs)
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                scores, _ = sequence_scores(model, [seqs[i] for i in idx], self._pad)
                for i, s in zip(idx, scores.tolist()):
                    out[i] = s
        return out

    def compare(self, items: Sequence[Comparison]) -> list[Verdict]:
        scores = self.score([(c.messages, c.first) for c in items] + [(c.messages, c.second) for c in items])
        n = len(items)
        return [verdict_from_scores(scores[i], scores[n + i], self.tie_margin) for i in range(n)]

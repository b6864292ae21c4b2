import pytest
import torch

from evalharness.scoring import Encoder, Seq, collate, sequence_logps
from trainers.batching import batch_order


class _Tok:
    """A whitespace tokenizer: one id per word, so the truncation arithmetic is easy to check by hand."""

    eos_token_id = 1
    chat_template = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [10 + len(w) for w in text.split()]}


def test_truncation_keeps_the_end_of_the_prompt_and_the_start_of_the_response():
    verbatim = (lambda tok, x, style: x, lambda tok, y, style: y)
    enc = Encoder(_Tok(), "plain", max_length=6, max_prompt_length=3, render=verbatim)
    # prompt words of lengths 1..5 -> ids 11..15; keep the last 3: 13 14 15
    # response lengths 6,7,8,9 -> 16 17 18 19; room = 6 - 3 = 3: 16 17 18
    s = enc.seq("a bb ccc dddd eeeee", "ffffff ggggggg hhhhhhhh iiiiiiiii")
    assert s.prompt == (13, 14, 15) and s.response == (16, 17, 18)
    assert enc.truncated
    enc.truncated = False
    s = enc.seq("a", "bb")
    assert s.prompt == (11,) and s.response == (12,) and not enc.truncated


def test_batch_order_is_deterministic_bucketed_and_drops_the_incomplete_batch():
    lengths = [5, 100, 7, 98, 6, 99, 8, 97]
    a = batch_order(lengths, 2, seed=0, epoch=0)
    assert a == batch_order(lengths, 2, seed=0, epoch=0)
    assert a != batch_order(lengths, 2, seed=0, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(8))
    assert len(batch_order(lengths + [3], 2, seed=0, epoch=0)) == 4  # 9 examples: the odd one waits an epoch
    for b in a:  # sorted within a chunk: short with short, long with long
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 3


def test_collate_masks_only_the_response():
    ids, attn, resp = collate([Seq((5, 6), (7,)), Seq((5,), (8, 9, 2))], pad_id=0)
    assert ids.tolist() == [[5, 6, 7, 0], [5, 8, 9, 2]]
    assert attn.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert resp.tolist() == [[False, False, True, False], [False, True, True, True]]


class _Bigram(torch.nn.Module):
    """logits at position t depend only on token t, so log-probs can be checked against a table by hand."""

    def __init__(self, vocab=6):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)))

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        return type("Out", (), {"logits": self.table[input_ids]})()


def test_sequence_logps_sum_only_response_tokens_at_the_given_temperature():
    model = _Bigram()
    seqs = [Seq((1, 2), (3, 4)), Seq((1,), (5,))]
    fwd = sequence_logps(model, seqs, pad_id=0, temperature=0.8)
    logp = torch.log_softmax(model.table / 0.8, dim=-1)
    # seq 0: tokens 3 (after 2) and 4 (after 3); seq 1: token 5 (after 1); the pad after it is masked
    expected = torch.stack([logp[2, 3] + logp[3, 4], logp[1, 5]])
    assert torch.allclose(fwd.summed, expected, atol=1e-6)
    assert fwd.lengths.tolist() == [2.0, 1.0]
    assert fwd.tokens == 6


@pytest.mark.parametrize("style", ["auto", "plain"])
def test_a_response_ends_with_exactly_one_end_token(style):
    from evalharness.data.types import Message
    from evalharness.models import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model("tiny-llama"))
    enc = Encoder(tok, style, max_length=256, max_prompt_length=128)
    s = enc.seq((Message("user", "Hi?"),), "Fine.")
    assert s.response[-1] == tok.eos_token_id and s.response[-2] != tok.eos_token_id
    assert tok.decode(list(s.response), skip_special_tokens=True).strip() == "Fine."


class _KeepingBigram(_Bigram):
    """The bigram model taking ``logits_to_keep`` as transformers' causal LMs do: logits of the last k positions."""

    asked: list = []

    def forward(self, input_ids, attention_mask=None, use_cache=False, logits_to_keep=0):
        _KeepingBigram.asked.append(logits_to_keep)
        logits = self.table[input_ids]
        return type("Out", (), {"logits": logits[:, -logits_to_keep:] if logits_to_keep else logits})()


def test_the_lm_head_skips_the_positions_before_the_first_response_token_with_the_same_results():
    model = _KeepingBigram()
    # Row 0's response starts at token 3 (predicted from position 2), row 1's at token 2 (position 1): positions 1-4
    # of the 6 are needed, so the head is asked for the last 5 (the loop drops the very last, which predicts nothing).
    seqs = [Seq((1, 2, 3), (4, 5, 1)), Seq((1, 2), (5,))]
    _KeepingBigram.asked = []
    fwd = sequence_logps(model, seqs, pad_id=0, temperature=0.8)
    assert _KeepingBigram.asked == [5]
    logp = torch.log_softmax(model.table / 0.8, dim=-1)
    expected = torch.stack([logp[3, 4] + logp[4, 5] + logp[5, 1], logp[2, 5]])
    assert torch.allclose(fwd.summed, expected, atol=1e-6)
    assert fwd.token_logps.shape == fwd.mask.shape == (2, 5)  # still one column per position
    assert fwd.token_logps[:, 0].tolist() == [0.0, 0.0] and torch.equal(fwd.token_logps != 0, fwd.mask)
    _KeepingBigram.asked = []
    full = sequence_logps(model, seqs, pad_id=0, temperature=0.8, keep_logits=True)  # the logits are wanted whole
    assert _KeepingBigram.asked == [0] and full.logits.shape == (2, 5, 6)
    assert torch.equal(full.token_logps, fwd.token_logps)


def test_skipping_prompt_positions_changes_neither_values_nor_gradients_of_a_real_model(tmp_path, monkeypatch):
    from evalharness import scoring
    from evalharness.tiny import build_tiny

    path = build_tiny("llama", tmp_path / "m")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    seqs = [Seq(tuple(range(20, 40)), tuple(range(50, 58))), Seq(tuple(range(20, 31)), tuple(range(60, 75)))]

    head_positions = []
    model.lm_head.register_forward_hook(lambda mod, args, out: head_positions.append(out.shape[1]))

    def run(skip: bool):
        monkeypatch.setattr(scoring, "_keeps_logits", lambda m: skip)
        model.zero_grad()
        fwd = sequence_logps(model, seqs, pad_id=0)
        fwd.summed.sum().backward()
        return fwd.token_logps.detach(), [p.grad.clone() for p in model.parameters()]

    (skipped, g_skip), (whole, g_whole) = run(True), run(False)
    # 28 positions (20 + 8 tokens); row 1's first response token is its 12th, predicted from position 10: the head
    # runs on positions 10-27 when skipping, on all 28 otherwise.
    assert head_positions == [18, 28]
    assert torch.allclose(skipped, whole, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_skip, g_whole))


def test_transformers_causal_lms_and_their_wrappers_are_seen_to_take_logits_to_keep(tmp_path):
    from transformers import AutoModelForCausalLM

    from evalharness.scoring import _keeps_logits
    from evalharness.tiny import build_tiny

    model = AutoModelForCausalLM.from_pretrained(build_tiny("llama", tmp_path / "m"))
    wrapped = torch.nn.Module()
    wrapped.module = model  # what DistributedDataParallel looks like
    assert _keeps_logits(model) and _keeps_logits(wrapped)
    assert not _keeps_logits(_Bigram())

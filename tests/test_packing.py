"""Packing responses into rows after a shared prompt forward: the layout chosen by the cost model (hand-computed), the
index tensors of a layout, and the log-probs and gradients of packed rows against the concatenated forward."""

from __future__ import annotations

import pytest
import torch

from evalharness import packing, scoring
from evalharness.scoring import Seq

ROW_OF, P_LEN, RESP_LEN = [0, 0, 1, 1], [4, 3], [5, 1, 2, 2]


def test_the_plan_is_the_cheapest_layout_by_hand():
    # one response per row: 4 rows x 5 positions x 100 + 4 x 5 x (4 + 5) pairs = 2180
    # prompts' groups (6 and 4 tokens) in two rows: 2 x 6 x 100 + 2 x 6 x (4 + 6) = 1320
    # all in one row: 10 x 100 + 10 x (7 + 10) = 1170 -> the cheapest
    assert packing.plan(ROW_OF, P_LEN, RESP_LEN, 100.0, 1.0) == [[0, 1, 2, 3]]
    # attention 100x dearer: unpacked 2000 + 18000, two rows 1200 + 12000, one row 1000 + 17000 -> two rows
    assert packing.plan(ROW_OF, P_LEN, RESP_LEN, 100.0, 100.0) == [[0, 1], [2, 3]]


def test_no_plan_where_one_response_per_row_is_as_cheap():
    # equal responses: unpacked 2 x 3 x 100 + 2 x 3 x 8 = 648 against one row's 600 + 6 x 11 = 666
    assert packing.plan([0, 0], [5], [3, 3], 100.0, 1.0) is None
    assert packing.plan([0], [5], [3], 100.0, 1.0) is None  # a single response has nothing to share a row with


def test_the_layout_of_one_row_by_hand():
    responses = [(10, 11, 12, 13, 14), (20,), (30, 31), (40, 41)]
    pk = packing.layout([[0, 1, 2, 3]], ROW_OF, P_LEN, 4, responses, pad_id=0, device="cpu")
    # prompt 0 fills slots 0-3 from its cache row 0, prompt 1 slots 4-6 from cache row 1 (flat index 4 + j)
    assert pk.prompt_index.tolist() == [[0, 1, 2, 3, 4, 5, 6]]
    assert pk.ids.tolist() == [[10, 11, 12, 13, 14, 20, 30, 31, 40, 41]]
    assert pk.positions.tolist() == [[4, 5, 6, 7, 8, 4, 3, 4, 3, 4]]  # each continues its own prompt
    m = pk.mask[0, 0]
    assert m.shape == (10, 7 + 10)
    # response 2's second token (column 7): prompt 1's three slots, then its own tokens at columns 6 and 7
    assert m[7].nonzero().squeeze(-1).tolist() == [4, 5, 6, 7 + 6, 7 + 7]
    # response 0's third token: prompt 0 and its own first three tokens, nothing of response 1
    assert m[2].nonzero().squeeze(-1).tolist() == [0, 1, 2, 3, 7, 8, 9]
    # logits kept where a token predicts the next one: response 0's first four, response 2's and 3's first
    assert pk.keep.tolist() == [0, 1, 2, 3, 6, 8]
    assert pk.gather[0].tolist() == [0, 1, 2, 3] and pk.gather[2, 0] == 4 and pk.gather[3, 0] == 5


def test_a_pad_query_sees_only_itself():
    pk = packing.layout([[0, 1], [2, 3]], ROW_OF, P_LEN, 4, [(10, 11, 12, 13, 14), (20,), (30, 31), (40, 41)], 0, "cpu")
    # row 1 holds 4 response tokens of a 6-wide row: columns 4 and 5 are pads
    assert pk.ids[1].tolist() == [30, 31, 40, 41, 0, 0]
    kp = pk.prompt_index.shape[1]
    for c in (4, 5):
        assert pk.mask[1, 0, c].nonzero().squeeze(-1).tolist() == [kp + c]


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def tiny(request, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from evalharness.tiny import build_tiny

    path = build_tiny("llama", tmp_path_factory.mktemp("m") / "m")
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64, attn_implementation=request.param)


P1, P2, P3 = tuple(range(20, 37)), tuple(range(40, 49)), tuple(range(60, 72))
SEQS = [Seq(P1, tuple(range(100, 109))), Seq(P1, (110, 111, 112)), Seq(P2, (120,)), Seq(P2, tuple(range(130, 137))),
        Seq(P3, (140, 141, 142, 143)), Seq(P3, (150, 151, 152, 153, 154)), Seq(P3, (155, 156))]


@pytest.mark.parametrize("attention_cost", [1.0, 1e9], ids=["one-row", "rows"])
def test_packed_rows_give_the_unpacked_log_probs_and_gradients(tiny, monkeypatch, attention_cost):
    """One row, or (attention priced high) several rows, against one response per row after the same prompt forward
    (equal to float64 rounding) and against one forward of prompt + response per row. The last is looser: the
    model's RMSNorm computes in float32 even in a float64 model, and a prompt shared by k responses takes the sum of
    their k gradients through it once, where the concatenated forward takes each through it on its own row. Eager
    attention's softmax also runs in float32, so there every comparison is to float32 rounding."""
    plans = []
    real_plan, real_rows = packing.plan, scoring._packed_rows
    monkeypatch.setattr(packing, "costs", lambda model: (1e6, attention_cost))
    monkeypatch.setattr(packing, "plan", lambda *a: plans.append(real_plan(*a)) or plans[-1])

    def run(share, pack=True):
        monkeypatch.setattr(scoring, "_packed_rows", real_rows if pack else (lambda *a: None))
        tiny.zero_grad(set_to_none=True)
        fwd = scoring.sequence_logps(tiny, SEQS, 0, share_prompts=share)
        (fwd.summed * torch.arange(1.0, 8.0, dtype=torch.float64)).sum().backward()
        return fwd, [p.grad.clone() for p in tiny.parameters()]

    (packed, g_packed), (rows, g_rows), (plain, g_plain) = run(True), run(True, pack=False), run(False)
    assert packed.shared and len(plans[0]) == (1 if attention_cost == 1.0 else 3)  # three prompt groups
    exact = 1e-9 if tiny.config._attn_implementation == "sdpa" else 1e-5
    for other, grads, tol in ((rows, g_rows, exact), (plain, g_plain, 1e-5)):
        assert torch.allclose(packed.summed, other.summed, atol=exact / 10, rtol=0)
        for a, b in zip(g_packed, grads):
            assert torch.allclose(a, b, atol=tol, rtol=0), (a - b).abs().max()
    # per-token values too, in the one-response-per-row layout the losses read
    per_token = [packed.token_logps[i][packed.mask[i]] for i in range(len(SEQS))]
    assert all(torch.allclose(a, plain.token_logps[i][plain.mask[i]], atol=exact / 10) for i, a in enumerate(per_token))


def test_attention_that_ignores_a_block_mask_or_a_windowed_cache_is_never_packed(tiny):
    from types import SimpleNamespace

    from transformers.cache_utils import DynamicSlidingWindowLayer

    ids = torch.tensor([list(P1), list(P1)])
    cache = tiny(input_ids=ids, use_cache=True).past_key_values
    row_of, p_len = torch.tensor([0, 0, 1, 1]), torch.tensor([4, 3])
    seqs = [Seq((1,) * 4, (10, 11, 12, 13, 14)), Seq((1,) * 4, (20,)), Seq((2,) * 3, (30, 31)), Seq((2,) * 3, (40, 41))]

    class Model:  # what the decision reads of a model: its config and its parameters
        def __init__(self, attn):
            self.config, self.parameters = SimpleNamespace(_attn_implementation=attn), tiny.parameters

    model = Model

    assert scoring._packed_rows(model("sdpa"), cache, row_of, p_len, seqs) is not None
    assert scoring._packed_rows(model("flash_attention_2"), cache, row_of, p_len, seqs) is None
    cache.layers[0] = DynamicSlidingWindowLayer(sliding_window=8)
    assert scoring._packed_rows(model("sdpa"), cache, row_of, p_len, seqs) is None

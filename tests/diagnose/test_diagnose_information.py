"""Information difference |f+ - f-| and gradient difference ||P+_t - P-_t||_p (seed 000 Def. 4.1, 4.2) on cases whose
answer is known."""

from __future__ import annotations

import pytest

from evalharness.data.types import PreferencePair
from evalharness.diagnose.common import Encoding, encode_pairs, load_lm
from evalharness.diagnose.information import differences, random_copy, rows_of
from tests.diagnose.handmade import Bigram, log_rows, pair

ROWS = log_rows((0.1, 0.2, 0.3, 0.4), (0.4, 0.3, 0.2, 0.1), (0.25,) * 4, (0.25,) * 4)


def test_hand_made_pair_information_and_gradient_difference():
    # x+ = 0, y+ = (2, 3);  x- = 1, y- = (2, 2).
    # t=1: P+ = (0.1, 0.2, 0.3, 0.4), P- = (0.4, 0.3, 0.2, 0.1); y+_1 = y-_1 = 2 (literally the same token)
    #      ||P+ - P-||_2 = sqrt(0.09 + 0.01 + 0.01 + 0.09) = sqrt(0.2) = 0.447214;  ||·||_1 = 0.8
    # t=2: both contexts end in token 2 -> the same row -> difference 0; y+_2 = 3 != y-_2 = 2
    # f+ = 0.3·0.25 = 0.075, f- = 0.2·0.25 = 0.05: |f+ - f-| = 0.025
    # per-token form: sqrt(0.075) - sqrt(0.05) = 0.273861 - 0.223607 = 0.050254
    d = differences(Bigram(ROWS), [pair((0,), (2, 3), (1,), (2, 2))], pad=0, p=2)
    assert d.step_t == [1, 2] and d.step_same == [True, False]
    assert d.step_diff == pytest.approx([0.447214, 0.0], abs=1e-6)
    assert d.info_seq == pytest.approx([0.025], abs=1e-7)
    assert d.info_token == pytest.approx([0.050254], abs=1e-6)
    assert differences(Bigram(ROWS), [pair((0,), (2, 3), (1,), (2, 2))], pad=0, p=1).step_diff[0] == pytest.approx(0.8)


def test_summary_rows_split_steps_by_literal_similarity():
    d = differences(Bigram(ROWS), [pair((0,), (2, 3), (1,), (2, 2)), pair((0,), (1,), (0,), (1,), id="q")], 0)
    rows = {r.name: r for r in rows_of(d, ["p", "q"])}
    # steps: (0.447214, same), (0, differ), (0, same: identical pair)  -> same mean 0.223607, differ mean 0
    assert rows["grad_diff/same"].value == pytest.approx(0.447214 / 2, abs=1e-6)
    assert rows["grad_diff/differ"].value == 0.0
    assert rows["literal_same/share"].value == pytest.approx(2 / 3)
    assert rows["info_seq/median"].value == pytest.approx(0.0125, abs=1e-7)  # median of (0.025, 0)


def test_identical_pair_has_zero_differences_on_a_tiny_transformer():
    from evalharness.data import synthetic
    from evalharness.models import load_tokenizer

    tok = load_tokenizer("tiny-llama")
    p = synthetic.pairs(2)
    same = [PreferencePair(e.x_pos, e.y_pos, e.x_pos, e.y_pos, e.id) for e in p]
    pairs, _ = encode_pairs(same + p, tok, Encoding())
    d = differences(load_lm("tiny-llama"), pairs, tok.pad_token_id)
    assert d.info_seq[:2] == [0.0, 0.0] and d.info_token[:2] == [0.0, 0.0]
    first = [x for x, i in zip(d.step_diff, d.step_pair) if i < 2]
    assert len(first) > 50 and max(first) == 0.0 and all(s for s, i in zip(d.step_same, d.step_pair) if i < 2)
    # the real pairs share their prompt: step 1 has identical contexts; later steps do not
    real = [(t, x) for t, x, i in zip(d.step_t, d.step_diff, d.step_pair) if i >= 2]
    assert all(x == 0.0 for t, x in real if t == 1) and max(x for _, x in real) > 1e-3
    assert all(0 < v < 1 for v in d.info_token[2:])


def test_random_copy_has_the_architecture_and_fresh_weights():
    from evalharness.models import model_fingerprint

    model = load_lm("tiny-llama")
    fresh = random_copy(model, seed=1)
    assert type(fresh) is type(model) and fresh.config.vocab_size == model.config.vocab_size
    assert sum(p.numel() for p in fresh.parameters()) == sum(p.numel() for p in model.parameters())
    assert model_fingerprint(fresh) != model_fingerprint(model)
    assert model_fingerprint(random_copy(model, seed=1)) == model_fingerprint(fresh)  # seeded: reproducible

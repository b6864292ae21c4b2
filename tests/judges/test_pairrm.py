"""The PairRM judge on a tiny random checkpoint in the llm-blender/PairRM-hf layout, checked against llm-blender itself."""

from __future__ import annotations

import doctest
import shutil

import pytest
import torch

import judges.pairrm
from evalharness.data import synthetic
from evalharness.data.types import Message
from judges.base import Comparison, JudgeError, build_judge
from judges.pairrm import (
    CANDIDATE_MAX_LENGTH,
    SOURCE_MAX_LENGTH,
    PairRMJudge,
    encode_pairs,
    load_pairrm,
    sigmoid,
)
from judges.pairrm_testing import build_random_pairrm, import_llm_blender

# "▁great", "▁awful", "▁zoo", "▁park" are one token each; a cut must drop the last word, which differs.
LONG_SOURCE = "great " * 3000 + "zoo"
LONG_ANSWER = "awful " * 1000 + "park"
# Small budgets keep the forward passes short; the default 1224/412 budget is checked on its own below.
BUDGET = dict(source_max_length=48, candidate_max_length=24)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_random_pairrm(tmp_path_factory.mktemp("pairrm") / "seed0", seed=0)


@pytest.fixture(scope="module")
def judge(checkpoint):
    return PairRMJudge(str(checkpoint), batch_size=3, **BUDGET)


@pytest.fixture(scope="module")
def blender():
    try:
        return import_llm_blender()
    except ImportError as e:
        pytest.skip(f"llm-blender is not importable ({e}); `pip install llm-blender` to check parity with it")


def items(n: int = 7) -> list[Comparison]:
    pairs = synthetic.pairs(n, seed=3)
    out = [Comparison(tuple(p.x_pos), p.y_pos, p.y_neg) for p in pairs]
    out[1] = Comparison(out[1].messages, out[1].first + " " + out[1].first, out[1].second)  # unequal lengths: padding
    out.append(Comparison((Message("user", "hello!"),), "hi!", "bye"))
    out.append(Comparison((Message("user", LONG_SOURCE),), LONG_ANSWER, "good " * 700))  # every part cut to budget
    return out


def test_checkpoint_loads_with_no_missing_or_unexpected_keys(checkpoint):
    model = load_pairrm(checkpoint)  # raises JudgeError listing keys otherwise
    keys = set(model.state_dict())
    assert {"head_layer.1.weight", "head_layer.1.bias", "head_layer.4.weight", "head_layer.4.bias"} <= keys
    assert all(k.startswith(("pretrained_model.", "head_layer.")) for k in keys)
    assert not model.training


def test_a_checkpoint_with_an_extra_key_is_refused(checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad"
    shutil.copytree(checkpoint, bad)
    weights = load_file(bad / "model.safetensors")
    weights["head_layer.7.weight"] = torch.zeros(1)
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(JudgeError, match="head_layer.7.weight"):
        load_pairrm(bad)


def test_parity_with_llm_blender(checkpoint, judge, blender):
    """Same ids as llm-blender's tokenize_pair and, through its DebertaV2PairRM on the same weights, the same logits."""
    blender_cls, tokenize_pair = blender
    theirs, info = blender_cls.from_pretrained(checkpoint, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]  # the layout, seen from their side
    theirs.eval()
    cs = items()
    sources = [judges.pairrm.pairrm_source(c.messages) for c in cs]
    firsts, seconds = [c.first for c in cs], [c.second for c in cs]
    mine = judge.encode(cs)
    got = judge.order_logits(cs)
    for k, (a, b) in enumerate(((firsts, seconds), (seconds, firsts))):  # order [A,B], then [B,A]
        enc = tokenize_pair(judge.tokenizer, sources, a, b, BUDGET["source_max_length"], BUDGET["candidate_max_length"])
        for i, (row, mask) in enumerate(zip(enc["input_ids"], enc["attention_mask"])):
            assert list(mine[i][k].ids) == row[mask.bool()].tolist(), f"comparison {i}, order {k}"
        with torch.no_grad():
            expected = theirs(**enc).logits.tolist()
        assert [g[k] for g in got] == pytest.approx(expected, abs=1e-5)
    assert max(abs(g[0]) for g in got) > 0.05  # the logits are not all ~0, so the tolerance above means something
    assert mine[-1][0].truncated and not mine[0][0].truncated
    # At the default budget too (ids only: a 2048-token forward is slow on CPU)
    default = encode_pairs(judge.tokenizer, sources, firsts, seconds)
    enc = tokenize_pair(judge.tokenizer, sources, firsts, seconds)
    assert enc["input_ids"].shape[1] == SOURCE_MAX_LENGTH + 2 * CANDIDATE_MAX_LENGTH
    for (ab, _), row, mask in zip(default, enc["input_ids"], enc["attention_mask"]):
        assert list(ab.ids) == row[mask.bool()].tolist()


def test_swapping_the_responses_flips_the_verdict(judge):
    cs = items()
    swapped = [Comparison(c.messages, c.second, c.first) for c in cs]
    for v, w, (ab, ba) in zip(judge.compare(cs), judge.compare(swapped), judge.order_logits(cs)):
        assert v.winner in ("first", "second") and abs(v.probability - 0.5) > 1e-4
        assert w.winner == {"first": "second", "second": "first"}[v.winner]
        assert w.probability == pytest.approx(1 - v.probability, abs=1e-6)
        # P(first) = σ((l[A,B] - l[B,A]) / 2), both order logits kept in raw
        assert v.probability == pytest.approx(sigmoid((ab - ba) / 2), abs=1e-12)
        assert v.raw == f"[A,B]={ab!r} [B,A]={ba!r}"


def test_verdicts_do_not_depend_on_the_batch(checkpoint, judge):
    cs = items()
    one_by_one = PairRMJudge(str(checkpoint), batch_size=1, **BUDGET).order_logits(cs)
    batched = judge.order_logits(cs)
    for a, b in zip(one_by_one, batched):
        assert a == pytest.approx(b, abs=1e-5)


def test_truncation_keeps_the_token_budget(checkpoint, judge):
    tok = judge.tokenizer
    cls, sep = tok.cls_token_id, tok.sep_token_id
    great, awful, zoo, park = tok.convert_tokens_to_ids(["▁great", "▁awful", "▁zoo", "▁park"])
    (ab, ba), = encode_pairs(tok, [LONG_SOURCE], [LONG_ANSWER], ["awful " * 20])
    # source part: [CLS] <|source|> great×1221 [SEP] = 1224 tokens, the cap; each candidate then gets
    # (2048 - 1224) // 2 = 412: [CLS] <|candidate1|> awful×409 [SEP]; the short one keeps its 20 + 3.
    assert (SOURCE_MAX_LENGTH, CANDIDATE_MAX_LENGTH) == (1224, 412)
    assert ab.ids[:3] == (cls, ab.ids[1], great) and ab.ids[1223] == sep and ab.ids.count(great) == 1221
    assert ab.ids[1224] == cls and ab.ids[1224 + 411] == sep and ab.ids.count(awful) == 409 + 20
    assert len(ab.ids) == 1224 + 412 + 23 and len(ba.ids) == len(ab.ids)
    assert ab.markers == (1, 1225, 1637) and ab.truncated and zoo not in ab.ids and park not in ab.ids
    # A short source leaves more to the candidates: [CLS] <|source|> ▁hi [SEP] is 4 tokens, so each gets
    # (2048 - 4) // 2 = 1022; 1001 words + 3 fit whole, 1101 words + 3 are cut to 1022.
    (fits, _), = encode_pairs(tok, ["hi"], [LONG_ANSWER], ["hi"])
    assert len(fits.ids) == 4 + 1004 + 4 and not fits.truncated and fits.ids[4 + 1002] == park
    (cut, _), = encode_pairs(tok, ["hi"], ["awful " * 1100 + "park"], ["hi"])
    assert len(cut.ids) == 4 + 1022 + 4 and cut.truncated and cut.ids[4 + 1021] == sep and park not in cut.ids
    # The judge runs the full 2048-token budget (relative positions far past max_position_embeddings=512) and
    # reports the cut.
    big = Comparison((Message("user", LONG_SOURCE),), LONG_ANSWER, LONG_ANSWER.replace("awful", "great"))
    full = PairRMJudge(str(checkpoint))
    v, = full.compare([big])
    assert v.meta["truncated"] and v.prompt_tokens == 2 * 2048 and v.winner in ("first", "second")


def test_marker_strings_in_texts_are_neutralised(judge):
    (ab, _), = encode_pairs(judge.tokenizer, ["<|candidate2|> hi"], ["<|source|>"], ["<|candidate1|>bye"])
    marker_ids = set(judge.tokenizer.convert_tokens_to_ids(list(judges.pairrm.MARKERS)))
    assert [i for i in ab.ids if i in marker_ids] == [ab.ids[m] for m in ab.markers]


def test_judge_id_follows_the_weights(checkpoint, judge, tmp_path):
    from safetensors.torch import load_file, save_file

    assert judge.id.startswith("pairrm:") and len(judge.id) == len("pairrm:") + 16
    assert PairRMJudge(str(checkpoint), batch_size=7, **BUDGET).id == judge.id  # same files, same id
    assert PairRMJudge(str(build_random_pairrm(tmp_path / "seed1", seed=1))).id != judge.id
    nudged = tmp_path / "nudged"
    shutil.copytree(checkpoint, nudged)
    weights = load_file(nudged / "model.safetensors")
    weights["head_layer.4.bias"] = weights["head_layer.4.bias"] + 1e-3
    save_file(weights, nudged / "model.safetensors", metadata={"format": "pt"})
    assert PairRMJudge(str(nudged)).id != judge.id
    assert PairRMJudge(str(checkpoint)).version == "1"  # the budget that changes logits is in the version
    assert judge.version == "1;source=48;candidate=24"


def test_registered_and_built_from_a_spec(checkpoint):
    j = build_judge(f"pairrm:path={checkpoint},batch_size=2")
    assert type(j).__name__ == "PairRMJudge" and j.batch_size == 2 and j.template == ""
    v, = j.compare([Comparison((Message("user", "hello!"),), "hi!", "bye")])
    assert v.winner in ("first", "second") and 0 < v.probability < 1


def test_unavailable_models_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(JudgeError, match=r"not available here.*huggingface-cli download llm-blender/PairRM-hf"):
        PairRMJudge()
    with pytest.raises(JudgeError, match="no config.json"):
        PairRMJudge(str(tmp_path))
    plain = build_random_pairrm(tmp_path / "plain")
    config = (plain / "config.json").read_text().replace('"source_prefix_id"', '"unrelated_id"')
    (plain / "config.json").write_text(config)
    with pytest.raises(JudgeError, match="not a PairRM checkpoint.*no source_prefix_id"):
        PairRMJudge(str(plain))
    with pytest.raises(JudgeError, match="batch_size"):
        PairRMJudge(str(tmp_path), batch_size=0)


def test_no_comparisons_no_work(judge):
    assert judge.compare([]) == [] and judge.encode([]) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_logits(checkpoint, judge):
    cs = items()
    on_gpu = PairRMJudge(str(checkpoint), batch_size=3, device="cuda", **BUDGET).order_logits(cs)
    for a, b in zip(on_gpu, judge.order_logits(cs)):
        assert a == pytest.approx(b, abs=1e-4)


def test_doctests():
    assert doctest.testmod(judges.pairrm).failed == 0

"""The reward-model judge on a reward model the project trains itself (bradley-terry on the synthetic task)."""

import math

import pytest
import torch

from evalharness.config import DataConfig, TrainConfig
from evalharness.data.types import Message
from evalharness.store import Store
from judges.base import Comparison, JudgeError, build_judge
from trainers.loop import train

X = (Message("user", "Write a short review of the park."),)


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rm")
    cfg = TrainConfig(loss="bradley-terry", model="tiny-llama", data=DataConfig(name="synthetic", limit=16,
                      eval_fraction=0.0), max_steps=2, batch_size=2, lr=1e-3, max_length=96, max_prompt_length=48,
                      out=str(tmp / "out"), seed=0)
    [result] = train(cfg, Store(str(tmp / "s.duckdb")), progress=False)
    return result.checkpoint


def test_scores_equal_the_classifier_output_on_the_training_format(reward_model):
    from evalharness.models import load_reward_model, load_tokenizer
    from evalharness.scoring import Encoder, sequence_scores

    judge = build_judge(f"reward-model:path={reward_model},batch_size=2")
    texts = ["I visited the park: the staff was great.", "awful", "the place was lovely, and the wait was slow."]
    got = judge.score([(X, t) for t in texts])
    # Independently: the classifier's output at each sequence's last token, one sequence at a time (no padding).
    model = load_reward_model(reward_model).eval()
    enc = Encoder(load_tokenizer(reward_model), "auto", 1024, 768)
    with torch.no_grad():
        want = [sequence_scores(model, [enc.seq(X, t)], 0)[0].item() for t in texts]
    assert got == pytest.approx(want, abs=1e-5)
    # The pairwise verdict is the score difference: P(first) = sigmoid(r1 - r2), and swapping gives 1 - p.
    [v, w] = judge.compare([Comparison(X, texts[0], texts[1]), Comparison(X, texts[1], texts[0])])
    assert v.probability == pytest.approx(1 / (1 + math.exp(-(want[0] - want[1]))), abs=1e-5)
    assert w.probability == pytest.approx(1 - v.probability, abs=1e-6)
    assert {v.winner, w.winner} == {"first", "second"}


def test_judge_id_names_the_weights_and_bad_paths_are_clear(reward_model, tmp_path):
    judge = build_judge(f"reward-model:path={reward_model}")
    assert judge.id.startswith("reward-model:") and len(judge.id) > len("reward-model:") + 8
    with pytest.raises(JudgeError, match="needs a model"):
        build_judge("reward-model")
    with pytest.raises(JudgeError, match="not a reward model"):
        build_judge("reward-model:path=tiny-llama")
    with pytest.raises(JudgeError, match="did you mean 'batch_size'"):
        build_judge(f"reward-model:path={reward_model},batchsize=2")
    with pytest.raises(JudgeError, match="is not a int"):
        build_judge(f"reward-model:path={reward_model},batch_size=many")


def test_reward_model_judge_through_the_runner_scores_each_text_once(reward_model, tmp_path):
    from evalharness.judging import JudgeConfig, judge
    from tests.test_judging import seed_store

    store = seed_store(tmp_path / "s.duckdb", {"a": ["great", "lovely", "slow", "fine"],
                                               "b": ["awful", "rude", "clean", "fine"]})
    spec = f"reward-model:path={reward_model}"
    report = judge(JudgeConfig(spec, ["a"], baseline="b", prompts="set"), store, progress=False)
    # 4 prompts x 2 texts, but p4's two texts are both "fine": 7 distinct (conversation, text) scores
    assert (report.judgments, report.scored) == (8, 7)
    with store.connect() as con:
        rows = con.execute("SELECT prompt_id, swapped, verdict, probability, raw FROM judgments "
                           "ORDER BY prompt_id, swapped").fetchall()
        scores = con.execute("SELECT count(*) FROM scores").fetchone()[0]
    assert scores == 7
    for (pid, s0, v0, p0, _), (_, s1, v1, p1, _) in zip(rows[::2], rows[1::2]):
        # a pointwise judge has no position bias: the two orders are mirror images
        assert (s0, s1) == (False, True) and p0 == pytest.approx(1 - p1, abs=1e-9)
        assert {v0, v1} == ({"tie"} if pid == "p4" else {"first", "second"})
    assert "7 responses scored" in report.line()

"""task-llama (the synthetic task's word-level model) and the synthetic task's knobs, against hand-computed values."""

import random
import statistics

import pytest

from evalharness.data import synthetic
from evalharness.data.loaders import DatasetSpec, load
from evalharness.data.types import DataError


@pytest.fixture(scope="module")
def tok():
    from evalharness.task_model import build_tokenizer

    return build_tokenizer()


def _chat(prompt, answer):
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def test_every_task_text_is_known_words_and_decodes_back_exactly(tok):
    pairs = synthetic.pairs(300, noise=0.3, near_duplicates=0.3)
    texts = [tok.apply_chat_template(_chat(p.x_neg[0].content, y), tokenize=False)
             for p in pairs for y in (p.y_pos, p.y_neg)]
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
    # One token per word, the space travelling with the word after it: the review is 19 tokens, not 60 bytes.
    y = "I visited the zoo: the staff was great, and the price was slow."
    pieces = tok.convert_ids_to_tokens(tok(y, add_special_tokens=False)["input_ids"])
    assert pieces == ["I", " visited", " the", " zoo", ":", " the", " staff", " was", " great", ",", " and", " the",
                      " price", " was", " slow", "."]
    assert tok.decode(tok(y)["input_ids"], skip_special_tokens=True) == y


def test_a_word_outside_the_task_is_one_unk(tok):
    pieces = tok.convert_ids_to_tokens(tok("the zoo was purple!", add_special_tokens=False)["input_ids"])
    assert pieces == ["the", " zoo", " was", "<unk>", "<unk>"]


def test_task_llama_resolves_into_a_versioned_cache_entry_and_builds_the_same_weights(tmp_path):
    from evalharness.models import load_causal_lm, model_fingerprint, resolve_model
    from evalharness.task_model import TASK_VERSION, build_task_model

    path = resolve_model("task-llama")
    assert path.name == f"task-llama-v{TASK_VERSION}"
    again = build_task_model(tmp_path / "again")
    assert model_fingerprint(str(path)) == model_fingerprint(str(again))
    model = load_causal_lm("task-llama")
    assert 200_000 < sum(p.numel() for p in model.parameters()) < 3_000_000
    assert model_fingerprint(str(build_task_model(tmp_path / "other", seed=1))) != model_fingerprint(str(path))


def test_task_llama_trains_sft_and_generates_task_text(tmp_path):
    import torch

    from evalharness.config import DataConfig, TrainConfig
    from evalharness.models import load_causal_lm, load_tokenizer, render_prompt
    from evalharness.store import Store
    from trainers.loop import train

    data = DataConfig(name="synthetic:noise=0.5", limit=64, eval_fraction=0.0)
    cfg = TrainConfig(loss="sft", model="task-llama", data=data, max_steps=3, batch_size=8, lr=3e-3, max_length=64,
                      max_prompt_length=24, out=str(tmp_path / "sft"), seed=0)
    [result] = train(cfg, Store(str(tmp_path / "s.duckdb")), progress=False)
    assert result.status == "finished" and result.steps == 3 and result.truncated == 0
    tok = load_tokenizer(result.checkpoint, padding_side="left")
    prompt = render_prompt(tok, synthetic.prompt_for("the zoo"))
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    torch.manual_seed(0)
    out = load_causal_lm(result.checkpoint).generate(ids, do_sample=True, max_new_tokens=8, pad_token_id=0)
    text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert tok(text, add_special_tokens=False)["input_ids"] == [t for t in out[0, ids.shape[1]:].tolist() if t > 3]


# --------------------------------------------------------------------------------------------------------- knobs


def test_the_length_component_adds_its_weight_times_the_words():
    y = "I visited the zoo: the staff was great."  # i visited the zoo the staff was great: 8 words, sentiment 1
    assert synthetic.oracle_reward(y) == 1.0
    assert synthetic.oracle_reward(y, length_weight=0.1) == pytest.approx(1.0 + 0.8)
    assert synthetic.oracle_reward("the staff was slow", length_weight=-0.05) == pytest.approx(-1.0 - 0.2)


def test_length_weight_relabels_the_pairs_a_longer_review_can_win():
    a = "I visited the zoo: the staff was great, and the price was slow, and the size was poor."
    b = "I visited the zoo: the staff was great, and the price was slow."
    # a: (1 - 2) / 3 + 0.1 * 18 words = 1.4667; b: 0 + 0.1 * 13 words = 1.3. Sentiment alone prefers b.
    assert synthetic.oracle_reward(a, 0.1) == pytest.approx(-1 / 3 + 1.8)
    assert synthetic.oracle_reward(b, 0.1) == pytest.approx(1.3)
    long = synthetic.pairs(200, length_weight=0.1)
    assert all(p.meta["gold_chosen"] == synthetic.oracle_reward(p.y_pos, 0.1) > synthetic.oracle_reward(p.y_neg, 0.1)
               for p in long)
    against = [p for p in long if synthetic.oracle_reward(p.y_pos) < synthetic.oracle_reward(p.y_neg)]
    assert against and all(len(p.y_pos.split()) > len(p.y_neg.split()) for p in against)


def test_the_oracle_judge_scores_with_the_same_length_component():
    from judges.base import Comparison, JudgeError, build_judge

    x = synthetic.prompt_for("the zoo")
    a = "I visited the zoo: the staff was great, and the price was slow, and the size was poor."
    b = "I visited the zoo: the staff was great, and the price was slow."
    plain, long = build_judge("oracle"), build_judge("oracle:length_weight=0.1")
    assert (plain.id, long.id) == ("oracle", "oracle+length0.1")  # stored apart: one cache key per reward
    assert plain.score([(x, a)]) == [-1 / 3]
    assert long.score([(x, a), (x, b)]) == pytest.approx([-1 / 3 + 1.8, 1.3])
    assert plain.compare([Comparison(x, a, b)])[0].winner == "second"
    assert long.compare([Comparison(x, a, b)])[0].winner == "first"
    with pytest.raises(JudgeError, match="length_weight must be in"):
        build_judge("oracle:length_weight=nan")


def test_label_noise_flips_exactly_the_pairs_its_own_stream_draws():
    plain, noisy = synthetic.pairs(400), synthetic.pairs(400, noise=0.25)
    draws = random.Random("pair-knobs:0")
    expected = [draws.random() < 0.25 for _ in range(400)]  # one draw per pair, nothing else reads the stream
    flipped = [bool(p.meta.get("flipped")) for p in noisy]
    assert flipped == expected and 70 < sum(flipped) < 130
    for a, b, f in zip(plain, noisy, flipped):
        assert (b.y_pos, b.y_neg) == ((a.y_neg, a.y_pos) if f else (a.y_pos, a.y_neg))
        assert (b.meta["gold_chosen"] < b.meta["gold_rejected"]) == f
        assert (b.id == a.id) != f


def test_noise_one_half_gives_sft_data_with_the_mixed_sentiment():
    chosen = [synthetic.oracle_reward(p.y_pos) for p in load(DatasetSpec("synthetic")).examples]
    mixed = [synthetic.oracle_reward(p.y_pos) for p in load(DatasetSpec("synthetic:noise=0.5")).examples]
    assert statistics.mean(chosen) > 0.5  # the default's y+ is the better review: SFT on it learns to praise
    assert abs(statistics.mean(mixed)) < 0.15


def test_near_duplicates_are_one_response_after_two_nearly_equal_prompts():
    plain, dup = synthetic.pairs(300), synthetic.pairs(300, near_duplicates=0.5)
    draws = random.Random("pair-knobs:0")
    expected = []
    for _ in range(300):
        hit = draws.random() < 0.5
        expected.append(hit)
        if hit:
            draws.choice(synthetic.ITEMS[:-1])  # the other item: a choice among the 31 others takes one draw
    assert [bool(p.meta.get("near_duplicate")) for p in dup] == expected
    for a, b in zip(plain, dup):
        if b.meta.get("near_duplicate"):
            assert b.y_pos == b.y_neg == a.y_pos and b.x_pos == a.x_pos and b.x_neg != b.x_pos
            assert b.x_neg[0].content.startswith("Write a short review of ")
            assert b.meta["gold_chosen"] == b.meta["gold_rejected"]
        else:
            assert b == a


def test_reward_weighted_k_samples_are_a_dataset_with_options():
    [ex, *_] = load(DatasetSpec("synthetic-scored:k=3,length_weight=0.1", limit=5)).examples
    assert len(ex.completions) == 3
    assert ex.rewards == tuple(synthetic.oracle_reward(y, 0.1) for y in ex.completions)


@pytest.mark.parametrize("name, message", [
    ("synthetic:nois=0.1", "no option 'nois'; did you mean 'noise'?"),
    ("synthetic:noise=1.5", "field 'noise': 1.5 is outside [0.0, 1.0]"),
    ("synthetic:noise=nan", "outside"),
    ("synthetic-scored:k=two", "field 'k': 'two' is not int"),
    ("synthetic:noise", "'noise' is not key=value"),
    ("jsonl:noise=0.1", "'jsonl' takes no options after ':'"),
])
def test_bad_options_are_one_line(name, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace("?", r"\?").replace("[", r"\[")):
        load(DatasetSpec(name))


# ------------------------------------------------------------------------------------------- SFT shared by experiments

SFT_ONLY = """
name = "{name}"
[[runs]]
name = "sft"
loss = "sft"
model = "tiny-llama"
max_steps = 1
batch_size = 2
max_length = 48
max_prompt_length = 24
data = {{ name = "synthetic:noise=0.5", limit = 8, eval_fraction = 0.0 }}

[generate]
limit = 1
n = 1
max_new_tokens = 2
backend = "hf"

[judge]
judges = ["oracle"]
"""


def test_two_experiments_with_the_same_sft_train_it_once(tmp_path, monkeypatch):
    import trainers.loop
    from evalharness.experiment import Runner, load_experiment
    from evalharness.store import Store

    store = Store(str(tmp_path / "s.duckdb"))
    first, second = [], []
    (tmp_path / "a.toml").write_text(SFT_ONLY.format(name="a"))
    (tmp_path / "b.toml").write_text(SFT_ONLY.format(name="b"))
    Runner(load_experiment(tmp_path / "a.toml"), store, progress=False, echo=first.append).run()
    [trained] = [line for line in first if line.startswith("train sft: trained 1 steps (")]
    run_id = trained.split("(")[1][:12]

    def no_training(*args, **kwargs):
        raise AssertionError("the stored SFT run was trained again")

    monkeypatch.setattr(trainers.loop, "prepare", no_training)
    Runner(load_experiment(tmp_path / "b.toml"), store, progress=False, echo=second.append).run()
    assert f"train sft: already trained ({run_id})" in second
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


def test_validate_binds_the_dataset_options_before_anything_runs(tmp_path):
    from evalharness.config import DataConfig, TrainConfig
    from evalharness.training import validate_config

    ok = TrainConfig(loss="sft", model="task-llama", data=DataConfig(name="synthetic:noise=0.5"))
    assert validate_config(ok)[-1] == "ok"
    bad = TrainConfig(loss="sft", model="task-llama", data=DataConfig(name="synthetic:noise=0.5,lenght_weight=1"))
    with pytest.raises(DataError, match="no option 'lenght_weight'; did you mean 'length_weight'"):
        validate_config(bad)

"""Statistical metrics: hand-computed values of every formula, and `evaluate` end to end on a tiny trained DPO run."""

import json
import math
import weakref

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from evalharness import metrics as M
from evalharness.config import ConfigError, DataConfig, TrainConfig
from evalharness.evaluation import EvalConfig, evaluate
from evalharness.evaluation.pairs import score_seqs
from evalharness.scoring import Seq
from evalharness.stats import resample_counts
from evalharness.store import Store

VOCAB = 259  # the tiny tokenizer: 3 special tokens + 256 bytes


_DIRECT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(seq, temperature): logp}


def _direct_logp(model, seq: Seq, temperature: float = 1.0) -> float:
    """Σ log π(y_t | x, y_<t) from one unpadded forward and a plain loop over the response positions."""
    memo = _DIRECT.setdefault(model, {})
    if (seq, temperature) not in memo:
        memo[seq, temperature] = _direct_logp_uncached(model, seq, temperature)
    return memo[seq, temperature]


def _direct_logp_uncached(model, seq: Seq, temperature: float) -> float:
    ids = torch.tensor(list(seq.prompt) + list(seq.response))
    with torch.no_grad():
        logits = model(input_ids=ids[None]).logits[0].double() / temperature
    # position t - 1 predicts token t; the response tokens are t = len(prompt) .. len(ids) - 1
    t = torch.arange(len(seq.prompt), len(ids))
    return torch.log_softmax(logits[t - 1], -1)[torch.arange(len(t)), ids[t]].sum().item()


def _rows(store, where="1=1"):
    with store.connect() as con:
        cur = con.execute(f"SELECT * FROM metrics WHERE {where} ORDER BY metric")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


# ---------------------------------------------------------------------------------------------- formulas by hand


def test_agility_forms_perplexity_and_logp_margin_on_hand_made_log_probs():
    lp_pos, t_pos = [-2.0, -6.0], [2, 3]
    lp_neg, t_neg = [-4.0, -3.0], [2, 1]
    est = M.pair_metrics(lp_pos, t_pos, lp_neg, t_neg, resamples=200, seed=0)
    # f = exp(lp / T): f+ = (e^-1, e^-2), f- = (e^-2, e^-3); agility = mean(e^-1 - e^-2, e^-2 - e^-3)
    #   = mean(0.232544, 0.085548) = 0.159046
    assert est["agility"].value == pytest.approx(((math.exp(-1) - math.exp(-2)) + (math.exp(-2) - math.exp(-3))) / 2)
    assert est["agility"].value == pytest.approx(0.159046, abs=1e-6)
    # sequence probabilities: mean(e^-2 - e^-4, e^-6 - e^-3) = mean(0.117019, -0.047309) = 0.034855
    assert est["agility_seqprob"].value == pytest.approx(0.034855, abs=1e-6)
    assert est["agility_seqprob"].note == ""
    # lp+ - lp- = (2, -3) -> -0.5; se = sd(2, -3)/sqrt(2) = 3.5355/1.4142 = 2.5
    assert est["logp_margin"].value == -0.5 and est["logp_margin"].se == pytest.approx(2.5)
    # token-weighted perplexity: exp(-(-2 - 6) / (2 + 3)) = e^1.6 = 4.953032
    assert est["perplexity"].value == pytest.approx(math.exp(1.6)) and est["perplexity"].n == 2
    # delta method: R = -1.6, residuals lp - R T = (1.2, -1.2); sqrt(2.88 / (2 * 1)) / mean(T) = 1.2 / 2.5 = 0.48
    # se = e^1.6 * 0.48 = 2.377455
    assert est["perplexity"].se == pytest.approx(math.exp(1.6) * 0.48)


def test_sequence_probability_underflows_to_zero_and_says_so():
    # exp(-800) and exp(-900) are below float64's smallest subnormal (~4.9e-324): both are exactly 0
    est = M.pair_metrics([-800.0, -1.0], [400, 1], [-900.0, -2.0], [450, 1], resamples=50)
    seqprob = est["agility_seqprob"]
    assert seqprob.value == pytest.approx((0.0 + (math.exp(-1) - math.exp(-2))) / 2)
    assert seqprob.note == "2 of 4 sequence probabilities underflow to 0 in float64"
    # the per-token form does not underflow: exp(-800/400) - exp(-900/450) = e^-2 - e^-2 = 0 for the long pair
    assert est["agility"].value == pytest.approx((0.0 + (math.exp(-1) - math.exp(-2))) / 2)


def test_implicit_reward_margin_and_accuracy_on_hand_made_numbers():
    policy_pos, ref_pos = [-10.0, -12.0, -9.0], [-11.0, -11.0, -9.0]
    policy_neg, ref_neg = [-14.0, -10.0, -8.0], [-13.0, -12.0, -8.0]
    h = M.log_ratio_margins(policy_pos, ref_pos, policy_neg, ref_neg)
    # h = (-10+11) - (-14+13) = 2;  (-12+11) - (-10+12) = -3;  (-9+9) - (-8+8) = 0
    assert h.tolist() == [2.0, -3.0, 0.0]
    est = M.reward_metrics(h, resamples=100)
    assert est["margin"].value == pytest.approx((2 - 3 + 0) / 3)
    # h > 0 only for the first pair: a tie (h = 0) is not a correct ranking
    assert est["accuracy"].value == pytest.approx(1 / 3)
    # se = sd(1, 0, 0)/sqrt(3) = sqrt(1/3)/sqrt(3) = 1/3
    assert est["accuracy"].se == pytest.approx(1 / 3)


def test_monte_carlo_kl_per_prompt_then_averaged():
    units = ["p1", "p1", "p2", "p2"]
    policy, reference, tokens = [-3.0, -5.0, -2.0, -4.0], [-4.0, -5.5, -1.0, -6.0], [2, 3, 1, 4]
    est = M.kl_metrics(units, policy, reference, tokens, resamples=100)
    # p1: diffs (1, 0.5) -> 0.75, per token 1.5/5 = 0.3;  p2: diffs (-1, 2) -> 0.5, per token 1/5 = 0.2
    assert est["kl"].value == pytest.approx(0.625) and est["kl"].n == 2
    assert est["kl_per_token"].value == pytest.approx(0.25)
    # forward KL on reference samples: mean over prompts of (1/M) Σ [lpref - lpπ]; p1: (1 + 2)/2, p2: -1 -> 0.25
    fwd = M.forward_kl(["p1", "p1", "p2"], [-2.0, -3.0, -4.0], [-3.0, -5.0, -3.0], resamples=100)
    assert fwd.value == pytest.approx(0.25) and fwd.n == 2


def test_correlations_by_hand_and_against_scipy():
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 5.0]
    # dx = (-2,-1,0,1,2), dy = (-1,-2,1,0,2): Σdxdy = 8, Σdx² = Σdy² = 10 -> r = 0.8; no ties, so Spearman = 0.8
    assert M.correlation("margin_pearson", x, y, 0).value == pytest.approx(0.8)
    assert M.correlation("margin_spearman", x, y, 0).value == pytest.approx(0.8)
    # of the 10 pairs, (1,2) and (3,4) are discordant: tau = (8 - 2) / 10
    assert M.correlation("margin_kendall", x, y, 0).value == pytest.approx(0.6)
    # ties: pairs (1,2) tied in x, (2,3) tied in y, the other 4 concordant: tau-b = 4 / sqrt((6-1)(6-1)) = 0.8
    assert M.correlation("margin_kendall", [1, 1, 2, 3], [1, 2, 2, 3], 0).value == pytest.approx(0.8)
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    a = rng.integers(0, 6, 60).astype(float)
    b = a + rng.integers(0, 5, 60)
    for kind, peer in (("margin_pearson", stats.pearsonr), ("margin_spearman", stats.spearmanr),
                       ("margin_kendall", stats.kendalltau)):
        assert M.correlation(kind, a, b, 0).value == pytest.approx(peer(a, b)[0], abs=1e-12)
    # one bootstrap resample computed through count weights equals the statistic of the explicit resample
    w = next(resample_counts(60, 3, seed=9))
    idx = np.repeat(np.arange(60), w[1].astype(int))
    for kind, peer in (("margin_spearman", stats.spearmanr), ("margin_kendall", stats.kendalltau)):
        assert M._CORRELATION_FNS[kind](w[1:2], a, b)[0] == pytest.approx(peer(a[idx], b[idx])[0], abs=1e-12)


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible_with_its_seed():
    values = np.random.default_rng(0).normal(1.0, 2.0, 80)
    a = M.mean_estimate(values, resamples=1000, seed=7)
    b = M.mean_estimate(values, resamples=1000, seed=7)
    c = M.mean_estimate(values, resamples=1000, seed=8)
    assert a == b and (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.ci_low < a.value < a.ci_high
    assert a.se == pytest.approx(values.std(ddof=1) / math.sqrt(80))
    # the percentile interval of a mean is close to ±1.96 se for n = 80
    assert (a.ci_high - a.ci_low) / (2 * 1.96 * a.se) == pytest.approx(1.0, abs=0.1)
    for w in resample_counts(80, 1000, seed=7):
        assert (w.sum(1) == 80).all()
    none = M.mean_estimate(values, resamples=0)
    assert none.ci_low is None and none.ci_high is None and none.se is not None


# ------------------------------------------------------------------------------------------------ tiny models


@pytest.fixture(scope="module")
def llama():
    from evalharness.models import load_causal_lm, resolve_model

    return load_causal_lm(resolve_model("tiny-llama")).eval()


def test_log_probs_equal_a_direct_per_token_computation(llama):
    seqs = [Seq((1, 40, 41, 42), (50, 51, 2)), Seq((1, 60), (70, 71, 72, 73, 74, 2)), Seq((1, 7, 8, 9, 10), (11,))]
    for temperature in (1.0, 0.7):
        lp, tokens = score_seqs(llama, seqs, pad=0, batch_size=1, temperature=temperature)  # padded batches of 2
        assert tokens.tolist() == [3.0, 6.0, 1.0]
        direct = [_direct_logp(llama, s, temperature) for s in seqs]
        assert lp == pytest.approx(direct, abs=1e-4)


def test_a_model_with_uniform_logits_has_perplexity_equal_to_the_vocabulary_size(tmp_path):
    from transformers import AutoModelForCausalLM

    from evalharness.tiny import build_tiny

    path = build_tiny("llama", tmp_path / "uniform")
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit is 0: π(token) = 1/259 everywhere
    model.save_pretrained(path)
    store = Store(str(tmp_path / "s.duckdb"))
    cfg = EvalConfig([str(path)], DataConfig(name="synthetic", limit=60, eval_fraction=0.2), bootstrap=100,
                     max_length=256, max_prompt_length=128, metrics=("perplexity", "agility", "logp_margin"))
    [report] = evaluate(cfg, store, progress=False)
    got = {r.metric: r for r in report.rows}
    # lp = -T log 259 for every sequence, so exp(-Σlp/ΣT) = 259 and f = 1/259 on both sides
    assert got["perplexity"].value == pytest.approx(VOCAB, rel=1e-5)
    assert got["agility"].value == pytest.approx(0.0, abs=1e-9)
    assert got["perplexity"].ci_low == pytest.approx(VOCAB, rel=1e-5)  # every resample has the same ratio
    # logp_margin = -log(259) · mean(T+ - T-), with T from the trainer's own tokenisation
    from evalharness.data.loaders import DatasetSpec, load
    from evalharness.data.split import split_examples
    from evalharness.models import load_tokenizer
    from evalharness.scoring import tokenize

    held = split_examples(load(DatasetSpec("synthetic", limit=60)).examples, 0.2)[1]
    tok = tokenize(held, load_tokenizer(path), "auto", 256, 128)
    dt = np.mean([len(e.chosen.response) - len(e.rejected.response) for e in tok.examples])
    assert got["logp_margin"].value == pytest.approx(-math.log(VOCAB) * dt, abs=1e-3)
    assert got["perplexity"].n == len(held) == len(tok.examples)
    assert report.skipped == {}


def _insert_generations(store, key, rows):
    """rows: (prompt_id, sample, policy_logp, reference_logp, n_tokens)."""
    from evalharness.store import now

    with store.transaction() as con:
        for pid in sorted({r[0] for r in rows}):
            con.execute("INSERT OR IGNORE INTO prompts VALUES (?, 'handmade', ?, '[]', NULL, '{}')", [pid, pid])
        for pid, i, lp, ref, n in rows:
            con.execute(f"INSERT INTO generations VALUES ({', '.join('?' * 22)})",
                        [f"g-{pid}-{i}", key, "m", "m", pid, 1, i, json.dumps({"temperature": 0.7}), 0.7, "hf", "",
                         [1], "", [3] * n, n, "stop", False, lp, [lp / n] * n, "model:ref", ref, now()])


def test_kl_from_hand_made_generation_rows_and_unscored_rows_are_counted(tmp_path):
    from evalharness.models import model_fingerprint, resolve_model

    store = Store(str(tmp_path / "s.duckdb"))
    path = resolve_model("tiny-llama")
    key = "model:" + model_fingerprint(path)
    _insert_generations(store, key, [("p1", 0, -3.0, -4.0, 2), ("p1", 1, -5.0, -5.5, 3),
                                     ("p2", 0, -2.0, -1.0, 1), ("p2", 1, -4.0, -6.0, 4),
                                     ("p2", 2, -4.0, None, 4)])  # not reference-scored
    cfg = EvalConfig([str(path)], metrics=("kl", "kl_per_token", "forward_kl"), bootstrap=100, score_missing=False)
    [report] = evaluate(cfg, store, progress=False)
    got = {r.metric: r for r in report.rows}
    # as in the pure test: p1 (1 + 0.5)/2 = 0.75, p2 (-1 + 2)/2 = 0.5 -> 0.625; per token (0.3 + 0.2)/2 = 0.25
    assert got["kl"].value == pytest.approx(0.625) and got["kl"].n == 2
    assert got["kl_per_token"].value == pytest.approx(0.25)
    assert got["kl"].settings["temperature"] == 0.7 and got["kl"].settings["reference"] == "model:ref"
    assert got["kl"].dataset.startswith("handmade@")
    assert "1 samples without a reference log-prob left out of KL" in report.notes
    assert report.skipped["forward_kl"].startswith("no samples of the reference with the same prompts and sampling")
    stored = _rows(store)
    assert [r["metric"] for r in stored] == ["kl", "kl_per_token"] and stored[0]["value"] == pytest.approx(0.625)
    [again] = evaluate(cfg, store, progress=False)
    assert all(r.cached for r in again.rows) and len(_rows(store)) == 2


# ------------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step tiny-llama DPO run (β = 0.5), with samples of the run and of its reference."""
    from evalharness.generate import GenerateConfig, generate
    from evalharness.generation.base import Sampling
    from trainers.loop import train

    tmp = tmp_path_factory.mktemp("e2e")
    store = Store(str(tmp / "s.duckdb"))
    data = DataConfig(name="synthetic", limit=32, eval_fraction=0.25)
    cfg = TrainConfig(loss="dpo", model="tiny-llama", data=data, max_steps=2, batch_size=2, lr=1e-3, max_length=512,
                      max_prompt_length=384, out=str(tmp / "run"), name="d", params={"beta": 0.5})
    [result] = train(cfg, store, progress=False)
    sampling = Sampling(temperature=0.9, max_new_tokens=10, seed=3)
    generate(GenerateConfig(checkpoints=["d", "tiny-llama"], limit=3, n=2, sampling=sampling, backend="hf",
                            batch_size=8), store, progress=False)
    return store, result, data


def test_evaluate_end_to_end_stores_every_metric_with_its_ci(trained):
    from evalharness.data.loaders import DatasetSpec, load
    from evalharness.data.split import split_examples
    from evalharness.models import load_causal_lm, load_tokenizer, resolve_model
    from evalharness.scoring import tokenize

    store, result, data = trained
    cfg = EvalConfig(["d"], data, bootstrap=300, seed=1)
    with store.connect() as con:
        cached_before = con.execute("SELECT count(*) FROM reference_logps").fetchone()[0]
    [report] = evaluate(cfg, store, progress=False)
    got = {r.metric: r for r in report.rows}
    assert set(got) == set(M.METRICS), report.skipped
    assert report.label == "d:2" and not any(r.cached for r in report.rows)
    stored = {r["metric"]: r for r in _rows(store)}
    assert set(stored) == set(M.METRICS)
    for name, row in stored.items():
        assert row["label"] == "d:2" and row["checkpoint"] == got[name].checkpoint
        assert row["ci_low"] <= row["value"] <= row["ci_high"], name
        assert json.loads(row["settings"])["bootstrap"] == 300

    # held-out metrics: recompute h with direct unpadded forwards of the policy and the reference (tiny-llama)
    held = split_examples(load(DatasetSpec("synthetic", limit=32)).examples, 0.25)[1]
    policy = load_causal_lm(result.checkpoint).eval()
    reference = load_causal_lm(resolve_model("tiny-llama")).eval()
    ex = tokenize(held, load_tokenizer(result.checkpoint), "auto", 512, 384).examples
    h = [(_direct_logp(policy, e.chosen) - _direct_logp(reference, e.chosen))
         - (_direct_logp(policy, e.rejected) - _direct_logp(reference, e.rejected)) for e in ex]
    assert got["margin"].n == len(held) == len(ex)
    assert got["margin"].value == pytest.approx(np.mean(h), abs=1e-4)  # mean(h): no β (LOSSES.md)
    assert min(abs(v) for v in h) > 1e-3  # no margin so close to 0 that float noise could flip its sign
    assert got["accuracy"].value == pytest.approx(np.mean(np.array(h) > 0))
    ppl = math.exp(-sum(_direct_logp(policy, e.chosen) for e in ex) / sum(len(e.chosen.response) for e in ex))
    assert got["perplexity"].value == pytest.approx(ppl, rel=1e-5)
    # the synthetic pairs carry the oracle's rewards: the correlation is with their difference
    assert got["margin_kendall"].settings["scores"].startswith("oracle")
    gold = [p.meta["gold_chosen"] - p.meta["gold_rejected"] for p in held]
    assert got["margin_pearson"].value == pytest.approx(np.corrcoef(h, gold)[0, 1], abs=1e-4)
    # prompt-augmented accuracy: h recomputed with seed 002's prompt p prepended to x± (default separator " ")
    from trainers.losses.selfrefine import SEED_PROMPT

    aug = tokenize(held, load_tokenizer(result.checkpoint), "auto", 512, 384, SEED_PROMPT + " ").examples
    h_p = [(_direct_logp(policy, e.augmented_chosen) - _direct_logp(reference, e.augmented_chosen))
           - (_direct_logp(policy, e.augmented_rejected) - _direct_logp(reference, e.augmented_rejected)) for e in aug]
    assert min(abs(v) for v in h_p) > 1e-3
    assert got["prompt_augmented_accuracy"].value == pytest.approx(np.mean(np.array(h_p) > 0))
    assert got["prompt_augmented_accuracy"].settings["prompt_prefix"] == SEED_PROMPT + " "

    # KL from the stored samples, recomputed here from the rows: per prompt mean of (policy - reference)
    with store.connect() as con:
        rows = con.execute("SELECT prompt_id, policy_logp, reference_logp, checkpoint, prompt_ids, token_ids "
                           "FROM generations").fetchall()
    mine = [r for r in rows if r[3] == got["kl"].checkpoint]
    per_prompt = {}
    for pid, lp, ref, *_ in mine:
        per_prompt.setdefault(pid, []).append(lp - ref)
    assert got["kl"].n == 3 and got["kl"].settings["temperature"] == 0.9
    assert got["kl"].value == pytest.approx(np.mean([np.mean(v) for v in per_prompt.values()]), abs=1e-9)
    # forward KL on the reference's own samples, scored here by the policy at the sampling temperature
    theirs = [r for r in rows if r[3] != got["kl"].checkpoint]
    fwd = {}
    for pid, lp, _, _, prompt_ids, token_ids in theirs:
        fwd.setdefault(pid, []).append(lp - _direct_logp(policy, Seq(tuple(prompt_ids), tuple(token_ids)), 0.9))
    assert got["forward_kl"].value == pytest.approx(np.mean([np.mean(v) for v in fwd.values()]), abs=1e-4)

    # re-running computes nothing and writes nothing
    [again] = evaluate(cfg, store, progress=False)
    assert all(r.cached for r in again.rows) and len(again.rows) == len(M.METRICS)
    assert [(r.metric, r.value) for r in again.rows] == [(r.metric, r.value) for r in report.rows]
    assert len(_rows(store)) == len(M.METRICS)
    # the reference scored each held-out sequence once, into the trainer's cache: y+, y-, and both under p ⊕ x
    distinct = {s for e in aug for s in (e.chosen, e.rejected, e.augmented_chosen, e.augmented_rejected)}
    assert len(distinct) == 4 * len(held)  # nothing truncated at these lengths, so no two sequences coincide
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM reference_logps").fetchone()[0] == cached_before + len(distinct)
    # another bootstrap seed is another setting: the margin is recomputed, with the same value
    [reseeded] = evaluate(EvalConfig(["d"], data, bootstrap=300, seed=2, metrics=("margin",)), store, progress=False)
    [row] = reseeded.rows
    assert not row.cached and row.value == pytest.approx(got["margin"].value, abs=1e-9)


def test_margin_correlation_with_a_judge_reads_its_stored_scores_and_computes_the_rest(trained):
    from evalharness.data.synthetic import oracle_reward
    from evalharness.data.types import as_messages
    from evalharness.evaluation.pairs import load_held_out
    from evalharness.hashing import content_hash
    from evalharness.store import now

    store, _, data = trained
    metrics = ("margin_pearson", "margin_spearman")
    from_meta = {r.metric: r for r in evaluate(EvalConfig(["d"], data, bootstrap=50, metrics=metrics), store,
                                               progress=False)[0].rows}
    [report] = evaluate(EvalConfig(["d"], data, bootstrap=50, metrics=metrics, judge="oracle"), store, progress=False)
    got = {r.metric: r for r in report.rows}
    # the oracle judge's score is the gold reward the synthetic pairs carry: the same correlation, stored apart
    assert got["margin_pearson"].value == pytest.approx(from_meta["margin_pearson"].value, abs=1e-12)
    assert got["margin_pearson"].settings["scores"] == "judge oracle v1"
    assert got["margin_pearson"].metric_id != from_meta["margin_pearson"].metric_id
    # scores stored by the judging runner (its key: "score", id, version, template, conversation, text) are read,
    # not recomputed: stored as minus the oracle's, they flip the correlation's sign
    pairs = load_held_out(data).pairs
    with store.transaction() as con:
        for p in pairs:
            for x, y in ((p.x_pos, p.y_pos), (p.x_neg, p.y_neg)):
                key = content_hash(["score", "oracle", "1", "", [list(m) for m in as_messages(x)], y])
                con.execute("INSERT OR IGNORE INTO scores VALUES (?, 'oracle', '1', NULL, NULL, ?, ?)",
                            [key, -oracle_reward(y), now()])
    [flipped] = evaluate(EvalConfig(["d"], data, bootstrap=50, metrics=metrics, judge="oracle"), store,
                         progress=False)
    assert {r.metric: r for r in flipped.rows}["margin_spearman"].value == pytest.approx(
        -from_meta["margin_spearman"].value, abs=1e-12)


def test_cli_prints_one_line_per_checkpoint(trained, monkeypatch):
    from evalharness.cli import app

    store, _, _ = trained
    result = CliRunner().invoke(app, ["eval", "-c", "d", "--limit", "32", "--eval-fraction", "0.25", "--metrics",
                                      "perplexity,kl", "--bootstrap", "300", "--seed", "1", "--no-progress",
                                      "--store", store.path], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("d:2: perplexity ") and " | kl " in first and "n=3" in first
    assert first.endswith("(all from the store)")  # the same settings as the end-to-end test


@pytest.mark.parametrize("args, message", [
    (["-c", "tiny-llama", "--metrics", "perplexty"], "unknown metric 'perplexty'; did you mean 'perplexity'"),
    (["-c", "tiny-lama"], "unknown model 'tiny-lama'; did you mean 'tiny-llama'"),
    (["-c", "tiny-llama", "--bootstrap", "-5"], "--bootstrap must be an integer in [0, 1000000]"),
    (["-c", "tiny-llama", "--data", "synthetic-scored"], "not preference pairs"),
    (["-c", "tiny-llama", "--limit", "3", "--eval-fraction", "0.01"], "none of its 3 examples is held out"),
    (["-c", "tiny-llama", "--data", "jsonl", "--path", "missing.jsonl"], "missing.jsonl"),
    (["-c", "tiny-llama", "--judge", "oracel"], "did you mean 'oracle'"),
])
def test_bad_input_is_a_one_line_error_with_exit_2_and_nothing_written(tmp_path, monkeypatch, args, message):
    from evalharness.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["eval", *args, "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert list(tmp_path.iterdir()) == []


def test_config_checks_bind_before_anything_runs():
    with pytest.raises(ConfigError, match="at least one checkpoint"):
        EvalConfig([])
    with pytest.raises(ConfigError, match="max_prompt_length must be < max_length"):
        EvalConfig(["x"], max_length=64, max_prompt_length=64)
    assert EvalConfig(["x"], metrics="kl, perplexity,kl").metrics == ("kl", "perplexity")

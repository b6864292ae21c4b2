"""Fuzz: whatever bytes or JSON a file holds, every loader either loads it or raises DataError, never anything else."""

import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalharness.data.loaders import DatasetSpec, Loaded, load
from evalharness.data.types import DataError

PRESETS = {  # preset -> file suffixes it is fed
    "hh-rlhf": (".jsonl", ".jsonl.gz"),
    "jsonl": (".jsonl",),
    "json": (".json",),
    "parquet": (".parquet",),
    "ultrafeedback-binarized": (".jsonl", ".json"),
    "scored-samples": (".jsonl",),
    "causal-dialogue": (".jsonl", ".json"),
}
KEYS = [
    "prompt",
    "chosen",
    "rejected",
    "prompt_rejected",
    "completions",
    "rewards",
    "utterances",
    "dialogues",
    "id",
    "speaker",
    "text",
    "parents",
    "role",
    "content",
    "background",
]
FRAGMENTS = ["\n\nHuman:", "\n\nAssistant:", " ", "a", "", "user", "assistant", "system", "u1", "u2", "\ud800", "é"]

odd_texts = st.one_of(st.text(max_size=12), st.lists(st.sampled_from(FRAGMENTS), max_size=6).map("".join))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True), odd_texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)
records = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)


def mostly(valid):
    """Usually a well-formed value, sometimes any JSON value, so both the happy path and every check get exercised."""
    return weighted(valid, json_values)


def weighted(usual, rare, odds: int = 8):
    """``usual`` ``odds`` times as often as ``rare`` (one_of draws its branches about evenly)."""
    return st.integers(0, odds).flatmap(lambda i: rare if i == 0 else usual)


def fields(**strategies):
    """A record holding each field (well-formed or not) or leaving it out."""
    whole = st.fixed_dictionaries({k: mostly(v) for k, v in strategies.items()})
    return weighted(whole, st.fixed_dictionaries({}, optional={k: mostly(v) for k, v in strategies.items()}))


texts = weighted(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12), odd_texts, odds=4)
ROLE = weighted(st.sampled_from(["user", "assistant", "system"]), st.sampled_from(["bot", "Human", ""]), odds=4)
message_lists = st.lists(st.fixed_dictionaries({"role": ROLE, "content": texts}), max_size=3).map(
    lambda ms: ms + [{"role": "assistant", "content": "answer"}]
)
prompts_or_messages = st.one_of(texts, message_lists)
IDS = st.sampled_from(["u1", "u2", "u3", "u4", 1, 2])


@st.composite
def dags(draw):
    """Utterances u0..un-1, each replying to some earlier ones: a well-formed DAG for ``mostly`` to damage."""
    n = draw(st.integers(3, 7))
    out = []
    for i in range(n):
        parents = draw(st.lists(st.integers(0, i - 1), min_size=1, max_size=2, unique=True)) if i else []
        out.append(
            {
                "id": f"u{i}",
                "speaker": draw(st.sampled_from(["A", "B", "C"])),
                "text": draw(texts),
                "parents": [f"u{p}" for p in parents],
            }
        )
    return out


SHAPED = {  # preset -> rows shaped like its format
    "jsonl": fields(
        prompt=prompts_or_messages,
        chosen=prompts_or_messages,
        rejected=prompts_or_messages,
        prompt_rejected=prompts_or_messages,
    ),
    "scored-samples": st.integers(2, 3).flatmap(
        lambda k: fields(
            prompt=prompts_or_messages,
            completions=weighted(st.lists(texts, min_size=k, max_size=k), st.lists(texts, max_size=4), odds=4),
            rewards=weighted(st.lists(st.floats(-9, 9), min_size=k, max_size=k), st.lists(scalars, max_size=4), odds=4),
        )
    ),
    "causal-dialogue": fields(
        background=texts,
        utterances=weighted(
            dags(),
            st.lists(
                fields(id=IDS, speaker=st.sampled_from(["A", "B", ""]), text=texts, parents=st.lists(IDS, max_size=2)),
                max_size=5,
            ),
            odds=4,
        ),
    ),
}
SHAPED["ultrafeedback-binarized"] = SHAPED["json"] = SHAPED["jsonl"]


def _check(preset: str, suffix: str, payload: bytes, **spec):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"data{suffix}"
        path.write_bytes(gzip.compress(payload) if suffix.endswith(".gz") else payload)
        try:
            result = load(DatasetSpec(preset, path=str(path), **spec))
        except DataError as e:
            assert "\n" not in str(e).split(": ", 1)[0]  # the location part stays on one line
            return None
        assert isinstance(result, Loaded)
        assert result.report.examples == len(result.examples)
        return result


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.sampled_from(sorted(PRESETS)), st.data(), st.binary(max_size=200))
def test_random_bytes_load_or_raise_data_error(preset, data, payload):
    _check(preset, data.draw(st.sampled_from(PRESETS[preset])), payload)


@FUZZ
@given(st.sampled_from(sorted(SHAPED)), st.data())
def test_random_json_records_load_or_raise_data_error(preset, data):
    rows = data.draw(st.lists(weighted(SHAPED[preset], st.one_of(records, json_values)), max_size=3))
    suffix = data.draw(st.sampled_from([s for s in PRESETS[preset] if s != ".gz"]))
    ascii_only = data.draw(st.booleans())  # False writes raw (possibly lone-surrogate) characters
    payload = _encode(rows, suffix == ".json", ascii_only)
    _check(preset, suffix, payload, on_empty=data.draw(st.sampled_from(["error", "skip"])))


def _encode(rows, as_array: bool, ascii_only: bool) -> bytes:
    if as_array:
        text = json.dumps(rows, ensure_ascii=ascii_only)
    else:
        text = "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in rows)
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(st.lists(st.lists(st.sampled_from(FRAGMENTS + ["q", "b"]), max_size=8).map("".join), min_size=2, max_size=6))
def test_hh_shaped_text_loads_or_raises_data_error(parts):
    rows = [{"chosen": c, "rejected": r} for c, r in zip(parts[::2], parts[1::2])]
    payload = "".join(json.dumps(r) + "\n" for r in rows).encode()
    result = _check("hh-rlhf", ".jsonl", payload)
    if result is not None:
        for pair in result.examples:
            assert pair.y_pos.strip() and pair.y_neg.strip()


@pytest.mark.parametrize("preset", sorted(SHAPED))
def test_the_shaped_rows_reach_the_happy_path_too(preset):
    """Guards the fuzz above against strategies so broken that every draw is an error."""

    def loads_some(row):
        result = _check(preset, ".jsonl" if preset != "json" else ".json", _encode([row], preset == "json", True))
        return result is not None and len(result.examples) > 0

    hits = []

    @settings(max_examples=200, database=None, deadline=None)
    @given(SHAPED[preset])
    def draw(row):
        if not hits and loads_some(row):
            hits.append(row)

    draw()
    assert hits, f"no well-formed {preset} row in 200 draws"

"""The content-hash train/eval split: deterministic, order- and size-independent, nested in the fraction."""

import random

import pytest

from evalharness.data.split import eval_score, is_eval, split_examples
from evalharness.data.types import PreferencePair


def pairs(n, tag="p"):
    return [PreferencePair("x", f"{tag}{i}+", "x", f"{tag}{i}-", f"{tag}-{i}") for i in range(n)]


def ids(examples):
    return [e.id for e in examples]


def test_the_split_is_deterministic_and_keeps_input_order():
    data = pairs(400)
    train, held = split_examples(data, 0.2, seed=3)
    assert (ids(train), ids(held)) == tuple(map(ids, split_examples(data, 0.2, seed=3)))
    assert sorted(ids(train) + ids(held)) == sorted(ids(data))
    assert ids(train) == [i for i in ids(data) if i in set(ids(train))]


def test_reordering_does_not_move_any_example():
    data = pairs(400)
    shuffled = data[:]
    random.Random(0).shuffle(shuffled)
    assert set(ids(split_examples(data, 0.3)[1])) == set(ids(split_examples(shuffled, 0.3)[1]))


def test_the_split_of_an_example_does_not_depend_on_the_dataset_size():
    big = pairs(1000)
    small = big[:37] + pairs(50, tag="other")
    held_big = set(ids(split_examples(big, 0.25)[1]))
    held_small = set(ids(split_examples(small, 0.25)[1]))
    assert held_small & set(ids(big[:37])) == held_big & set(ids(big[:37]))


def test_the_eval_share_is_near_the_fraction():
    n, f = 4000, 0.1
    _, held = split_examples(pairs(n), f)
    # binomial sd = sqrt(n f (1-f)) = 19; 5 sd either side cannot fail by chance in practice
    assert abs(len(held) - n * f) < 5 * (n * f * (1 - f)) ** 0.5


def test_raising_the_fraction_only_adds_to_eval_and_the_seed_changes_the_draw():
    data = pairs(500)
    small, large = set(ids(split_examples(data, 0.1)[1])), set(ids(split_examples(data, 0.3)[1]))
    assert small < large
    assert set(ids(split_examples(data, 0.3, seed=1)[1])) != large


def test_edges_and_bad_fractions():
    data = pairs(50)
    assert split_examples(data, 0.0) == (data, [])
    assert split_examples(data, 1.0) == ([], data)
    assert 0 <= eval_score("anything") < 1 and is_eval("anything", 1.0)
    for bad in (-0.1, 1.5, True, "0.1"):
        with pytest.raises(ValueError):
            split_examples(data, bad)


def test_duplicate_ids_land_on_the_same_side():
    data = pairs(200) * 2
    train, held = split_examples(data, 0.5)
    assert not set(ids(train)) & set(ids(held))

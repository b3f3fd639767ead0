"""Token buckets and the seeded sample: same inputs + seed -> same rows, whatever their order."""

import random

from hypothesis import given
from hypothesis import strategies as st

from fastapply_pipeline.core.buckets import BucketSpec, seeded_sample

REFERENCE = BucketSpec(uppers=(100, 400, 1000, 2000, 3000, 4000, 5000, 10000, None), samples=(0,) * 9)


def test_reference_bucket_labels():
    assert REFERENCE.labels == [
        "<100",
        "100-399",
        "400-999",
        "1000-1999",
        "2000-2999",
        "3000-3999",
        "4000-4999",
        "5000-9999",
        "10000+",
    ]


def test_edges_fall_in_the_upper_bucket():
    assert REFERENCE.index_of(0) == 0
    assert REFERENCE.index_of(99) == 0
    assert REFERENCE.index_of(100) == 1
    assert REFERENCE.index_of(9999) == 7
    assert REFERENCE.index_of(10000) == 8
    assert REFERENCE.index_of(10**9) == 8


@given(st.integers(min_value=0, max_value=50_000))
def test_every_count_lies_inside_its_bucket_bounds(tokens):
    lower, upper = REFERENCE.bounds(REFERENCE.index_of(tokens))
    assert lower <= tokens and (upper is None or tokens < upper)


paths = st.lists(st.text(min_size=1, max_size=20), unique=True, max_size=60)


@given(paths, st.integers(min_value=0, max_value=70), st.integers())
def test_sample_is_deterministic_and_order_independent(items, size, seed):
    chosen = {items[i] for i in seeded_sample(items, size, seed)}
    shuffled = items[:]
    random.Random(seed).shuffle(shuffled)
    assert {shuffled[i] for i in seeded_sample(shuffled, size, seed)} == chosen
    assert len(chosen) == min(size, len(items))


@given(paths)
def test_none_keeps_everything(items):
    assert seeded_sample(items, None, 1) == list(range(len(items)))


def test_another_seed_gives_another_sample():
    items = [f"src/file_{i}.py" for i in range(200)]
    assert seeded_sample(items, 20, 1) != seeded_sample(items, 20, 2)


def test_adding_one_item_changes_the_sample_by_at_most_one():
    items = [f"src/file_{i}.py" for i in range(200)]
    before = {items[i] for i in seeded_sample(items, 50, 7)}
    grown = [*items, "src/new_file.py"]
    after = {grown[i] for i in seeded_sample(grown, 50, 7)}
    assert len(before - after) <= 1

"""Token buckets and the seeded sample: same inputs + seed -> same rows, whatever their order."""

import random

from hypothesis import given, settings
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


DEFAULTS = BucketSpec(
    uppers=(100, 400, 1000, 2000, 3000, 4000, None), samples=(0, 500, 1000, 3000, 1000, 0, 0)
)


def test_dropped_range_names_the_sample_0_run_that_holds_every_count():
    assert DEFAULTS.dropped_range(0, 99) == "<100"
    assert DEFAULTS.dropped_range(3000, 10**9) == "3000+"  # neighbouring sample-0 buckets form one range
    assert DEFAULTS.dropped_range(3500, 3600) == "3000+"
    assert DEFAULTS.dropped_range(0, 100) is None  # 100 falls in a bucket that keeps files
    assert DEFAULTS.dropped_range(2999, 5000) is None
    middle = BucketSpec(uppers=(100, 400, 1000, None), samples=(None, 0, 0, None))
    assert middle.dropped_range(150, 900) == "100-999"
    assert middle.dropped_range(150, 1000) is None
    assert DEFAULTS.dropped_from(5000) == 3000 and DEFAULTS.dropped_from(50) == 0
    assert DEFAULTS.dropped_from(2500) is None


specs = st.lists(
    st.tuples(st.integers(min_value=1, max_value=60), st.sampled_from([0, 0, 1, None])),
    min_size=1,
    max_size=6,
).map(
    lambda parts: BucketSpec(
        uppers=(*[sum(step for step, _ in parts[: i + 1]) for i in range(len(parts) - 1)], None),
        samples=tuple(sample for _, sample in parts),
    )
)


@settings(deadline=None)
@given(specs, st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=100))
def test_dropped_range_is_exactly_every_count_in_a_bucket_that_keeps_nothing(spec, lower, width):
    upper = lower + width
    every_count_dropped = all(spec.samples[spec.index_of(t)] == 0 for t in range(lower, upper + 1))
    assert (spec.dropped_range(lower, upper) is not None) == every_count_dropped
    start = spec.dropped_from(upper)
    if start is not None:  # a lower bound at `start` is enough to drop a file whose upper bound is `upper`
        assert spec.dropped_range(max(start, min(lower, upper)), upper) is not None
        assert start == 0 or spec.samples[spec.index_of(start - 1)] != 0

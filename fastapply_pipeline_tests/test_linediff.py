"""line_hunks: valid, well-formed and minimal line diffs (checked against difflib)."""

import difflib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastapply_pipeline.core.linediff import line_hunks

# A small alphabet makes repeated lines (and so ambiguous alignments) common.
line = st.sampled_from(["}", "{", "", "x = 1", "return x", "    pass", "def f():"])
lines = st.lists(line, max_size=40)


def apply_hunks(a: list[str], b: list[str], hunks: list[tuple[int, int, int, int]]) -> list[str]:
    out, pos = [], 0
    for a0, a1, b0, b1 in hunks:
        out += a[pos:a0] + b[b0:b1]
        pos = a1
    return out + a[pos:]


def check(a: list[str], b: list[str]) -> list[tuple[int, int, int, int]]:
    hunks = line_hunks(a, b)
    assert apply_hunks(a, b, hunks) == b
    prev_a = prev_b = -1
    for a0, a1, b0, b1 in hunks:
        assert a0 <= a1 and b0 <= b1 and (a0, b0) != (a1, b1)  # never empty on both sides
        # Sorted, non-overlapping, and never touching: adjacent changes are one hunk.
        assert a0 > prev_a and b0 > prev_b
        # Outside the hunks the lines are really equal: same offset between a and b, same text.
        assert a0 - prev_a == b0 - prev_b
        prev_a, prev_b = a1, b1
    assert len(a) - prev_a == len(b) - prev_b
    return hunks


def changed(hunks) -> int:
    return sum((a1 - a0) + (b1 - b0) for a0, a1, b0, b1 in hunks)


def lcs(a, b) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0  # row[j - 1] of the previous row
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def difflib_hunks(a, b):
    opcodes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return [(a0, a1, b0, b1) for tag, a0, a1, b0, b1 in opcodes if tag != "equal"]


@st.composite
def edited(draw):
    """A file and an edited copy: random replaced, inserted and deleted runs of lines (some of them new)."""
    a = draw(lines)
    b = list(a)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(b)))
        j = draw(st.integers(i, min(len(b), i + 4)))
        b[i:j] = draw(st.lists(line | st.sampled_from(["new", "added"]), max_size=3))
    return a, b


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(st.one_of(edited(), st.tuples(lines, lines)))
def test_hunks_are_valid_and_minimal(pair):
    a, b = pair
    hunks = check(a, b)
    # Myers' diff is minimal (only the lines outside a longest common subsequence change), so it never
    # changes more lines than difflib, which is not always minimal.
    assert changed(hunks) == len(a) + len(b) - 2 * lcs(a, b) <= changed(difflib_hunks(a, b))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([], [], []),
        (["a"], ["a"], []),
        ([], ["a", "b"], [(0, 0, 0, 2)]),
        (["a", "b"], [], [(0, 2, 0, 0)]),
        (["a", "b"], ["x", "a", "b"], [(0, 0, 0, 1)]),
        (["a", "b"], ["a", "b", "x"], [(2, 2, 2, 3)]),
        (["a", "b", "c"], ["x", "y"], [(0, 3, 0, 2)]),
        (["a", "b", "c"], ["a", "x", "c"], [(1, 2, 1, 2)]),
    ],
)
def test_hand_cases(a, b, expected):
    assert check(a, b) == expected


def test_repeated_braces_keep_unchanged_lines():
    # Many identical "}" lines: only the edited body lines may change, like difflib.
    a = [line for i in range(50) for line in (f"def f{i}() {{", f"    return {i};", "}", "")]
    b = list(a)
    b[41] = "    return -10;"
    b[120:120] = ["def g() {", "}", ""]
    del b[181:185]
    hunks = check(a, b)
    assert changed(hunks) == changed(difflib_hunks(a, b)) == 2 + 3 + 4

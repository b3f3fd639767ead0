"""Line-level diff hunks in O(ND) time and linear space (Myers), a fast stand-in for difflib.

`difflib.SequenceMatcher` is quadratic on long files (a 16,000-line file took ~33 s per snippet), while
a Myers diff costs O((N + M) * D), where D is the number of changed lines: near-linear for the small edits
the pipeline renders. The diff itself is Google's diff-match-patch (`diff_bisect` is Myers' linear-space
middle-snake algorithm), run over lines encoded as one character each.
"""

import difflib
import itertools

from diff_match_patch import diff_match_patch

Hunk = tuple[int, int, int, int]

# Every distinct line becomes one code point, so at most this many distinct lines fit in one diff.
_MAX_DISTINCT = 0x110000


def _differ() -> diff_match_patch:
    dmp = diff_match_patch()
    # No deadline: a timed-out diff-match-patch returns a valid but non-minimal diff that depends on the
    # machine's speed; we want the same minimal hunks on every run.
    dmp.Diff_Timeout = 0
    return dmp


_DMP = _differ()


def line_hunks(a: list[str], b: list[str]) -> list[Hunk]:
    """The changed hunks `(a0, a1, b0, b1)` that turn line list `a` into `b`: `a[a0:a1]` becomes `b[b0:b1]`.

    Same meaning as difflib's non-"equal" opcodes: sorted, non-overlapping, never empty on both sides
    (`a0 == a1` is a pure insertion, `b0 == b1` a pure deletion), with adjacent deletes and inserts merged
    into one hunk. The diff is minimal (fewest deleted + inserted lines), as Myers' algorithm guarantees.
    """
    # Trim the common prefix and suffix first: the typical edit touches a few lines of a long file, and
    # this leaves the diff only the middle that actually changed.
    start, end_a, end_b = 0, len(a), len(b)
    while start < end_a and start < end_b and a[start] == b[start]:
        start += 1
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    if start == end_a and start == end_b:
        return []
    if start in (end_a, end_b):  # a pure insertion or deletion: nothing left to diff
        return [(start, end_a, start, end_b)]
    # Lines found on one side only can never be in a longest common subsequence, so dropping them keeps
    # the diff minimal while sparing Myers their cost: a block of new lines would otherwise add its length
    # to D, the O(ND) term (GNU diff and git's xdiff discard them too).
    common = set(a[start:end_a]).intersection(b[start:end_b])
    if len(common) > _MAX_DISTINCT:  # out of code points (over a million distinct lines): fall back
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        return [(a0, a1, b0, b1) for tag, a0, a1, b0, b1 in matcher.get_opcodes() if tag != "equal"]
    # Hash each common line to an int (here a code point), so the diff compares characters, not strings.
    # Only equality matters to the diff, so the (hash-seeded) order of `common` doesn't change the result.
    codes = {line: chr(n) for n, line in enumerate(common)}
    keep_a = [i for i in range(start, end_a) if a[i] in codes]
    keep_b = [j for j in range(start, end_b) if b[j] in codes]
    text_a = "".join([codes[a[i]] for i in keep_a])
    text_b = "".join([codes[b[j]] for j in keep_b])

    # The matched line pairs (position in a, position in b): the diff's equal runs, mapped back through
    # keep_a/keep_b, between sentinels just before the trimmed middle and at its end.
    matches = [(start - 1, start - 1)]
    i = j = 0
    for op, text in _DMP.diff_main(text_a, text_b, checklines=False):
        if op == _DMP.DIFF_EQUAL:
            matches += zip(keep_a[i : i + len(text)], keep_b[j : j + len(text)], strict=True)
        if op != _DMP.DIFF_INSERT:
            i += len(text)
        if op != _DMP.DIFF_DELETE:
            j += len(text)
    matches.append((end_a, end_b))
    # Each gap between consecutive matches is one hunk (so adjacent deletes and inserts are merged).
    return [
        (pa + 1, ia, pb + 1, ib)
        for (pa, pb), (ia, ib) in itertools.pairwise(matches)
        if (ia, ib) != (pa + 1, pb + 1)
    ]

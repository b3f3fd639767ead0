"""Evaluation metrics on hand-made outputs, one per failure users meet."""

import polars as pl
import pytest

from fastapply_pipeline.core.metrics import aggregate, line_differences, score_example
from fastapply_pipeline.core.prompt import parse_answer

ORIGINAL = "def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n"
REFERENCE = ORIGINAL.replace("return w * h", "return max(w, 0) * max(h, 0)")


def score(output, **kwargs):
    return score_example(output, reference=REFERENCE, original=ORIGINAL, language="python", **kwargs)


def test_a_perfect_merge():
    s = score(REFERENCE)
    assert (s.exact, s.normalized, s.sorted_lines, s.dropped_lines, s.extra_lines) == (True, True, True, 0, 0)
    assert s.chrf == pytest.approx(100.0) and s.parses is True and not s.marker_leak


def test_whitespace_only_differences_are_normalized_matches():
    s = score(REFERENCE.replace("    return 2", "  return 2").rstrip("\n"))
    assert not s.exact and s.normalized and s.sorted_lines is True


def test_dropped_code():
    s = score(REFERENCE.split("\n\n\n")[0] + "\n")
    assert not s.exact and s.dropped_lines == 4 and s.extra_lines == 0  # perimeter, its body, two blanks
    assert s.chrf < 80


def test_an_extra_unrequested_change():
    s = score(REFERENCE.replace("2 * (w + h)", "(w + h) * 2"))
    assert s.dropped_lines == 1 and s.extra_lines == 1 and not s.sorted_lines and s.parses


def test_the_marker_leaks():
    s = score(REFERENCE.replace("def perimeter", "# ... existing code ...\ndef perimeter"))
    assert s.marker_leak and s.extra_lines == 1


def test_truncation_is_missing_tags():
    answer = "<updated-code>" + REFERENCE[:30]
    assert parse_answer(answer) is None
    s = score(None, missing_tags=True)
    assert (
        s.missing_tags
        and not s.exact
        and s.dropped_lines == len(REFERENCE.splitlines())
        and s.parses is False
    )


def test_broken_syntax():
    s = score(REFERENCE.replace("def perimeter(w, h):", "def perimeter(w, h)"))
    assert s.parses is False and s.dropped_lines == 1 and s.extra_lines == 1


def test_sorted_lines_forgive_order_only():
    swapped = "\n\n\n".join(reversed(REFERENCE.strip().split("\n\n\n"))) + "\n"
    s = score(swapped)
    assert not s.exact and s.sorted_lines and s.dropped_lines == 0 and s.extra_lines == 0


def test_line_differences_count_duplicates():
    assert line_differences("a\na\nb\n", "a\nb\nb\n") == (1, 1)


def test_aggregate_by_group():
    rows = [
        {"candidate": "applier", "language": "python", **score(REFERENCE).as_dict()},
        {"candidate": "applier", "language": "python", **score(None).as_dict()},
        {"candidate": "identity", "language": "python", **score(ORIGINAL).as_dict()},
    ]
    table = aggregate(pl.DataFrame(rows), ["candidate"])
    applier = table.row(0, named=True)
    assert applier["examples"] == 2 and applier["exact"] == 0.5 and applier["parses"] == 0.5
    identity = table.row(1, named=True)
    assert identity["exact"] == 0.0 and identity["dropped_lines"] == 1.0 and identity["extra_lines"] == 1.0


def test_applier_and_identity_candidates_on_test_rows():
    from fastapply_pipeline.core.evaluate import applier_candidate, evaluate, identity_candidate

    # An anchor below the change: new lines with no anchor after them would be inserted, not substituted.
    snippet = "def area(w, h):\n    return max(w, 0) * max(h, 0)\n\n\ndef perimeter(w, h):\n# ... existing code ...\n"
    rows = [
        {
            "triple_id": "good",
            "original_code": ORIGINAL,
            "update_snippet": snippet,
            "final_code": REFERENCE,
            "language": "python",
            "generator": "structural",
            "edit_kind": "modify_function",
        },
        {
            "triple_id": "refused",
            "original_code": ORIGINAL,
            "update_snippet": "# ... existing code ...\nnowhere()\n# ... existing code ...\n",
            "final_code": REFERENCE,
            "language": "python",
            "generator": "anthropic",
            "edit_kind": "add_feature",
        },
    ]
    results = evaluate({"applier": applier_candidate, "identity": identity_candidate}, rows)
    assert results.height == 4
    applier = {
        r["triple_id"]: r for r in results.filter(pl.col("candidate") == "applier").iter_rows(named=True)
    }
    assert (
        applier["good"]["exact"]
        and applier["refused"]["exact"] is False
        and applier["refused"]["parses"] is False
    )
    identity = results.filter(pl.col("candidate") == "identity")
    assert not identity["exact"].any() and (identity["dropped_lines"] == 1).all()
    summary = aggregate(results, ["candidate"])
    assert summary.filter(pl.col("candidate") == "applier")["exact"][0] == 0.5

"""Render a lazy update snippet from (original, final): the changed regions with just enough context.

Each changed region gets `min_context` unchanged lines on both sides, grown one line at a time until
the applier's own anchor search (`apply.locate`) finds that region at exactly the right place in the
original: unique head anchors, the nearest tail anchor being the right one. Regions whose contexts
touch are merged. Markers stand between regions and at the ends where code is omitted, in the
language's own comment syntax (`{/* ... */}` among JSX children). The snippet's non-marker lines are
lines of the final file, in order.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from fastapply_pipeline.core.apply import (
    AnchorError,
    Indentation,
    LineIndex,
    drops_most_of_file,
    locate,
    split_lines,
    trim_blank_edges,
)
from fastapply_pipeline.core.markers import is_marker_line, looks_like_jsx_child, marker_for


class RenderError(ValueError):
    """No snippet can express this edit; `reason` names why (counted by generators)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Snippet:
    text: str
    regions: int  # changed regions (hunks after merging)
    context: int  # the largest context any region needed


def _hunks(orig: list[str], final: list[str]) -> list[tuple[int, int, int, int]]:
    matcher = difflib.SequenceMatcher(None, orig, final, autojunk=False)
    return [(a0, a1, b0, b1) for tag, a0, a1, b0, b1 in matcher.get_opcodes() if tag != "equal"]


def render_snippet(
    original: str, final: str, language: str, *, min_context: int = 1, max_context: int = 12
) -> Snippet:
    """The lazy snippet that turns `original` into `final` (raises RenderError when none can)."""
    orig, newline, ends = split_lines(original)
    new, new_newline, new_ends = split_lines(final)
    if (newline != new_newline and len(orig) > 1 and len(new) > 1) or ends != new_ends:
        raise RenderError("line_endings_changed", "the edit changes line endings or the final newline")
    hunks = _hunks(orig, new)
    if not hunks:
        raise RenderError("no_change", "original and final are the same")
    if any(is_marker_line(line) for a0, a1, b0, b1 in hunks for line in new[b0:b1]):
        raise RenderError("marker_in_final", "a changed line of the final file looks like an elision marker")

    indentation = Indentation.of(orig)
    index = LineIndex(indentation.keys(orig))
    new_keys = indentation.for_snippet(new).keys(new)
    if _touches_edge_blank_lines(index.keys, new_keys, hunks):
        raise RenderError(
            "blank_lines_at_file_edge", "the edit changes blank lines at the very start or end of the file"
        )
    contexts = [min_context] * len(hunks)
    while True:
        regions = _regions(hunks, contexts, index.keys)
        cursor, bad = 0, None
        for number, (_ids, (o0, o1), (b0, b1)) in enumerate(regions):
            at_start, at_end = o0 == 0, o1 == len(orig)
            segment = trim_blank_edges(new_keys[b0:b1])
            try:
                span = locate(index, segment, cursor, at_start=at_start, at_end=at_end) if segment else None
            except AnchorError:
                span = None
            if span is None or not _is_intended(span, (o0, o1), orig, segment):
                bad = number
                break
            cursor = o1
        if bad is None:
            break
        hunk_ids = regions[bad][0]
        if all(contexts[h] >= max_context for h in hunk_ids):
            raise RenderError("no_unique_anchor", f"no unique anchor within {max_context} lines of context")
        for h in hunk_ids:
            contexts[h] += 1

    whole_file = len(regions) == 1 and regions[0][1] == (0, len(orig))
    if whole_file and orig and not index.shares_a_line(new_keys):
        raise RenderError(
            "whole_file_rewrite", "the final shares no line with the original: nothing anchors a snippet"
        )
    lines: list[str] = []
    for number, (_ids, (o0, o1), (b0, b1)) in enumerate(regions):
        if o0 > 0:
            lines.append(_marker(language, orig, o0, new, b0, before=True))
        lines.extend(new[b0:b1])
        if number == len(regions) - 1 and o1 < len(orig):
            lines.append(_marker(language, orig, o1, new, b1, before=False))
    if drops_most_of_file(len(orig), len(new), len(lines)):
        raise RenderError(
            "drops_most_of_file", "the edit deletes most of the file; the applier refuses such merges"
        )
    text = "\n".join(lines) + "\n"
    return Snippet(text=text, regions=len(regions), context=max(contexts))


def _blank_run(keys: list[str], reverse: bool = False) -> int:
    count = 0
    for k in reversed(keys) if reverse else keys:
        if k:
            break
        count += 1
    return count


def _touches_edge_blank_lines(orig_keys: list[str], new_keys: list[str], hunks) -> bool:
    """Blank lines at the file's very start or end belong to no anchor: the applier keeps them as they are."""
    lead_o, lead_n = _blank_run(orig_keys), _blank_run(new_keys)
    end_o = len(orig_keys) - _blank_run(orig_keys, reverse=True)
    end_n = len(new_keys) - _blank_run(new_keys, reverse=True)
    return any(a0 < lead_o or b0 < lead_n or a1 > end_o or b1 > end_n for a0, a1, b0, b1 in hunks)


def _is_intended(
    span: tuple[int, int], intended: tuple[int, int], orig: list[str], segment: list[str]
) -> bool:
    """The applier's span equals the region's, up to blank lines the applier trims off the segment's edges."""
    o0, o1 = intended
    while o0 < o1 and not orig[o0].strip():
        o0 += 1
    while o1 > o0 and not orig[o1 - 1].strip():
        o1 -= 1
    s0, s1 = span
    return (s0, s1) == (o0, o1) or (not segment and s0 == s1)


def _regions(hunks, contexts, orig_keys):
    """Group hunks whose context windows touch: [(hunk ids, (orig start, end), (final start, end))].

    A context window never ends on a blank line (it grows to the next non-blank one): the applier trims
    blank lines off a segment's edges, so an edge must be a line that anchors.
    """
    n_orig = len(orig_keys)
    regions: list[tuple[list[int], list[int], list[int]]] = []
    for h, (a0, a1, b0, b1) in enumerate(hunks):
        c = contexts[h]
        o0, o1 = max(0, a0 - c), min(n_orig, a1 + c)
        while o0 > 0 and not orig_keys[o0]:
            o0 -= 1
        while o1 < n_orig and not orig_keys[o1 - 1]:
            o1 += 1
        f0, f1 = b0 - (a0 - o0), b1 + (o1 - a1)
        if regions and o0 <= regions[-1][1][1]:
            ids, ospan, fspan = regions[-1]
            ids.append(h)
            ospan[1], fspan[1] = max(ospan[1], o1), max(fspan[1], f1)
        else:
            regions.append(([h], [o0, o1], [f0, f1]))
    return [(ids, tuple(o), tuple(f)) for ids, o, f in regions]


def _marker(language: str, orig: list[str], o: int, new: list[str], b: int, *, before: bool) -> str:
    """A marker for the original lines elided next to final line `b`, indented like them."""
    elided = orig[:o] if before else orig[o:]
    sample = next((line for line in (reversed(elided) if before else elided) if line.strip()), "")
    indent = sample[: len(sample) - len(sample.lstrip())]
    previous = elided[-1] if before and elided else (new[b - 1] if not before and b > 0 else None)
    following = new[b] if before and b < len(new) else (elided[0] if not before and elided else None)
    return marker_for(language, jsx_child=looks_like_jsx_child(previous, following), indent=indent)

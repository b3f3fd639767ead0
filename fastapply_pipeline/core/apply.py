"""The deterministic applier: (original, lazy snippet) -> merged file, or a refusal with its reason.

A snippet is a list of segments separated by marker lines. Each segment replaces one span of the
original: it starts at its *head anchor* (its longest first lines that occur in the original, which
must occur exactly once after the previous segment) and ends at its *tail anchor* (its longest last
lines that occur after the head, nearest first). Original lines between segments are kept where a
marker stands; without a leading (trailing) marker the first (last) segment must begin (end) at the
start (end) of the file. Lines are compared without indentation, trailing whitespace or CR, so
snippets with CRLF, tabs instead of spaces or trailing spaces still anchor. Indentation is compared as
*levels* (tabs, or spaces in the file's unit), so a line only anchors at its own nesting depth. Anchor
lines are written as they are in the original; new lines are re-indented to the original's tabs or
spaces.

It never guesses: an anchor found twice, no anchor at all, a missing end marker that would drop code,
or a result that loses most of the file is a refusal that says why.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from enum import StrEnum

from fastapply_pipeline.core.markers import is_marker_line

_NEWLINE_RE = re.compile(r"\r?\n")
_INDENT_RE = re.compile(r"^[ \t]*")


class Refusal(StrEnum):
    EMPTY_SNIPPET = "empty_snippet"
    AMBIGUOUS_ANCHOR = "ambiguous_anchor"
    NO_ANCHOR = "no_anchor"
    MISSING_LEADING_MARKER = "missing_leading_marker"
    MISSING_TRAILING_MARKER = "missing_trailing_marker"
    DROPS_MOST_OF_FILE = "drops_most_of_file"


class AnchorError(ValueError):
    def __init__(self, reason: Refusal, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ApplyResult:
    """`merged` is the new file when `reason` is None; otherwise the applier refused and says why."""

    merged: str | None
    reason: Refusal | None = None
    detail: str = ""
    spans: list[tuple[int, int]] = field(default_factory=list)  # original line spans each segment replaced

    @property
    def ok(self) -> bool:
        return self.reason is None


def split_lines(text: str) -> tuple[list[str], str, bool]:
    """(lines without endings, the newline style, whether the text ends with a newline)."""
    newline = "\r\n" if "\r\n" in text else "\n"
    ends = text.endswith("\n")
    lines = _NEWLINE_RE.split(text)
    if ends or text == "":
        lines.pop()
    return lines, newline, ends


def join_lines(lines: list[str], newline: str, ends: bool) -> str:
    return newline.join(lines) + (newline if ends and lines else "")


@dataclass(frozen=True)
class Indentation:
    """How a file indents: with tabs, or with `unit` spaces per level."""

    tabs: bool
    unit: int

    @classmethod
    def of(cls, lines: list[str]) -> Indentation:
        tab_lines = sum(1 for line in lines if line.startswith("\t"))
        space_lines = sum(1 for line in lines if line.startswith(" ") and line.strip())
        return cls(tabs=tab_lines > space_lines, unit=_space_unit(lines))

    def for_snippet(self, snippet: list[str]) -> Indentation:
        """The snippet's indentation: the file's, unless it indents with the other character."""
        uses_tabs = sum(1 for line in snippet if line.startswith("\t")) > sum(
            1 for line in snippet if line.startswith(" ") and line.strip()
        )
        if uses_tabs == self.tabs or not any(line[:1] in " \t" for line in snippet):
            return self
        return Indentation(tabs=uses_tabs, unit=min(_space_unit(snippet), 4))

    def keys(self, lines: list[str]) -> list[str]:
        """What anchors compare: indentation level + the stripped text ('' for blank lines)."""
        out = []
        for line in lines:
            text = line.strip()
            if not text:
                out.append("")
                continue
            lead = _INDENT_RE.match(line).group(0)
            spaces = lead.count(" ")
            out.append(f"{lead.count(chr(9)) + spaces // self.unit}.{spaces % self.unit}|{text}")
        return out

    def convert(self, line: str, source: Indentation) -> str:
        """A new snippet line, re-indented from the snippet's style to this (the file's) style."""
        line = line.rstrip("\r")
        if source == self:
            return line
        lead = _INDENT_RE.match(line).group(0)
        spaces = lead.count(" ")
        levels, rest = lead.count("\t") + spaces // source.unit, spaces % source.unit
        indent = "\t" * levels if self.tabs else " " * (levels * self.unit)
        return indent + " " * rest + line[len(lead) :]


def _space_unit(lines: list[str]) -> int:
    indents = {len(line) - len(line.lstrip(" ")) for line in lines if line.startswith(" ") and line.strip()}
    return max(1, min(min(indents - {0}, default=4), 8))


class LineIndex:
    """Positions of each line key in the original, for anchor lookups in O(occurrences)."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        self.positions: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            self.positions.setdefault(k, []).append(i)

    def shares_a_line(self, keys: list[str]) -> bool:
        """Whether any non-blank line key occurs in the original."""
        return any(k in self.positions for k in keys if k)

    def at_or_after(self, k: str, low: int) -> list[int]:
        found = self.positions.get(k, [])
        return found[bisect.bisect_left(found, low) :]


def _match_forward(keys: list[str], seg: list[str], i: int, limit: int) -> int:
    length = 0
    while length < len(seg) and i + length < limit and keys[i + length] == seg[length]:
        length += 1
    return length


def _match_backward(keys: list[str], seg: list[str], e: int, low: int, free: int) -> int:
    length = 0
    while length < free and e - length >= low and keys[e - length] == seg[-1 - length]:
        length += 1
    return length


def locate(index: LineIndex, seg: list[str], cursor: int, *, at_start: bool, at_end: bool) -> tuple[int, int]:
    """The span [start, end) of the original that a segment (of line keys) replaces; raises AnchorError."""
    keys, n = index.keys, len(index.keys)
    if at_end:  # blank lines at the end of the file stay where they are
        while n > cursor and keys[n - 1] == "":
            n -= 1
    if at_start:
        while cursor < n and keys[cursor] == "":  # so do blank lines at its start
            cursor += 1
        start, head = cursor, _match_forward(keys, seg, cursor, n)
        if head == 0 and index.at_or_after(seg[0], cursor):
            where = index.at_or_after(seg[0], cursor)[0] + 1
            raise AnchorError(
                Refusal.MISSING_LEADING_MARKER,
                f"the snippet has no leading marker but its first line is line {where} of the original; it would "
                f"drop lines 1-{where - 1}",
            )
    else:
        best, starts = 0, []
        for i in index.at_or_after(seg[0], cursor):
            length = _match_forward(keys, seg, i, n)
            if length > best:
                best, starts = length, [i]
            elif length == best:
                starts.append(i)
        if not starts:
            raise AnchorError(
                Refusal.NO_ANCHOR, f"no line of the original matches the snippet line {seg[0]!r}"
            )
        if len(starts) > 1:
            lines = ", ".join(str(s + 1) for s in starts[:5])
            raise AnchorError(
                Refusal.AMBIGUOUS_ANCHOR,
                f"the snippet lines starting {seg[0]!r} match the original in {len(starts)} places (lines {lines}); "
                "a unique location needs more surrounding lines in the snippet",
            )
        start, head = starts[0], best
    free = len(seg) - head
    low = start + head
    if at_end:
        if free == 0 and low < n:
            raise AnchorError(
                Refusal.MISSING_TRAILING_MARKER,
                f"the snippet has no trailing marker but ends at line {low} of {n}; it would drop the rest of the file",
            )
        if _match_backward(keys, seg, n - 1, low, free) == 0 and free and index.at_or_after(seg[-1], low):
            raise AnchorError(
                Refusal.MISSING_TRAILING_MARKER,
                f"the snippet has no trailing marker but its last line {seg[-1]!r} is not the file's end; it would "
                "drop the rest of the file",
            )
        return start, n
    if free == 0:
        return start, low
    best, end = 0, low
    for e in index.at_or_after(seg[-1], low):  # nearest occurrence of the longest matching tail
        length = _match_backward(keys, seg, e, low, free)
        if length > best:
            best, end = length, e + 1
    return start, end


def split_segments(snippet_lines: list[str]) -> tuple[list[list[str]], bool, bool]:
    """(segments, marker before the first segment, marker after the last)."""
    segments: list[list[str]] = []
    current: list[str] = []
    leading = trailing = False
    for line in snippet_lines:
        if is_marker_line(line):
            if current:
                segments.append(current)
                current = []
            elif not segments:
                leading = True
            trailing = True
        else:
            current.append(line)
            trailing = False
    if current:
        segments.append(current)
    # Blank lines hugging a marker belong to the elided code, not to an anchor.
    segments = [s for s in (trim_blank_edges(seg) for seg in segments) if s]
    return segments, leading, trailing


def trim_blank_edges(lines: list[str]) -> list[str]:
    """The lines without the blank lines at either end (works on lines and on line keys alike)."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def drops_most_of_file(original: int, merged: int, snippet: int, max_drop_fraction: float = 0.5) -> bool:
    """A short snippet that would cut a file of 10+ lines by more than `max_drop_fraction` (line counts)."""
    return original >= 10 and merged < original * (1 - max_drop_fraction) and snippet < original / 2


def apply_snippet(original: str, snippet: str, *, max_drop_fraction: float = 0.5) -> ApplyResult:
    """Merge a lazy snippet into the original file. See the module docstring for the rules."""
    orig, newline, ends = split_lines(original)
    snippet_lines, _, _ = split_lines(snippet)
    segments, leading, trailing = split_segments(snippet_lines)
    if not segments:
        return ApplyResult(
            None, Refusal.EMPTY_SNIPPET, "the snippet holds no code, only markers or blank lines"
        )

    file_indent = Indentation.of(orig)
    snippet_indent = file_indent.for_snippet(snippet_lines)
    orig_keys = file_indent.keys(orig)
    index = LineIndex(orig_keys)
    if not leading and not trailing and orig and not index.shares_a_line(snippet_indent.keys(segments[0])):
        return ApplyResult(
            None,
            Refusal.NO_ANCHOR,
            "the snippet has no markers and no line in common with the original; nothing anchors it",
        )
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    cursor = 0
    try:
        for number, segment in enumerate(segments):
            first, last = number == 0, number == len(segments) - 1
            seg_keys = snippet_indent.keys(segment)
            start, end = locate(
                index, seg_keys, cursor, at_start=first and not leading, at_end=last and not trailing
            )
            out.extend(orig[cursor:start])
            new_lines = _merge_segment(orig, orig_keys, segment, seg_keys, start, end)
            out.extend(
                line if line_is_orig else file_indent.convert(line, snippet_indent)
                for line, line_is_orig in new_lines
            )
            spans.append((start, end))
            cursor = end
        out.extend(orig[cursor:])
    except AnchorError as err:
        return ApplyResult(None, err.reason, err.detail)

    if drops_most_of_file(len(orig), len(out), len(snippet_lines), max_drop_fraction):
        return ApplyResult(
            None,
            Refusal.DROPS_MOST_OF_FILE,
            f"the merge would shrink the file from {len(orig)} to {len(out)} lines; refusing to drop most of it",
        )
    return ApplyResult(join_lines(out, newline, ends), spans=spans)


def _merge_segment(
    orig: list[str],
    orig_keys: list[str],
    segment: list[str],
    seg_keys: list[str],
    start: int,
    end: int,
) -> list[tuple[str, bool]]:
    """The segment's lines as (text, taken from the original): anchor lines come verbatim from the original."""
    head = 0
    while head < len(segment) and start + head < end and orig_keys[start + head] == seg_keys[head]:
        head += 1
    tail = 0
    while (
        tail < len(segment) - head
        and end - 1 - tail >= start + head
        and orig_keys[end - 1 - tail] == seg_keys[len(segment) - 1 - tail]
    ):
        tail += 1
    return (
        [(line, True) for line in orig[start : start + head]]
        + [(line, False) for line in segment[head : len(segment) - tail]]
        + [(line, True) for line in orig[end - tail : end]]
    )

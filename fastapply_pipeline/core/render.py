"""Render a lazy update snippet from (original, final) in the styles agents really write.

Styles (SNIPPET_STYLES):
- `anchored`: each changed region with `min_context` unchanged lines on both sides, markers between
  regions and at the ends where code is omitted (the classic shape);
- `generous_context`: the same with 3-5 lines of context;
- `changed_first_line`: a region starts right after its marker with the new or changed line (a new
  signature, a new comment above a function); only the lines after it anchor;
- `unit`: no markers: the one function, method, class or section that holds every change, whole;
- `dedented_unit`: that unit shifted to column 0 (a method without its class);
- `whole_file`: no markers: the whole new file;
- `other_spelling`: anchored, with another marker spelling (`... rest of code ...`, `...`, ...).

Every style is checked against the applier: the snippet must merge back into exactly the final file,
or the style cannot express this edit and `render_snippet` raises RenderError (the generators then fall
back to `anchored` and count why). Context grows one line at a time, only around the regions the
applier placed wrongly, until the merge is exact. Markers stand indented like the code they elide.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fastapply_pipeline.core.apply import (
    Indentation,
    Original,
    apply_snippet,
    drops_most_of_file,
    split_lines,
)
from fastapply_pipeline.core.linediff import line_hunks
from fastapply_pipeline.core.markers import MARKER_TEXT, is_marker_line, looks_like_jsx_child, marker_for
from fastapply_pipeline.core.parsing import has_grammar, parses
from fastapply_pipeline.core.settings import SNIPPET_STYLES

OTHER_SPELLINGS = (
    "... rest of code ...",
    "...",
    "... existing code ... (unchanged)",
    "... same as before ...",
)
MAX_RENDER_LINES = 5_000  # past this a file is skipped with a counted reason (diff and merge stay fast)


class RenderError(ValueError):
    """No snippet of the asked style can express this edit; `reason` names why (counted by generators)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Snippet:
    text: str
    regions: int  # changed regions (hunks after merging)
    context: int  # the largest context any region needed
    style: str = "anchored"


def pick_style(weights: dict[str, float], rng: random.Random) -> str:
    """A style drawn with the given weights (seeded by the caller)."""
    names = sorted(name for name, weight in weights.items() if weight > 0)
    return rng.choices(names, weights=[weights[n] for n in names], k=1)[0]


def render_snippet(
    original: str,
    final: str,
    language: str,
    *,
    style: str = "anchored",
    min_context: int = 1,
    max_context: int = 12,
    rng: random.Random | None = None,
    max_lines: int | None = MAX_RENDER_LINES,
) -> Snippet:
    """The lazy snippet of the given style that turns `original` into `final` (raises RenderError).
    Files longer than `max_lines` are refused as `file_too_long` (None: no bound)."""
    if style not in SNIPPET_STYLES:
        raise ValueError(f"unknown snippet style {style!r}; choose from {', '.join(SNIPPET_STYLES)}")
    rng = rng or random.Random(0)
    orig, newline, ends = split_lines(original)
    new, new_newline, new_ends = split_lines(final)
    if max_lines is not None and max(len(orig), len(new)) > max_lines:
        raise RenderError("file_too_long", f"files over {max_lines} lines are not rendered")
    if (newline != new_newline and len(orig) > 1 and len(new) > 1) or ends != new_ends:
        raise RenderError("line_endings_changed", "the edit changes line endings or the final newline")
    orig = [line.rstrip("\r") for line in orig]
    new = [line.rstrip("\r") for line in new]
    hunks = line_hunks(orig, new)
    if not hunks:
        raise RenderError("no_change", "original and final are the same")
    if any(is_marker_line(line, bare_ellipsis=False) for a0, a1, b0, b1 in hunks for line in new[b0:b1]):
        raise RenderError("marker_in_final", "a changed line of the final file looks like an elision marker")
    if _touches_edge_blank_lines(orig, new, hunks):
        raise RenderError(
            "blank_lines_at_file_edge", "the edit changes blank lines at the very start or end of the file"
        )
    if has_grammar(language) and parses(original, language) and not parses(final, language):
        raise RenderError("final_breaks_syntax", "the final file does not parse where the original does")
    job = _Job(orig, new, hunks, language, newline, ends, original, final)
    if style in ("unit", "dedented_unit"):
        snippet = job.unit(dedent=style == "dedented_unit")
    elif style == "whole_file":
        snippet = job.check(list(new), 1, 0, style)
    else:
        spelling = rng.choice(OTHER_SPELLINGS) if style == "other_spelling" else MARKER_TEXT
        context = rng.randint(3, 5) if style == "generous_context" else min_context
        snippet = job.anchored(
            max(context, min_context),
            max(max_context, context),
            spelling,
            style,
            first_line=style == "changed_first_line",
        )
    if drops_most_of_file(len(orig), len(new), snippet.text.count("\n")):
        raise RenderError(
            "drops_most_of_file", "the edit deletes most of the file; the applier refuses such merges"
        )
    return snippet


def _touches_edge_blank_lines(orig: list[str], new: list[str], hunks) -> bool:
    """Blank lines at the file's very start or end belong to no anchor: the applier keeps them as they are."""

    def run(lines, reverse=False):
        count = 0
        for line in reversed(lines) if reverse else lines:
            if line.strip():
                break
            count += 1
        return count

    lead_o, lead_n = run(orig), run(new)
    end_o, end_n = len(orig) - run(orig, True), len(new) - run(new, True)
    return any(a0 < lead_o or b0 < lead_n or a1 > end_o or b1 > end_n for a0, a1, b0, b1 in hunks)


class _Job:
    def __init__(self, orig, new, hunks, language, newline, ends, original, final):
        self.orig, self.new, self.hunks, self.language = orig, new, hunks, language
        self.newline, self.ends, self.original, self.final = newline, ends, original, final

    def merge(self, lines: list[str]):
        text = "\n".join(lines) + "\n"
        # no syntax check here: the merge must equal the final, which render_snippet has parsed already
        return text, apply_snippet(self.original, text, language=self.language, check_syntax=False)

    def check(self, lines: list[str], regions: int, context: int, style: str) -> Snippet:
        text, result = self.merge(lines)
        if not result.ok:
            raise RenderError(f"{style}_refused_{result.reason}", result.detail)
        if result.merged != self.final:
            raise RenderError(
                f"{style}_mismatch", f"the {style} snippet does not merge back into the final file"
            )
        return Snippet(text, regions, context, style)

    # ---------------------------------------------------------------- anchored styles
    def anchored(
        self, min_context: int, max_context: int, spelling: str, style: str, *, first_line: bool
    ) -> Snippet:
        before = [0 if first_line and b1 > b0 else min_context for a0, a1, b0, b1 in self.hunks]
        after = [min_context] * len(self.hunks)
        while True:
            regions = _regions(self.hunks, before, after, self.orig)
            lines = self._lines(regions, spelling)
            text, result = self.merge(lines)
            if result.ok and result.merged == self.final:
                return Snippet(text, len(regions), max(max(before), max(after)), style)
            bad = self._bad_regions(regions, result)
            grown = False
            for ids, _o, _f in (regions[i] for i in bad):
                for h in ids:
                    if after[h] < max_context:
                        after[h] += 1
                        grown = True
                    if before[h] < max_context and not (
                        first_line and before[h] == 0 and self.hunks[h][3] > self.hunks[h][2]
                    ):
                        before[h] += 1
                        grown = True
            if not grown:
                reason = (
                    "no_unique_anchor" if style != "changed_first_line" else "changed_first_line_not_placed"
                )
                raise RenderError(reason, f"no unique anchor within {max_context} lines of context")

    def _bad_regions(self, regions, result) -> list[int]:
        """The regions the applier placed wrongly (all of them when it refused)."""
        if not result.ok or len(result.spans) != len(regions):
            return list(range(len(regions)))
        bad = []
        for number, ((_ids, (o0, o1), _f), (s0, s1)) in enumerate(zip(regions, result.spans, strict=True)):
            while o0 < o1 and not self.orig[o0].strip():
                o0 += 1
            while o1 > o0 and not self.orig[o1 - 1].strip():
                o1 -= 1
            if (s0, s1) != (o0, o1):
                bad.append(number)
        return bad or list(range(len(regions)))

    def _lines(self, regions, spelling: str) -> list[str]:
        lines: list[str] = []
        for number, (_ids, (o0, o1), (b0, b1)) in enumerate(regions):
            if o0 > 0:
                lines.append(self._marker(o0, b0, before=True, text=spelling))
            lines.extend(self.new[b0:b1])
            if number == len(regions) - 1 and o1 < len(self.orig):
                lines.append(self._marker(o1, b1, before=False, text=spelling))
        return lines

    def _marker(self, o: int, b: int, *, before: bool, text: str) -> str:
        """A marker for the original lines elided next to final line `b`, indented like them."""
        elided = self.orig[:o] if before else self.orig[o:]
        sample = next((line for line in (reversed(elided) if before else elided) if line.strip()), "")
        indent = sample[: len(sample) - len(sample.lstrip())]
        new = self.new
        previous = elided[-1] if before and elided else (new[b - 1] if not before and b > 0 else None)
        following = new[b] if before and b < len(new) else (elided[0] if not before and elided else None)
        jsx = looks_like_jsx_child(previous, following)
        return marker_for(self.language, jsx_child=jsx, indent=indent, text=text)

    # ---------------------------------------------------------------- marker-less unit styles
    def unit(self, *, dedent: bool) -> Snippet:
        """The innermost unit of the final file that holds every change, whole (no markers)."""
        style = "dedented_unit" if dedent else "unit"
        structure = Original(self.new, Indentation.of(self.new), markdown=self.language == "markdown")
        if not self.new:
            raise RenderError(f"{style}_is_whole_file", "the final file is empty")
        # a deletion at the very end touches no final line: the last line is the one next to it
        first = min(min(b0 for a0, a1, b0, b1 in self.hunks), len(self.new) - 1)
        last = min(max(max(b1, b0 + 1) for a0, a1, b0, b1 in self.hunks), len(self.new))
        best = None
        for i in range(first, -1, -1):
            if not structure.is_header(i):
                continue
            end = structure.block_end(i)
            if end >= last and i <= first:
                best = (i, end)
                if structure.lines[i].level == 0 or i < first:
                    break
        if best is None:
            raise RenderError(f"{style}_no_enclosing_unit", "no single unit of the file holds every change")
        start, end = best
        if start == 0 and end >= len(self.new):
            raise RenderError(f"{style}_is_whole_file", "the unit holding the change is the whole file")
        lines = self.new[start:end]
        if dedent:
            level = structure.lines[start].level
            if level == 0:
                raise RenderError("dedented_unit_at_top_level", "the unit is not indented")
            cut = len(lines[0]) - len(lines[0].lstrip())
            if any(line.strip() and not line[:cut].isspace() for line in lines):
                raise RenderError(
                    "dedented_unit_uneven", "a line of the unit is indented less than its header"
                )
            lines = [line[cut:] if line.strip() else "" for line in lines]
        return self.check(lines, 1, 0, style)


def _regions(hunks, before, after, orig):
    """Group hunks whose context windows touch: [(hunk ids, (orig start, end), (final start, end))].

    A context window never ends on a blank line (it grows to the next non-blank one): the applier trims
    blank lines off a segment's edges, so an edge must be a line that anchors.
    """
    n_orig = len(orig)
    regions: list[tuple[list[int], list[int], list[int]]] = []
    for h, (a0, a1, b0, b1) in enumerate(hunks):
        o0, o1 = max(0, a0 - before[h]), min(n_orig, a1 + after[h])
        while before[h] and o0 > 0 and not orig[o0].strip():
            o0 -= 1
        while o1 < n_orig and o1 > a1 and not orig[o1 - 1].strip():
            o1 += 1
        f0, f1 = b0 - (a0 - o0), b1 + (o1 - a1)
        if regions and o0 <= regions[-1][1][1]:
            ids, ospan, fspan = regions[-1]
            ids.append(h)
            ospan[1], fspan[1] = max(ospan[1], o1), max(fspan[1], f1)
        else:
            regions.append(([h], [o0, o1], [f0, f1]))
    return [(ids, tuple(o), tuple(f)) for ids, o, f in regions]

"""The deterministic applier: (original, lazy snippet) -> merged file, or a refusal with its reason.

A snippet is split into *segments* by marker lines (`// ... existing code ...` in any common spelling,
see core.markers). Each segment replaces one span of the original, in order:

- It is placed by its *anchors*: the longest run of its first lines that occur in the original (the
  head) and the longest run of its last lines (the tail). Lines before the head or after the tail are
  new or changed: each one *displaces* the original line next to the anchor when the two are clearly
  the same line edited (same depth, similar text or the same signature: a changed `def` line, a
  changed decorator), and is inserted otherwise (a new comment above a function).
- Lines are compared by text and *relative* indentation: a segment may be indented less or more than
  its place in the file (a method given at column 0 without its class); it is placed at the depth its
  anchors have in the file and its new lines are re-indented to the file's tabs or spaces.
- Every placement with more than one candidate is refused as ambiguous; a candidate span that would
  swallow a unit (a function, a class, a section) the segment never mentions is not a candidate.
- A segment with no marker before it (after it) that does not anchor at the file's start (end) keeps
  the code before (after) it: agents leave out the leading marker when they start at a class header.

A snippet without any marker is either the whole new file (when it mentions most of the file's units)
or one or more units of the file (a function, a method, a class, a Markdown section): each is found by
its name or signature and replaced, or inserted after its neighbour when new; a wrapper (a class
header around one method) is entered, not replaced.

It never guesses: an ambiguous or missing anchor, a merge that would drop most of the file, swallow a
unit the snippet does not mention, or break the syntax of a file that parsed (tree-sitter, when the
language is known) is a refusal that says why and quotes the snippet line as written.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import StrEnum

from fastapply_pipeline.core.markers import is_marker_line

_NEWLINE_RE = re.compile(r"\r?\n")
_INDENT_RE = re.compile(r"^[ \t]*")
# Lines that only close a block: they anchor weakly (every block ends with one).
_CLOSER_RE = re.compile(r"^(?:[)}\]]+[;,)]*\)?;?|end|fi|done|esac|</[\w.:-]*>|\)\s*:)$")
_ANONYMOUS_OPENERS = frozenset({"{", "[", "("})  # a block known only by its first line (a table entry)
_SIGNATURE_RES = (
    re.compile(
        r"^(?:(?:export|default|declare|abstract|async|pub(?:\([\w:]+\))?|unsafe|static|extern|public|private|"
        r"protected|final|override|inline)\s+)*(?P<kw>def|class|function\*?|fn|func|interface|type|struct|enum|trait|impl|mod|"
        r"namespace|const|let|var)\s+(?:\((?P<recv>[^)]*)\)\s*)?(?P<name>[A-Za-z_$][\w$]*)"
    ),
    # methods and object members: `foo(`, `async foo(`, `get foo(`, `public static foo<T>(`, `foo = (`
    re.compile(
        r"^(?:(?:public|private|protected|static|readonly|async|override|get|set)\s+)*\*?"
        r"(?P<name>[A-Za-z_$][\w$]*)\s*(?:<[^>]*>)?\s*(?:\(|=\s*(?:async\s*)?\(|:\s*(?:async\s*)?\()"
    ),
)
# How files start: imports, module directives, shebangs, package clauses.
_FILE_START_RE = re.compile(
    r"^(?:import\b|from\s+\S+\s+import\b|(?:const|let|var)\s+.*=\s*require\(|use\s+\w|package\s+\w|"
    r"#include\b|#!|[\"']use (?:strict|client|server)[\"']|extern\s+crate\b|mod\s+\w+;|[\"']{3}|"
    r"(?://|#)\s*(?:Copyright|SPDX-License-Identifier)\b)"
)
_EXIT_RE = re.compile(r"^(?:return|raise|throw)\b")
_HEADING_RE = re.compile(r"^(#{1,6})\s+\S")
_FENCE_RE = re.compile(r"^(```|~~~)")
_LIST_ITEM_RE = re.compile(r"^(\s*)([-*+]|\d+[.)])\s")  # (indentation, bullet): `- item`, `1. step`
_DECORATION_RE = re.compile(
    r"^(?:@|#\[|//|#(?!\s*\[)|/\*|\*)"
)  # decorators, attributes, comments above a unit


class Refusal(StrEnum):
    EMPTY_SNIPPET = "empty_snippet"
    AMBIGUOUS_ANCHOR = "ambiguous_anchor"
    NO_ANCHOR = "no_anchor"
    OUT_OF_ORDER = "out_of_order"
    DROPS_UNMENTIONED_UNIT = "drops_unmentioned_unit"
    DROPS_MOST_OF_FILE = "drops_most_of_file"
    AMBIGUOUS_SCOPE = "ambiguous_scope"
    BREAKS_SYNTAX = "breaks_syntax"


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
    mode: str = ""  # "segments", "units" or "whole_file": how the snippet was read

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
    """How a text indents: with tabs, or with `unit` spaces per level."""

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

    def measure(self, line: str) -> tuple[int, int]:
        """(indentation level, leftover spaces) of a line."""
        lead = _INDENT_RE.match(line).group(0)
        spaces = lead.count(" ")
        return lead.count("\t") + spaces // self.unit, spaces % self.unit

    def render(self, level: int, rest: int, text: str) -> str:
        if not text:
            return ""
        return ("\t" * level if self.tabs else " " * (level * self.unit)) + " " * rest + text


def _space_unit(lines: list[str]) -> int:
    indents = {len(line) - len(line.lstrip(" ")) for line in lines if line.startswith(" ") and line.strip()}
    return max(1, min(min(indents - {0}, default=4), 8))


@dataclass(frozen=True)
class Line:
    raw: str
    text: str  # stripped; '' for a blank line
    level: int
    rest: int

    @property
    def blank(self) -> bool:
        return not self.text

    @property
    def weak(self) -> bool:
        """A line too common to anchor on by itself: blank, a lone closer, a Markdown fence (```` ```sh ````
        opens every shell block of a README)."""
        return not self.text or bool(_CLOSER_RE.match(self.text)) or bool(_FENCE_RE.match(self.text))


def _lines(raw: list[str], indentation: Indentation) -> list[Line]:
    out = []
    for line in raw:
        text = line.strip()
        level, rest = indentation.measure(line) if text else (0, 0)
        out.append(Line(line.rstrip("\r"), text, level, rest))
    return out


def signature(text: str) -> str | None:
    """The name a line declares (`def load(` -> 'def load', `## Usage` -> '## Usage'), or None."""
    if _HEADING_RE.match(text):
        return text.rstrip("# ").strip()
    for pattern in _SIGNATURE_RES:
        found = pattern.match(text)
        if found and found.group("name") not in _NOT_NAMES:
            kind = found.groupdict().get("kw") or ""
            receiver = (found.groupdict().get("recv") or "").split()
            # a Go method is named by its type too: `func (m *Multi) Notify` -> 'func Multi.Notify'
            if receiver:
                name = receiver[-1].lstrip("*").split("[")[0] + "." + found.group("name")
                return f"{kind} {name}"
            # `let response: Response;` declares what `const response = ...` did: one scope declares a name once
            kind = "let" if kind in ("const", "var") else kind
            # a call named by its first argument, a string (`test("returns 404", ...)`, `it('renders')`):
            # each test is its own unit, not one more `test`
            opens = text[found.end() - 1 : found.end()] == "(" and text.endswith("{")  # `it("..", () => {`
            title = _TITLE_RE.match(text, found.end()) if opens else None
            return f"{kind} {found.group('name')} {title.group(0).strip() if title else ''}".strip()
    return None


_TITLE_RE = re.compile(r"""\s*(?:"[^"]*"|'[^']*'|`[^`$]*`)""")


# Keywords the method pattern would read as names: `if (`, and anonymous functions (`async (req) =>`,
# `function (x)`), which name nothing.
_NOT_NAMES = frozenset(
    {
        "if",
        "for",
        "while",
        "switch",
        "return",
        "catch",
        "with",
        "elif",
        "else",
        "match",
        "await",
        "async",
        "function",
    }
)


# a decorator or attribute (its callee), and its first argument where that is a string (`@click.option("--since"`):
# identified by its callee (`@router.get("/items/")` -> `@router.get("/items", ...)` is an edit), but in a stack
# of the same decorator (click options) the argument tells siblings apart (`_other_option`)
_DECORATOR_RE = re.compile(r"""^(@[\w.]+|#\[\w+)(?:\(\s*("[^"]*"|'[^']*'))?""")
_ASSIGNED_RE = re.compile(
    r"^(?:(?:export\s+)?(?:const|let|var|readonly)\s+)?([\w$.\[\]\"']+)\s*(?::[^=]*)?=(?!=)"
)
_KEY_RE = re.compile(r"""^("[^"]+"|'[^']+'|[\w$-]+)\s*:(?!:)""")  # `timeout:`, `"reports.tasks.*":`
_IMPORT_RE = re.compile(
    r"^(?:from\s+(\S+)\s+import\b|import\s+.*?\bfrom\s+(['\"][^'\"]+['\"])|import\s+([\w.]+)\s*$|"
    r"(?:pub\s+)?use\s+((?:\w+::)+))"
)
_JSX_KEY_RE = re.compile(
    r"^<([\w.]+)\b.*?\b(?:key|id|name|type|className|href)=(\{[^}]*\}|\"[^\"]*\"|'[^']*')"
)
_LINK_REF_RE = re.compile(r"^\[([^\]]+)\]:\s")  # a Markdown link reference definition: `[2.1.0]: https://...`
_COMMENT_RE = re.compile(r"^(?:#(?![\[!])|//|/\*|\*|<!--)")


def identity(text: str) -> str | None:
    """What a line declares or sets, so that an edited version of it can be recognised: a signature, a
    decorator, a Markdown link label, an assignment target, an object key, an import's module, a keyed JSX
    element; else None.
    A changed line displaces an original line only when both have the same identity: two `case` labels
    or two `return` statements are siblings, not edits of each other."""
    name = signature(text)
    if name:
        return name
    for kind, pattern in (
        ("decorator", _DECORATOR_RE),
        ("link", _LINK_REF_RE),
        ("import", _IMPORT_RE),
        ("jsx", _JSX_KEY_RE),
        ("set", _ASSIGNED_RE),
        ("key", _KEY_RE),
    ):
        found = pattern.match(text)
        if found:
            # a decorator by its callee (its string argument only tells siblings apart: `_other_option`)
            groups = found.groups()[:1] if kind == "decorator" else found.groups()
            return f"{kind} " + " ".join(g for g in groups if g)
    return None


_LABEL_RE = re.compile(r"^(?:case\b|default\b|else\b|elif\b|except\b|catch\b|finally\b|<)")


def near_copy(a: Line, b: Line) -> bool:
    """A line changed in place: the same first word, most characters kept (`c.mu.Lock()` -> `c.mu.RLock()`).
    Never a `case` label or markup: siblings of those look alike."""
    if a.blank or b.blank or a.weak or b.weak or _LABEL_RE.match(a.text) or _LABEL_RE.match(b.text):
        return False
    first_a, first_b = re.match(r"\W*[\w$]*", a.text).group(0), re.match(r"\W*[\w$]*", b.text).group(0)
    if first_a != first_b:
        return False
    return difflib.SequenceMatcher(None, a.text, b.text, autojunk=False).ratio() >= 0.8


def similar(a: Line, b: Line) -> bool:
    """Whether a snippet line is an edit of an original line (at the same depth already): the same
    identity (see `identity`), or two comment lines that mostly agree."""
    if a.blank or b.blank:
        return a.blank and b.blank
    if a.text == b.text:
        return True
    ident = identity(a.text)
    if ident is not None:
        return ident == identity(b.text)
    if _COMMENT_RE.match(a.text) and _COMMENT_RE.match(b.text):
        return difflib.SequenceMatcher(None, a.text, b.text, autojunk=False).ratio() >= 0.6
    return False


class Original:
    """The original file's lines, with lookups by text and its block structure."""

    def __init__(self, raw: list[str], indentation: Indentation, markdown: bool):
        self.lines = _lines(raw, indentation)
        self.indentation = indentation
        self.markdown = markdown
        self.by_text: dict[str, list[int]] = {}
        for i, line in enumerate(self.lines):
            if line.text:
                self.by_text.setdefault(line.text, []).append(i)
        nonblank = [i for i, line in enumerate(self.lines) if line.text]
        self.first = nonblank[0] if nonblank else 0
        self.last = nonblank[-1] + 1 if nonblank else 0
        self.in_fence = self._fences()
        self._headers: dict[int, bool] = {}
        self._ends: dict[int, int] = {}

    def _fences(self) -> list[bool]:
        inside, out = False, []
        for line in self.lines:
            if self.markdown and _FENCE_RE.match(line.text):
                out.append(True)
                inside = not inside
                continue
            out.append(inside)
        return out

    def is_header(self, i: int) -> bool:
        """Whether line i opens a unit: a Markdown heading, or a line followed by deeper lines."""
        if i not in self._headers:
            self._headers[i] = self._is_header(i)
        return self._headers[i]

    def block_end(self, i: int) -> int:
        """The end (exclusive) of the unit that starts at line i: its deeper lines and its closing line."""
        if i not in self._ends:
            self._ends[i] = self._block_end(i)
        return self._ends[i]

    def _is_header(self, i: int) -> bool:
        line = self.lines[i]
        if line.weak:
            return False
        if self.markdown:
            return not self.in_fence[i] and bool(_HEADING_RE.match(line.text))
        j = i + 1
        while j < len(self.lines) and self.lines[j].blank:
            j += 1
        return j < len(self.lines) and self.lines[j].level > line.level

    def _block_end(self, i: int) -> int:
        lines, n = self.lines, len(self.lines)
        if self.markdown:
            heading = _HEADING_RE.match(lines[i].text)
            if heading:
                depth, j = len(heading.group(1)), i + 1
                while j < n:
                    other = _HEADING_RE.match(lines[j].text)
                    if other and not self.in_fence[j] and len(other.group(1)) <= depth:
                        break
                    j += 1
                while j > i + 1 and lines[j - 1].blank:
                    j -= 1
                return j
        level, j, end = lines[i].level, i + 1, i + 1
        while j < n:
            if lines[j].blank:
                j += 1
                continue
            if lines[j].level > level:
                j += 1
                end = j
                continue
            if lines[j].level == level and (_CLOSER_RE.match(lines[j].text) or _continues(lines[j].text)):
                end, j = j + 1, j + 1
                if lines[j - 1].text.endswith(("{", ":", "(", "[")):
                    continue  # `} else {`, `): Promise<T> {`: the unit goes on
            break
        return end


def _continues(text: str) -> bool:
    """A line at the unit's own depth that still belongs to it (`} else {`, `except:`, `): T {`)."""
    return bool(re.match(r"^(?:[)}\]]|else\b|elif\b|except\b|finally\b|catch\b)", text))


def _same(seg: Line, orig: Line, delta: int) -> bool:
    if seg.blank or orig.blank:
        return seg.blank and orig.blank
    return seg.text == orig.text and seg.level + delta == orig.level and seg.rest == orig.rest


@dataclass
class Placement:
    start: int  # the original span [start, end) the segment replaces
    end: int
    delta: int  # file level - snippet level
    lines: list[str]  # what replaces it, in the file's indentation
    score: int  # anchor lines matched
    starts_new: bool = False  # its first line is new (not an anchor)
    ends_new: bool = False  # its last line is new
    separator: int = 0  # blank lines between the anchors and new code inserted after them
    doubt: str = ""  # why this place, if it is the best one, may be wrong: then the snippet is refused
    omitted: tuple[int, int] = (0, 0)  # the original lines it leaves out between its head and tail anchors
    strong: int = -1  # anchor lines matched that are not blank (-1: not counted, the score stands for it)


def _show(line: Line) -> str:
    return repr(line.raw.strip())


class _Merger:
    def __init__(self, original: str, snippet: str, language: str | None):
        raw, self.newline, self.ends = split_lines(original)
        self.raw = [line.rstrip("\r") for line in raw]
        self.language = language
        indentation = Indentation.of(self.raw)
        self.orig = Original(self.raw, indentation, markdown=language == "markdown")
        snippet_raw, _, _ = split_lines(snippet)
        bare_ellipsis_is_code = any(line.strip() in ("...", "…") for line in self.raw)
        self.markers = [is_marker_line(line, bare_ellipsis=not bare_ellipsis_is_code) for line in snippet_raw]
        self.snippet_indent = indentation.for_snippet(snippet_raw)
        self.snippet = _lines(snippet_raw, self.snippet_indent)
        self._unit_names: dict[int, str | None] = {}
        # The first original line a segment's leading new lines may rewrite: a marker between it and the
        # previous segment stands for at least one line (merge_segments sets it per segment).
        self._floor = 0
        # The end of the block the previous segment opened, when the marker before this one stands inside it
        # (merge_segments sets it per segment): a segment with no anchor is sought there.
        self._ceiling: int | None = None
        self._leading_marker = False  # whether a marker stands right before the segment being placed
        self._trailing_blanks = 0  # blank lines between the segment being placed and the marker after it
        self._keep: int | None = None  # an original line the segment being placed must not leave out
        self._declared: set[str] | None = None  # the signatures the original declares (`_names`)

    # ---------------------------------------------------------------- segments
    def segments(self) -> tuple[list[list[Line]], list[Line | None]]:
        """The segments, and for each gap (before, between, after segments) the marker standing there."""
        segments: list[list[Line]] = []
        gaps: list[Line | None] = [None]
        current: list[Line] = []
        for line, marker in zip(self.snippet, self.markers, strict=True):
            if marker:
                if any(not x.blank for x in current):
                    segments.append(current)
                    gaps.append(None)
                current = []
                gaps[-1] = gaps[-1] or line
            else:
                current.append(line)
        if any(not x.blank for x in current):
            segments.append(current)
            gaps.append(None)
        return [_trim(seg) for seg in segments], gaps

    def render_new(self, line: Line, delta: int) -> str:
        return self.orig.indentation.render(max(0, line.level + delta), line.rest, line.text)

    def candidate_deltas(self, seg: list[Line], cursor: int) -> list[int]:
        votes: Counter[int] = Counter()
        low = min(line.level for line in seg if not line.blank)
        for line in seg:
            if line.blank:
                continue
            weight = 1 if line.weak else 3
            for j in self.orig.by_text.get(line.text, ()):
                if j >= cursor and self.orig.lines[j].rest == line.rest:
                    d = self.orig.lines[j].level - line.level
                    if low + d >= 0:
                        votes[d] += weight
        return [d for d, _ in sorted(votes.items(), key=lambda kv: (-kv[1], abs(kv[0])))][:4]

    def place(
        self,
        seg: list[Line],
        cursor: int,
        *,
        pinned_start: bool,
        after: Line | None = None,
        prefer_delta: int | None = None,
    ) -> Placement:
        """Where a segment goes; raises AnchorError. `prefer_delta`: the previous segment's indentation
        shift, which breaks a tie between placements at different depths (a snippet indents consistently)."""
        if self._is_whole_unit(seg, after):
            unit = self._place_unit(seg, cursor, after)
            if unit is not None:
                return unit
        deltas = self.candidate_deltas(seg, cursor)
        if not deltas:
            fallback = self._place_unit(seg, cursor, after) or self._place_by_identity(seg, cursor)
            if fallback is not None:
                return fallback
            first = next(line for line in seg if not line.blank)
            raise AnchorError(
                Refusal.NO_ANCHOR,
                f"no line of the segment starting {_show(first)} occurs in the original (after the previous segment)",
            )
        found: list[Placement] = []
        errors: list[AnchorError] = []
        for delta in deltas:
            try:
                found.extend(self._place_at(seg, cursor, delta, pinned_start, after))
            except AnchorError as err:
                errors.append(err)
        if not found:
            fallback = self._place_unit(seg, cursor, after) or self._place_by_identity(seg, cursor)
            if fallback is None:
                raise errors[0]
            return fallback
        copies = {id(p): self._copies_beside(p) for p in found} if len({p.delta for p in found}) > 1 else {}
        if any(copies.values()):
            # Depths compete by their best placement, less the lines it would copy at another indentation right
            # beside its span (lines the snippet shows kept, only re-indented around them).
            by_delta: dict[int, int] = {}
            for p in found:
                net = p.score - copies[id(p)]
                by_delta[p.delta] = max(by_delta.get(p.delta, net), net)
            found = [p for p in found if by_delta[p.delta] == max(by_delta.values())]
        best = max(p.score for p in found)
        top = {(p.start, p.end): p for p in found if p.score == best}
        if len(top) == 1 and (chosen := next(iter(top.values()))).strong >= 0:
            # a place that wins only by the blank lines it matches (one method's blank line after it, another's
            # closer) is no better than the other
            top |= {
                (p.start, p.end): p for p in found if p.strong == chosen.strong and p.delta == chosen.delta
            }
        if len(top) > 1 and prefer_delta is not None:
            preferred = {span: p for span, p in top.items() if p.delta == prefer_delta}
            top = preferred if len(preferred) == 1 else top
        if len(top) > 1:
            where = ", ".join(f"{s + 1}" if e - s <= 1 else f"{s + 1}-{e}" for s, e in sorted(top)[:5])
            first = next(line for line in seg if not line.blank)
            raise AnchorError(
                Refusal.AMBIGUOUS_ANCHOR,
                f"the segment starting {_show(first)} fits the original in {len(top)} places (lines {where}); "
                "a unique location needs more unchanged lines around the change",
            )
        chosen = next(iter(top.values()))
        if chosen.doubt:
            raise AnchorError(Refusal.AMBIGUOUS_SCOPE, chosen.doubt)
        return chosen

    def _copies_beside(self, placement: Placement) -> int:
        """How many of the placement's lines copy, at another indentation, a line the file keeps within two
        lines of its span (`<span className="divider" />` written one level deeper right below the old one)."""
        near = {}
        for i in [
            *range(max(0, placement.start - 2), placement.start),
            *range(placement.end, placement.end + 2),
        ]:
            if i < len(self.orig.lines) and not self.orig.lines[i].blank and not self.orig.lines[i].weak:
                near[self.orig.lines[i].text] = self.raw[i]
        return sum(1 for x in placement.lines if x.strip() in near and x != near[x.strip()])

    def _place_at(
        self,
        seg: list[Line],
        cursor: int,
        delta: int,
        pinned_start: bool,
        after: Line | None,
    ):
        lines, n = self.orig.lines, len(self.orig.lines)

        forward: dict[int, list[tuple[int, int]]] = {}

        def forward_runs(h: int) -> list[tuple[int, int]]:
            if h not in forward:
                forward[h] = _forward_runs(h)
            return forward[h]

        def _forward_runs(h: int) -> list[tuple[int, int]]:
            runs = []
            for p in self.orig.by_text.get(seg[h].text, ()):
                if p < cursor:
                    continue
                run = 0
                while h + run < len(seg) and p + run < n and _same(seg[h + run], lines[p + run], delta):
                    run += 1
                # a decoration that ends the run (`#[test]`, `@pytest.fixture`) decorates the next line, which
                # differs: it belongs to the new unit the segment writes there, not to the head
                while run > 1 and h + run < len(seg) and self._decoration(seg[h + run - 1].text):
                    run -= 1
                if run and self._same_parent(seg, h, p, delta):
                    runs.append((p, run))
            return runs

        def backward_runs(t: int, low: int) -> list[tuple[int, int]]:
            runs = []
            for q in self.orig.by_text.get(seg[t].text, ()):
                if q < low:
                    continue
                run = 0
                while t - run >= 0 and q - run >= low and _same(seg[t - run], lines[q - run], delta):
                    run += 1
                if run:
                    runs.append((q + 1, run))
            return runs

        closer_targets: dict[tuple[int, int], set[int]] = {}

        def closers(p: int, head_run: int) -> set[int]:
            if (p, head_run) not in closer_targets:
                closer_targets[p, head_run] = self._closer_targets(seg, h, p, head_run, t, delta)
            return closer_targets[p, head_run]

        def occurs(i: int) -> bool:  # the line is somewhere after the cursor, at this depth
            return not seg[i].blank and any(
                q >= cursor and _same(seg[i], lines[q], delta) for q in self.orig.by_text.get(seg[i].text, ())
            )

        anchors = [i for i in range(len(seg)) if occurs(i) and forward_runs(i)]

        def new_block_opener(k: int) -> int | None:  # the new line that opens the block line k closes
            if self.orig.markdown or not seg[k].weak:
                return None
            level = seg[k].level
            o = next((o for o in range(k - 1, -1, -1) if not seg[o].blank and seg[o].level <= level), None)
            if o is None or seg[o].level != level:
                return None
            if seg[o].text in _ANONYMOUS_OPENERS:
                # an anonymous opener (`{` of a table entry) is as new as its first line
                first = next((q for q in range(o + 1, k) if not seg[q].blank), None)
                return o if first is not None and not occurs(first) else None
            if seg[o].weak or occurs(o):
                return None
            return o

        # A closer that ends a block the segment opens with a new line (the `}` of a new `if` above the first
        # unchanged line, of a new method above the next one) is never the head: it would take the
        # original's closer of another block. A closer the segment does not open (a leading `}`) may be.
        strong = [i for i in anchors if not (seg[i].weak and new_block_opener(i) is not None)]
        if not strong:  # only the closers of new blocks occur (at this depth): nothing here anchors
            raise AnchorError(Refusal.NO_ANCHOR, f"no line of the segment starting {_show(seg[0])} anchors")
        t = next(i for i in range(len(seg) - 1, -1, -1) if occurs(i))

        last = [
            q
            for q in self.orig.by_text.get(seg[t].text, ())
            if q >= cursor and _same(seg[t], lines[q], delta)
        ]

        def contradicted(h: int) -> bool:  # every place of this head lies after the segment's last anchor
            return all(h + run - 1 < t and all(q < p for q in last) for p, run in forward_runs(h))

        # A first line that copies another unit's decoration (the derive attribute of the struct below) is
        # new, not the head, when the segment's own header (its last anchor) comes before every place of it.
        h = next(
            (i for i in strong if not (self._decoration(seg[i].text) and contradicted(i))),
            strong[0],
        )
        if contradicted(h) and not self.orig.markdown:
            # The first unchanged line lies only after the last one: new code that copies a later line (then
            # the head is later), or code appended that copies an earlier one (then the head is right).
            raise AnchorError(
                Refusal.OUT_OF_ORDER,
                f"the segment starting {_show(seg[0])} has its first unchanged line {_show(seg[h])} only after its "
                f"last one {_show(seg[t])} in the original; add unchanged lines that tell where it goes",
            )
        heads = forward_runs(h)
        if pinned_start and h == 0:  # no marker before the snippet: it starts at the file's start if it can
            at_top = [(p, r) for p, r in heads if p == max(cursor, self.orig.first)]
            heads = at_top or heads
        base = min(line.level for line in seg if not line.blank) + delta
        mentioned = {line.text for line in seg if not line.blank}
        mentioned |= {sig for sig in (signature(line.text) for line in seg if not line.blank) if sig}
        # a header the segment rewrites only by its block's opening (`case X:` -> `case X: {`) is mentioned
        headers_mentioned = {_opening_core(line.text) for line in seg if not line.blank}
        placements = []
        # a head whose tail was rejected as the new block's copied ending: why its insertion is in doubt
        copied: dict[tuple[int, int], str] = {}
        for p, head_run in heads:
            if h + head_run - 1 >= t:
                pairs = [(p, head_run, p + head_run, 0, t)]
            else:
                pairs = []
                opener = new_block_opener(t)
                for q_end, tail_run in backward_runs(t, p + head_run):
                    # a tail run may reach back into the head's lines: it then gives them up
                    tail_run = min(tail_run, q_end - (p + head_run), t - (h + head_run) + 1)
                    if (
                        tail_run > 0
                        and (
                            not all(x.weak for x in seg[t - tail_run + 1 : t + 1])
                            or q_end - 1 in closers(p, head_run)
                        )
                        and not self._inside_new_unit(seg, h + head_run, t - tail_run + 1, t)
                    ):
                        if opener is None or self._opens_replaced_block(
                            seg, opener, h + head_run, t - tail_run + 1, p + head_run, q_end - tail_run, delta
                        ):
                            pairs.append((p, head_run, q_end, tail_run, t))
                        elif not self._beside_another_unit(
                            seg[opener], p + head_run, q_end - tail_run, delta
                        ):
                            copied.setdefault(
                                (p, head_run),
                                f"the new block opened by {_show(seg[opener])} ends like the block at line "
                                f"{q_end - tail_run + 1}: a new block, or the lines up to it rewritten? Show the "
                                "lines after the new block",
                            )
                if not pairs and (opener is not None or seg[t].weak):
                    # The last line that occurs closes a block of new code (the `}` of a new `if`), or is
                    # weak (a Markdown fence after a changed command, a call's lone `)`): the tail is the last
                    # run before it that holds a line stronger than a closer, and what follows that run is
                    # new or rewritten.
                    for t2 in range(t - 1 if opener is None else opener - 1, h + head_run - 1, -1):
                        for q_end, tail_run in backward_runs(t2, p + head_run) if occurs(t2) else ():
                            tail_run = min(tail_run, q_end - (p + head_run), t2 - (h + head_run) + 1)
                            run = seg[t2 - tail_run + 1 : t2 + 1]
                            # a line stronger than a closer or a fence (weak), or a decoration every test
                            # carries (`#[test]`)
                            if tail_run > 0 and not all(x.weak or self._decoration(x.text) for x in run):
                                pairs.append((p, head_run, q_end, tail_run, t2))
                        if pairs:
                            break
                if self._keep is not None:  # a later segment shows this line: it is not left out
                    pairs = [pr for pr in pairs if not pr[0] + pr[1] <= self._keep < pr[2] - pr[3]]
                if not pairs:  # no tail worth trusting: the lines after the head are new, inserted there
                    pairs = [(p, head_run, p + head_run, 0, t)]
            for p_, head_run_, q_end, tail_run, t_ in pairs:
                swallowed = [
                    i
                    for i in range(p_ + head_run_, q_end - tail_run)
                    if self._unit_name(i) and not ({lines[i].text, self._unit_name(i)} & mentioned)
                ]
                # any block opened at the segment's own depth that the segment does not mention: a placement
                # without such lines is preferred (it replaces less that nobody asked to change)
                overrun = any(
                    lines[i].level <= base
                    and _opening_core(lines[i].text) not in headers_mentioned
                    and (signature(lines[i].text) or lines[i].text) not in mentioned
                    and self.orig.is_header(i)
                    for i in range(p_ + head_run_, q_end - tail_run)
                )
                placements.append((p_, head_run_, q_end, tail_run, swallowed, overrun, t_))
        if not placements:
            raise AnchorError(
                Refusal.OUT_OF_ORDER,
                f"the segment starting {_show(seg[0])} has its last lines before its first lines in the original",
            )

        # A placement that leaves out a named unit between anchors twice as long as any other placement's, on
        # both sides of the gap (a test deleted between the two shown around it), is kept beside the others.
        def holds_code(run: list[Line]) -> bool:
            return any(not x.weak and not self._decoration(x.text) for x in run)

        most = max((pl[1] + pl[3] for pl in placements if not pl[4]), default=0)
        deletions = [
            pl
            for pl in placements
            if pl[4]
            and pl[3]
            and most
            and pl[1] + pl[3] >= 2 * most
            and holds_code(seg[h : h + pl[1]])
            and holds_code(seg[pl[6] - pl[3] + 1 : pl[6] + 1])
        ]
        for flag in (4, 5):  # prefer placements that swallow no named unit, then none that overrun a block
            clean = [pl for pl in placements if not pl[flag]]
            if len(placements) > 1 and clean:
                placements = clean + [pl for pl in deletions if pl not in clean]
        out, renames = [], None
        for p, head_run, q_end, tail_run, swallowed, _overrun, t_ in placements:
            tail_lines = seg[t_ - tail_run + 1 : t_ + 1] if tail_run else []
            if swallowed and (not tail_run or all(x.weak for x in tail_lines)):
                name = lines[swallowed[0]].text
                raise AnchorError(
                    Refusal.DROPS_UNMENTIONED_UNIT,
                    f"placing the segment starting {_show(seg[0])} would replace {name!r} (line {swallowed[0] + 1}), "
                    "which the snippet does not mention; add a marker for it or more unchanged lines",
                )
            elsewhere = self._declared_elsewhere(seg, p, q_end) if swallowed else None
            if elsewhere is not None:
                # anchors copied from a sibling (the decorators and first lines every command shares): the
                # segment would turn that sibling into the unit it names, which the file has elsewhere
                renames = renames or AnchorError(
                    Refusal.AMBIGUOUS_ANCHOR,
                    f"placing the segment starting {_show(seg[0])} would replace {lines[swallowed[0]].text!r} (line "
                    f"{swallowed[0] + 1}) by {_show(elsewhere)}, which the file declares elsewhere; show unchanged "
                    "lines of that unit",
                )
                continue
            placement = self._build(seg, cursor, delta, h, p, head_run, t_, q_end, tail_run, after)
            if not tail_run and (p, head_run) in copied:
                # the new block inserted, or the lines up to its look-alike ending rewritten: not shown which
                placement = replace(placement, doubt=copied[p, head_run])
            out.append(placement)
        if not out and renames is not None:
            raise renames
        return out

    def _inside_new_unit(self, seg: list[Line], low: int, tail: int, last: int) -> bool:
        """Whether the tail seg[tail : last + 1] lies in the body of a new named unit that the segment opens
        after its head (a new validator whose `return v` copies the next validator's last line): such a tail
        says nothing of where the unit goes. A tail that reaches out of that body (into a unit the file
        has) does."""
        for j in range(tail - 1, low - 1, -1):
            x = seg[j]
            if x.blank or x.level >= seg[tail].level:
                continue
            if any(not y.blank and y.level <= x.level for y in seg[tail : last + 1]):
                return False
            name = None if _LABEL_RE.match(x.text) else signature(x.text)  # `except (A, B):` names nothing
            return bool(name) and not self.orig.by_text.get(x.text) and name not in self._names()
        return False

    def _opens_replaced_block(
        self, seg: list[Line], o: int, h_end: int, t_start: int, low: int, high: int, delta: int
    ) -> bool:
        """A tail (seg[t_start:]) that ends a block the segment opens with a new line (seg[o], `if !valid(x) {`
        ... `return` `}`) anchors only where the original lines it replaces (low..high) are that block's old
        opener and body, rewritten: the opener edited (`if (!a) {` -> `if (!b) {`) or extended (`if (cached) {`
        -> `if (cached && fresh) {`), or else every replaced line of the body edited by a line of the new
        body; and before the old opener only lines that new lines of the segment edit. Elsewhere the tail is
        the new block's own ending, copied from another block further down (`return` `}` of an
        `if err != nil {`; `continue` `}` of the guard below a new guard), and the lines it would replace are
        not shown: the new block is inserted after the head, and the snippet refused where that is the best
        place (it may be a rewrite whose changed lines are not recognised as edits: `const limit = 10;` ->
        `const max = config.maxItems;`)."""
        lines = self.orig.lines
        replaced = self._outer_lines(seg[o], low, high, delta)
        if not replaced:
            return False
        new = [x for x in seg[h_end:o] if not x.blank]
        if not all(any(_edits(x, lines[i], delta) for x in new) for i in replaced[:-1]):
            return False
        old = lines[replaced[-1]]
        body = [i for i in range(replaced[-1] + 1, high) if not lines[i].blank]
        new_body = [x for x in seg[o + 1 : t_start] if not x.blank]
        names = signature(seg[o].text), signature(old.text)
        # two units of other names whose openers look alike (`pub fn ca_bundle(..)`, `pub fn max_retries(..)`):
        # the opener tells nothing where the bodies differ; with the same body it is a rename
        renamed = None not in names and names[0] != names[1] and bool(body or new_body)
        if seg[o].text in _ANONYMOUS_OPENERS:
            # an anonymous block (`{` of a table entry) is the old one only if it starts with the same line
            return bool(body and new_body) and new_body[0].text == lines[body[0]].text
        if not renamed and _rewrites(seg[o], old, delta):
            return True
        return bool(body) and all(any(_rewrites(x, lines[i], delta) for x in new_body) for i in body)

    def _outer_lines(self, opener: Line, low: int, high: int, delta: int) -> list[int]:
        """The original lines in low..high at the depth of a new block's opener or shallower."""
        lines, level = self.orig.lines, opener.level + delta
        return [i for i in range(low, high) if not lines[i].blank and lines[i].level <= level]

    def _beside_another_unit(self, opener: Line, low: int, high: int, delta: int) -> bool:
        """A new unit (`pub fn max_retries(..) {`, named) whose ending copies that of the next unit, which has
        another name (`pub fn ca_bundle(..) {`): it is inserted beside it, not a rewrite of it."""
        name, outer = signature(opener.text), self._outer_lines(opener, low, high, delta)
        if not name or not outer:
            return False
        return signature(self.orig.lines[outer[-1]].text) not in (None, name) and name not in self._names()

    def _declared_elsewhere(self, seg: list[Line], start: int, end: int) -> Line | None:
        """A line of the segment that declares a unit the original declares only outside start..end."""
        inside = {signature(x.text) for x in self.orig.lines[start:end] if x.text}
        for x in seg:
            name = signature(x.text) if not x.blank else None
            if name and name in self._names() and name not in inside:
                return x
        return None

    def _names(self) -> set[str]:
        """The signatures the original declares."""
        if self._declared is None:
            self._declared = {signature(x.text) for x in self.orig.lines if x.text} - {None}
        return self._declared

    def _wrapped_above(self, seg: list[Line], k: int, p: int, delta: int, floor: int):
        """The original statement right above the anchor (`const res = await fetch(url, {` ... `});`), which
        the segment's new lines hold one level deeper inside a block they open (`try {`), its declaration
        perhaps moved up (`let res: Response;` then `res = await fetch(..`): (its first line, the segment line
        before that block's opener, the original line above it), else None. Inserted, it ran twice."""
        lines, i, kk, matched = self.orig.lines, p - 1, k, []
        while i >= floor and not lines[i].blank and kk >= 0:
            candidates = range(kk, -1, -1) if not matched else [kk]  # contiguous once the first one is found
            found = next(
                (
                    j
                    for j in candidates
                    if seg[j].level + delta == lines[i].level + 1
                    and (seg[j].text == lines[i].text or _undeclared(seg[j].text, lines[i].text))
                ),
                None,
            )
            if found is None:
                break
            matched.append((i, found))
            kk, i = found - 1, i - 1
        if len(matched) < 2 or not any(not lines[m].weak for m, _ in matched):
            return None
        top, top_k = matched[-1]
        opener = next((j for j in range(top_k - 1, -1, -1) if not seg[j].blank), None)
        if (
            opener is None
            or seg[opener].level + delta != lines[top].level
            or not seg[opener].text.endswith(("{", ":"))
        ):
            return None
        return top, opener - 1, top - 1

    def _other_option(self, new: Line, i: int, seg: list[Line] | None = None) -> bool:
        """`@click.option("--until")` against `@click.option("--since")`, or any two decorators of one callee in a
        stack of them: another option beside it, not an edit of it (alone, `@router.get("/a")` ->
        `@router.get("/b")` is one)."""
        a, b = _DECORATOR_RE.match(new.text), _DECORATOR_RE.match(self.orig.lines[i].text)
        if (
            not (a and b and a.group(2) and b.group(2))
            or a.groups() == b.groups()
            or a.group(1) != b.group(1)
        ):
            return False
        if a.group(2)[1:2] == "-" and b.group(2)[1:2] == "-" and seg is not None:
            # two command-line flags (`"--dry-run"`, `"--prefix"`) are two options, even alone, when the
            # function the snippet shows still takes the old one (`prefix`); else it may be renamed
            old_name = b.group(2).strip("\"'").lstrip("-").replace("-", "_")
            header = next((x.text for x in seg if (signature(x.text) or "").startswith("def ")), "")
            if old_name and re.search(rf"\b{re.escape(old_name)}\b", header):
                return True
        stack = (j for j in (i - 1, i + 1) if 0 <= j < len(self.orig.lines))
        return any(
            (m := _DECORATOR_RE.match(self.orig.lines[j].text)) and m.group(1) == a.group(1) for j in stack
        )

    def _open_block_end(self, previous: Placement, marker: Line | None) -> int | None:
        """Where the block ends that the previous segment opened and the marker after it stands inside
        (`export function f(..) {` placed, then `  // ... existing code ...` one level deeper): the next
        segment's lines, up to a marker at the header's depth, lie in that block."""
        last = previous.end - 1
        if marker is None or last < 0 or not self.orig.is_header(last):
            return None
        if marker.level + previous.delta <= self.orig.lines[last].level:
            return None
        return self.orig.block_end(last)

    def _place_by_identity(self, seg: list[Line], cursor: int) -> Placement | None:
        """A segment with no unchanged line at all, each line an edit of one original line (a changed
        import, a changed signature): placed over the one run of original lines it edits, if unique. A
        signature spread over several lines (`export function f(`, one parameter a line, `): T {`) edits the
        one line that declares the same name."""
        body = [x for x in seg if not x.blank]
        groups = _header_groups(body)
        lines, found = self.orig.lines, []
        for i in range(cursor, self._ceiling or len(lines)):
            delta = lines[i].level - body[0].level
            if not _edits(body[0], lines[i], delta):
                continue
            j, ok = i, True
            for first, last in groups:
                while j < len(lines) and lines[j].blank:
                    j += 1
                if (
                    j >= len(lines)
                    or not _edits(body[first], lines[j], delta)
                    or self._other_option(body[first], j)
                ):
                    ok = False
                    break
                if last > first + 1 and not lines[j].text.endswith(body[last - 1].text[-1]):
                    ok = False  # the old line must hold the whole header (`f(a, b): T {`), not its first part
                    break
                j += 1
            if ok:
                found.append((i, j, delta))
        if len(found) > 1 and all(_IMPORT_RE.match(x.text) for x in body):
            # imports of one module (`import {..}` and `import type {..}`): the one the changed line nearly copies
            found = [(i, j, d) for i, j, d in found if self._near_copies(body, i, j)]
        if len(found) != 1:
            return None
        start, end, delta = found[0]
        if self._declared_elsewhere(seg, start, end) is not None:
            return None  # `def summary(` "edited" into `def export(`, which the file has elsewhere: no edit
        return Placement(start, end, delta, [self.render_new(x, delta) for x in seg], 0, True, True)

    def _near_copies(self, body: list[Line], i: int, j: int) -> bool:
        targets = [x for x in self.orig.lines[i:j] if not x.blank]
        return len(targets) == len(body) and all(near_copy(x, y) for x, y in zip(body, targets, strict=True))

    def _is_whole_unit(self, seg: list[Line], after: Line | None) -> bool:
        """A segment that is one complete unit: a header with a name (after its decorations), every other
        line deeper (or its closing line at the header's depth), and no marker inside it after."""
        body = [x for x in seg if not x.blank]
        at = next((k for k, x in enumerate(body) if not self._decoration(x.text)), None)
        if at is None or len(body) - at < 2 or not signature(body[at].text):
            return False
        header, rest = body[at], body[at + 1 :]
        if self.orig.markdown:  # a section ends at the next heading: shown whole only if nothing follows it
            return (
                after is None
                and bool(_HEADING_RE.match(header.text))
                and not any(
                    (m := _HEADING_RE.match(x.text))
                    and len(m.group(1)) <= len(_HEADING_RE.match(header.text).group(1))
                    for x in rest
                )
            )
        closed = rest[-1].level == header.level and bool(_CLOSER_RE.match(rest[-1].text))
        if not closed:  # without its closing line the snippet may show only the unit's top
            return False
        inner = rest[:-1]
        if any(x.level < header.level for x in inner) or any(x.level < header.level for x in body[:at]):
            return False
        if any(x.level == header.level and not _continues(x.text) for x in inner):
            return False  # a second unit after the first one's closer (`}` then `pub fn next(`): not one unit
        return after is None or after.level <= header.level

    def _place_unit(self, seg: list[Line], cursor: int, after: Line | None) -> Placement | None:
        """A segment that is one whole unit whose lines no longer anchor (a new signature and body):
        placed over the original unit of the same name, when there is exactly one after `cursor`."""
        try:
            found = self._find_unit(seg, cursor, len(self.orig.lines))
        except AnchorError:
            return None
        if found is None:
            return None
        j, delta = found
        if not self.orig.is_header(j):
            return None  # a call statement (`flush();`) names no unit
        header_at = next((k for k, x in enumerate(seg) if not x.blank and not self._decoration(x.text)), 0)
        header = seg[header_at]
        if any(x.level < header.level for x in seg if not x.blank):
            return None
        if after is not None and after.level > header.level:
            return None  # the marker after it stands inside the unit: only part of it is shown
        last = next(x for x in reversed(seg) if not x.blank)
        if not self.orig.markdown and last.text.endswith((":", "{", "(", "[")):
            return None  # it stops at a block's opening line (`if not rows:`): only the unit's top is shown
        start = j
        if header_at:
            while start - 1 >= cursor and self._decoration(self.orig.lines[start - 1].text):
                start -= 1
        end = self.orig.block_end(j)
        return Placement(start, end, delta, [self.render_new(x, delta) for x in seg], 1)

    def _rewritten_prose(self, new: list[Line], end: int) -> int:
        """Markdown: new lines after the last anchor replace the section's lines up to the last one they
        rewrite (a sentence reworded, a command changed), in order; the rest of the section stays."""
        lines = self.orig.lines
        stop = end
        while stop < len(lines) and not (
            _HEADING_RE.match(lines[stop].text) and not self.orig.in_fence[stop]
        ):
            stop += 1
        reach, k = end, 0
        for i in range(end, stop):
            match = next((kk for kk in range(k, len(new)) if _rewords(new[kk], lines[i])), None)
            if match is None and reach == i and k < len(new) and _FENCE_RE.match(new[k].text):
                match = k if new[k].text == lines[i].text else None  # the fence right after a rewritten line
            if match is not None:
                reach, k = i + 1, match + 1
        return reach

    def _rewritten_prose_before(self, new: list[Line], start: int, floor: int) -> int:
        """Markdown: the first of the section's lines above the anchor that new lines before it look like a
        rewrite of (a step reworded, in order from the anchor up; an ordered list item and the item of its
        number: `2. Install the dependencies:`, `2. Install them with pnpm:`), else `start`. Such new lines may
        rewrite those lines or be new beside them: the caller doubts the placement where no marker says."""
        lines = self.orig.lines
        stop = start
        while stop > floor and not (
            _HEADING_RE.match(lines[stop - 1].text) and not self.orig.in_fence[stop - 1]
        ):
            stop -= 1
        reach, k = start, len(new) - 1
        for i in range(start - 1, stop - 1, -1):
            match = next(
                (
                    kk
                    for kk in range(k, -1, -1)
                    if _rewords(new[kk], lines[i]) or _same_item(new[kk], lines[i])
                ),
                None,
            )
            if match is not None:
                reach, k = i, match - 1
        return reach

    def _unit_tail(self, seg, new, delta, q_end, end, after) -> int:
        """A segment that ends with new lines inside a unit whose header it shows, with no marker inside
        that unit after it, rewrote the unit's tail: its remaining statements go when they are no more than
        the new ones (counted at the new lines' depth), or when the snippet ends there and so does the file
        (`def main():` with a new body)."""
        lines = self.orig.lines
        anchor = q_end - 1
        ending = next(x for x in reversed(new) if not x.blank).level + delta  # where the new lines end
        j, limit, inner = anchor, lines[anchor].level, None
        while j >= 0:
            if self.orig.is_header(j) and (j == anchor or lines[j].level < limit or self.orig.markdown):
                if self.orig.markdown or signature(lines[j].text):
                    break
                if inner is None and lines[j].level < ending:
                    inner = j  # the unnamed block (`with`, `if`) in whose body the new lines end
                limit = lines[j].level
            j -= 1
        if j < 0 or not signature(lines[j].text):
            return end  # only a named unit (a function, a method, a section) says where its tail ends
        mentioned = {x.text for x in seg} | {signature(x.text) for x in seg if not x.blank}
        if not ({lines[j].text, signature(lines[j].text)} & mentioned):
            return end
        level = lines[j].level
        if after is not None and after.level + delta > level:
            return end  # the marker stands inside the unit: its other lines are kept
        unit_end = block_end = self.orig.block_end(j)
        if unit_end > end and lines[unit_end - 1].level == level and lines[unit_end - 1].weak:
            unit_end -= 1  # its closing line stays
        while unit_end > end and lines[unit_end - 1].blank:
            unit_end -= 1
        if inner is not None:
            # The new lines end inside an unnamed block of the unit: the block's old last lines go only where
            # each is an edit of a new line (`self._entries[key] = ...` rewritten) and the block is where the
            # unit ends; a new line beside them (`log(key)`), or code after the block (`return x`, `else:`),
            # is kept.
            rest = [x for x in lines[end:unit_end] if not x.blank]
            inside = self.orig.block_end(inner) >= unit_end and all(x.level >= ending for x in rest)
            edited = all(
                x.level > ending or any(_edits(y, x, delta) for y in new if not y.blank) for x in rest
            )
            return unit_end if rest and inside and edited else end
        depth = new[0].level + delta
        remaining = sum(1 for x in lines[end:unit_end] if not x.blank and x.level <= depth)
        new_count = sum(1 for x in new if not x.blank and x.level + delta <= depth)
        at_file_end = after is None and unit_end >= self.orig.last  # no marker after: the snippet's end
        # the snippet closes the unit: its end (the unit's closing line, or in a language without one a final
        # `return`), the blank lines that follow it in the file, then a marker outside it
        gap = next((g for g, x in enumerate(lines[block_end:]) if not x.blank), 0)
        last_new = next(x for x in reversed(new) if not x.blank)
        closer = lines[block_end - 1]
        ends = (
            (last_new.weak and last_new.level + delta == level)
            if closer.weak and closer.level == level
            else bool(_EXIT_RE.match(last_new.text)) and last_new.level + delta == lines[j + 1].level
        )
        closed = (
            ends
            and after is not None
            and after.level + delta <= level
            and self._trailing_blanks >= max(1, gap)
        )
        return unit_end if remaining and (remaining <= new_count or at_file_end or closed) else end

    def _same_parent(self, seg: list[Line], h: int, p: int, delta: int) -> bool:
        """Lines the segment puts inside a block it opens with a new line (`case "renamed":` then `return {`)
        anchor only where the original's enclosing line at that depth is that line edited: never inside
        another block that merely starts the same way (`case "toggled":`)."""
        lines = self.orig.lines
        level, j = seg[h].level, p
        for x in reversed(seg[:h]):
            if x.blank or x.level >= level:
                continue
            if _continues(x.text) and x.text not in self.orig.by_text:
                # a new header's closing line (`): Promise<T> {`): its opener is the parent
                level = x.level + 1
                continue
            level = x.level
            while j > 0 and (lines[j].blank or lines[j].level > level + delta):
                j -= 1
            if x.text not in self.orig.by_text and not (
                lines[j].level == level + delta and similar(x, lines[j])
            ):
                return False
        return True

    def _closer_targets(self, seg, h, p, head_run, k, delta) -> set[int]:
        """The original lines where snippet line k, a lone closer (`}`, `</div>`), may anchor: the closing
        line of the block that line k closes in the snippet (its opener found by indentation: an anchor, or
        the first original line after the head that the opener edits), or, when the snippet opens none
        there, the closing lines of the blocks around the head."""
        lines, level = self.orig.lines, seg[k].level
        opener = next((o for o in range(k - 1, -1, -1) if not seg[o].blank and seg[o].level <= level), None)
        if opener is not None and seg[opener].level == level and not seg[opener].weak:
            if h <= opener < h + head_run:
                return {self.orig.block_end(p + opener - h) - 1}
            window = (
                range(p + head_run, len(lines))
                if opener >= h + head_run
                else range(p - 1, max(-1, p - 50), -1)
            )
            for j in window:
                if lines[j].level == level + delta and similar(seg[opener], lines[j]):
                    return {self.orig.block_end(j) - 1}
                if lines[j].level < level + delta and not lines[j].blank:
                    break  # left the block the opener would sit in
            return set()
        targets, j, depth = set(), p, lines[p].level
        while j > 0 and depth > 0:  # the blocks around the head, innermost first
            j -= 1
            if lines[j].blank or lines[j].level >= depth:
                continue
            depth = lines[j].level
            if self.orig.is_header(j):
                targets.add(self.orig.block_end(j) - 1)
        return targets

    def _unit_name(self, i: int) -> str | None:
        """The name of the unit line i opens (a function, class, method, section), or None."""
        if i not in self._unit_names:
            line = self.orig.lines[i]
            name = None
            if not line.blank and not (self.orig.markdown and self.orig.in_fence[i]):
                name = signature(line.text)
                name = name if name and self.orig.is_header(i) else None
            self._unit_names[i] = name
        return self._unit_names[i]

    def _build(self, seg, cursor, delta, h, p, head_run, t, q_end, tail_run, after) -> Placement:
        lines, n = self.orig.lines, len(self.orig.lines)
        if not tail_run:  # one block of anchors: its end is the end of the head run
            t, q_end = h + head_run - 1, p + head_run
        # Leading new lines displace the original lines they edit, walking up from the anchor through
        # lines some new line edits (a signature, a decorator) and decorations or comments between them.
        start, k, i = p, h - 1, p - 1
        floor = max(cursor, self._floor)
        if (
            k >= 0
            and i >= floor
            and seg[k].level + delta == lines[i].level
            and (near_copy(seg[k], lines[i]) or _adds_argument(seg[k], lines[i]))
        ):
            start, k, i = i, k - 1, i - 1  # a changed first statement right above the anchor
        elif k >= 0 and i >= floor and (o := _expanded_element(seg, k, lines[i], delta)) is not None:
            # `<td>{x}</td>` right above the anchor, spread over lines around {x}
            start, k, i = i, o - 1, i - 1
        elif k >= 0 and (wrapped := self._wrapped_above(seg, k, p, delta, floor)) is not None:
            start, k, i = wrapped  # the lines above the anchor moved into a new `try {` (one level deeper)
        while k >= 0 and i >= floor and not lines[i].blank:
            match = next(
                (
                    kk
                    for kk in range(k, -1, -1)
                    if not seg[kk].weak
                    and _displaces(seg[kk], lines[i], delta)
                    and not self._other_option(seg[kk], i, seg)
                ),
                None,
            )
            if match is not None:
                start, k = i, match - 1
            elif not self._decoration(lines[i].text):
                break
            i -= 1
        if self.orig.markdown and start == p:
            # A new heading right above the section's first unchanged line (blank lines apart) renames the
            # heading at the same place and level (`## Install` -> `## Installation`): inserted, it would
            # leave the old heading over an empty section, since the snippet shows nothing between them.
            kk, ii = h - 1, p - 1
            while kk >= 0 and ii >= floor and seg[kk].blank and lines[ii].blank:
                kk, ii = kk - 1, ii - 1
            renamed = (
                kk >= 0
                and ii >= floor
                and not _HEADING_RE.match(seg[h].text)  # under a new heading, a subheading may be new too
                and _same_level_headings(seg[kk], lines[ii])
            )
            # likewise a sentence with one word or number changed (`Rate limit: 100 ...` -> `300`): two
            # paragraphs that differ in one value contradict each other
            restated = (
                kk >= 0
                and ii >= floor
                and not any(_HEADING_RE.match(x.text) for x in seg[:h])  # a new section may say the same
                and _restates(seg[kk], lines[ii])
            )
            if renamed or restated:
                start = ii
            elif (heading := self._heading_renamed_above(seg[:h], p, floor)) is not None:
                start = heading  # `### DELETE /v1/x` -> `### DELETE /v1/x (deprecated)`, new text under it
        doubt = ""
        if self.orig.markdown and start == p:
            anchor = _HEADING_RE.match(seg[h].text)
            doubt = self._new_heading_doubt(seg[:h], p, floor, len(anchor.group(1)) if anchor else None)
            if not doubt and not self._leading_marker and not any(_HEADING_RE.match(x.text) for x in seg[:h]):
                rewritten = self._rewritten_prose_before(seg[:h], p, floor)
                if rewritten < p:
                    # no marker above: new lines like the old ones above the anchor (`2. Install ...`) may
                    # rewrite them or be new beside them
                    doubt = (
                        f"the new lines above {_show(seg[h])} look like a rewrite of line {rewritten + 1} "
                        f"({_show(lines[rewritten])}) but may be new; start the snippet with a marker, or show "
                        "the old lines they replace"
                    )
        # A new signature among them that names the unit the anchor sits in: the edit starts at that
        # unit's header (its lines before the anchor were rewritten).
        for x in seg[:h]:
            name = signature(x.text) if not x.blank else None
            if not name:
                continue
            for j in range(start - 1, cursor - 1, -1):
                if (
                    lines[j].level == x.level + delta
                    and signature(lines[j].text) == name
                    and self.orig.block_end(j) > p
                ):
                    start = min(start, j)
                    break
        if start == p and (above := self._rewritten_unit_above(seg[:h], p, floor, delta)) is not None:
            start = above
        # Trailing new lines likewise, walking forward.
        end, k = q_end, t + 1
        while k < len(seg) and end < n:
            again = self._declared_again(seg, k, end, delta)
            if again is not None:
                # new lines, then `const value = ...` where the file declares `const value` next: that
                # declaration edited (declared twice in one scope, the code would not compile)
                k, end = again
                continue
            if seg[k].blank and lines[end].blank:
                # The same gap on both sides, then a line that edits the file's next one: the gap is the
                # file's, and the edit goes on past it. Three such edits: the snippet's last line, with no
                # marker after it, editing the file's last line (`]`, a blank line, `__version__ = "2.4.0"`;
                # with more after it, it may be a new step of the same name); a new `return` in place of the
                # one that ends the block there; a Markdown heading right before a marker (a section renamed).
                kk = next((j for j in range(k, len(seg)) if not seg[j].blank), len(seg))
                ee = next((j for j in range(end, n) if not lines[j].blank), n)
                if kk - k == ee - end and (
                    (
                        after is None
                        and kk == len(seg) - 1
                        and ee == self.orig.last - 1
                        and _displaces(seg[kk], lines[ee], delta)
                    )
                    or (kk < len(seg) and ee < n and self._replaces_exit(seg[kk], ee, delta))
                    or (
                        self.orig.markdown
                        and kk == len(seg) - 1
                        and self._renames_section(seg[kk], ee, after)
                    )
                ):
                    k, end = kk, ee
                    continue
                break
            stack = next((j for j in range(k, len(seg)) if not self._decoration(seg[j].text)), len(seg)) - k
            if (
                stack
                and k + stack < len(seg)
                and end + stack < n
                and not _displaces(seg[k + stack], lines[end + stack], delta)
            ):
                # `#[test]` (or `@field_validator(..)` / `@classmethod`) above a new unit is that unit's, not
                # the next old unit's rewritten
                break
            if (
                _displaces(seg[k], lines[end], delta)
                or self._replaces_exit(seg[k], end, delta)
                or (k == len(seg) - 1 and self._reopens(seg[k], end, delta, after))
                or (k == len(seg) - 1 and self._wraps_last_line(seg[k], end, delta, after))
                or (self.orig.markdown and k == len(seg) - 1 and self._renames_section(seg[k], end, after))
                or (not self.orig.is_header(end) and _spreads(seg, k, lines[end], delta))
            ):
                # a one-line entry spread over lines (`bio: [{...}],` -> `bio: [` / items / `],`): all of them
                spread = None if self.orig.is_header(end) else _spread_end(seg, k)
                end, k = end + 1, spread or k + 1
                continue
            docstring = self._rewritten_docstring(seg, k, end, delta)
            if docstring is not None:
                k, end = docstring
                continue
            if self._collapses_block(seg[k], end, delta):
                end, k = self.orig.block_end(end), k + 1
                continue
            restyled = _restyled_element(seg, k, lines, end, delta)
            if restyled is not None:
                k, end = restyled, end + 1
                continue
            block = self._rewritten_block(seg, k, end, delta)
            if block is None:
                break
            k, end = block
        if k < len(seg) and self.orig.markdown:
            end = self._rewritten_prose(seg[k:], end)
        elif k < len(seg):
            end = self._unit_tail(seg, seg[k:], delta, q_end, end, after)
        body = seg[h + head_run : t - tail_run + 1] if tail_run else []
        rendered = [self.render_new(x, delta) for x in body]
        if tail_run and p + head_run == q_end - tail_run and rendered and rendered[0] and rendered[-1]:
            # New code inserted into a run of blank lines between two anchors: it is set off on both sides by
            # the run's full length, the file's own spacing (two blank lines between Python functions).
            before = sum(1 for _ in itertools.takewhile(lambda x: x.blank, reversed(lines[p : p + head_run])))
            after_ = sum(1 for _ in itertools.takewhile(lambda x: x.blank, lines[q_end - tail_run : q_end]))
            if before and after_ and before < head_run:
                gap = before + after_
                rendered = [""] * (gap - before) + rendered + [""] * (gap - after_)
        new_lines = (
            [self.render_new(x, delta) for x in seg[:h]]
            + [x.raw for x in lines[p : p + head_run]]
            + rendered
            + [x.raw for x in lines[q_end - tail_run : q_end]]
            + [self.render_new(x, delta) for x in seg[t + 1 :]]
        )
        separator = 0
        # New code inserted after the head (not rewriting the lines that follow it): separated from what
        # follows as the head is from it.
        if not tail_run and end == q_end:
            while separator < head_run and lines[p + head_run - 1 - separator].blank:
                separator += 1
        omitted = (p + head_run, q_end - tail_run) if tail_run else (0, 0)
        anchored = seg[h : h + head_run] + (seg[t - tail_run + 1 : t + 1] if tail_run else [])
        strong = sum(1 for x in anchored if not x.blank)
        return Placement(
            start,
            end,
            delta,
            new_lines,
            head_run + tail_run,
            h > 0,
            k < len(seg),
            separator,
            doubt,
            omitted,
            strong,
        )

    def _rewritten_unit_above(self, lead: list[Line], p: int, floor: int, delta: int) -> int | None:
        """The new lines above the anchor are one whole unit (`case 'RENAME_TODO': {` ... `}`) whose header
        is that of the unit ending right above the anchor, blank lines apart (`case 'RENAME_TODO':`): that unit
        rewritten, not a second one beside it. Returns where it starts, else None."""
        body = [x for x in lead if not x.blank]
        if self.orig.markdown or not body or not lead[-1].blank:
            return None
        head, level = body[0], body[0].level
        if head.weak or not all(x.level > level or (x.weak and x.level == level) for x in body[1:]):
            return None
        i = self._nonblank_above(p, floor)
        lines = self.orig.lines
        j = next((j for j in range(i, floor - 1, -1) if lines[j].level <= level + delta), None)
        if j is None or lines[j].level != level + delta or not self.orig.is_header(j):
            return None
        if self.orig.block_end(j) != i + 1:
            return None
        same = _opening_core(lines[j].text) == _opening_core(head.text) or (
            signature(head.text) is not None and signature(head.text) == signature(lines[j].text)
        )
        return j if same else None

    def _nonblank_above(self, p: int, floor: int) -> int:
        """The last original line above p that is not blank, looking no higher than floor (floor - 1: none)."""
        i = p - 1
        while i >= floor and self.orig.lines[i].blank:
            i -= 1
        return i

    def _heading_renamed_above(self, lead: list[Line], p: int, floor: int) -> int | None:
        """Markdown: the new lines above the anchor open with a heading that keeps the words of the heading
        right above the anchor (blank lines apart) and adds to them (`### DELETE /v1/x` -> `### DELETE /v1/x
        (deprecated)`), then new text: that heading edited, the text under it new. Its line, else None."""
        first = next((x for x in lead if not x.blank), None)
        i = self._nonblank_above(p, floor)
        if first is None or i < floor or (i == p - 1 and not lead[-1].blank):
            return None
        old = self.orig.lines[i]
        if self.orig.in_fence[i] or not _same_level_headings(first, old):
            return None
        return i if _extends(first.text, old.text) else None

    def _new_heading_doubt(self, lead: list[Line], p: int, floor: int, anchor_depth: int | None) -> str:
        """Markdown: a segment that starts with a new heading above lines in the middle of a section of the
        same level (`## Getting started`, new text, then the old `## Installation` section's code) renames
        that section or splits it: the snippet does not say which. Likewise above a subheading of that
        section (`## [1.1.0]` above the `### Added` of `## [1.0.0]`: a new release whose subheading looks
        like the old one's would take the old one's). `anchor_depth`: the level of the heading the segment
        anchors on, if it anchors on one."""
        first = next((x for x in lead if not x.blank), None)
        found = _HEADING_RE.match(first.text) if first is not None else None
        if found is None or (anchor_depth is not None and anchor_depth <= len(found.group(1))):
            return ""  # a new section right above a section of its level or higher ends where that starts
        lines = self.orig.lines
        for i in range(p - 1, floor - 1, -1):
            heading = None if self.orig.in_fence[i] else _HEADING_RE.match(lines[i].text)
            if heading is None:
                continue
            if len(heading.group(1)) == len(found.group(1)) and (
                anchor_depth is not None or any(not x.blank for x in lines[i + 1 : p])
            ):
                return (
                    f"the new heading {_show(first)} starts inside the section {_show(lines[i])} (line {i + 1}): "
                    "a rename of it or a new section? Show the old heading, or a marker between them"
                )
            if len(heading.group(1)) <= len(found.group(1)):
                return ""
        return ""

    def _replaces_exit(self, new: Line, i: int, delta: int) -> bool:
        """A new `return`/`raise`/`throw` in place of the one that ends the original's block at the same
        depth: a second exit after the first would be dead code, so it is that exit rewritten."""
        old, lines = self.orig.lines[i], self.orig.lines
        if new.level + delta != old.level or not (_EXIT_RE.match(new.text) and _EXIT_RE.match(old.text)):
            return False
        after = next((x for x in lines[i + 1 :] if not x.blank), None)
        return after is None or after.level < old.level

    def _declared_again(self, seg: list[Line], k: int, i: int, delta: int) -> tuple[int, int] | None:
        """The file's next statement (blank lines apart) declares a block-scoped name (`const value = ...`,
        JavaScript/TypeScript) that one of the segment's next new lines in the same block declares again: the
        new lines up to it, and it (spread over lines or not), replace the file's lines through that one.
        Returns (segment index, original index) after them, else None."""
        if self.language not in _JS_LANGUAGES:
            return None
        lines = self.orig.lines
        while i < len(lines) and lines[i].blank:
            i += 1
        old = _BLOCK_DECLARATION_RE.match(lines[i].text) if i < len(lines) else None
        if old is None or self.orig.is_header(i):
            return None
        for j in range(k, len(seg)):
            x = seg[j]
            if x.blank or x.level + delta > lines[i].level:
                continue
            if x.level + delta < lines[i].level:
                return None  # the segment left the block
            new = _BLOCK_DECLARATION_RE.match(x.text)
            if new and new.group(1) == old.group(1):
                if x.text == lines[i].text:
                    return None  # the same line: an anchor, not an edit
                return _spread_end(seg, j) or j + 1, i + 1
        return None

    def _renames_section(self, new: Line, i: int, after: Line | None) -> bool:
        """Markdown: the segment's last line is a heading and a marker follows (the section's text elided),
        where the file has a heading of the same level: that section renamed (`## Step 4: Load ...` ->
        `## Step 5: Load ...`). Inserted, the new section would be empty."""
        return (
            after is not None and i < len(self.orig.lines) and _same_level_headings(new, self.orig.lines[i])
        )

    def _wraps_last_line(self, new: Line, i: int, delta: int, after: Line | None) -> bool:
        """The snippet's last line, with no marker after it, keeps every word of the file's last line at its
        depth and adds to them (`main()` -> `sys.exit(main())`): that line edited, not a second one after it."""
        old = self.orig.lines[i]
        return (
            after is None
            and i == self.orig.last - 1
            and not old.weak
            and new.level + delta == old.level
            and _extends(new.text, old.text)
        )

    def _rewritten_docstring(self, seg: list[Line], k: int, i: int, delta: int) -> tuple[int, int] | None:
        """Python: a new docstring right under the header whose docstring the file has there (one line or
        several): it replaces that docstring. Returns (segment index, original index) after both, else None."""
        old, new = self.orig.lines[i], seg[k]
        if self.language != "python" or new.level + delta != old.level or i == 0:
            return None
        quote = next((q for q in ('"""', "'''") if new.text.startswith(q)), None)
        if quote is None or not old.text.startswith(quote) or not signature(self.orig.lines[i - 1].text):
            return None

        def close(lines: list[Line], j: int) -> int | None:  # the index after the docstring opened at j
            if lines[j].text.count(quote) >= 2:
                return j + 1
            return next((m + 1 for m in range(j + 1, len(lines)) if quote in lines[m].text), None)

        new_end, old_end = close(seg, k), close(self.orig.lines, i)
        return None if new_end is None or old_end is None else (new_end, old_end)

    def _collapses_block(self, new: Line, i: int, delta: int) -> bool:
        """A one-line statement in place of a grouped one that held it (`import (` / `"strings"` / `"testing"` /
        `)` -> `import "testing"`): the group's opening, at the same depth, then only items of the group."""
        old, lines = self.orig.lines[i], self.orig.lines
        if (
            new.weak
            or new.level + delta != old.level
            or not old.text.endswith("(")
            or not self.orig.is_header(i)
        ):
            return False
        opening = old.text[:-1].rstrip()  # `import`, `from django.db import`
        if not opening or not new.text.startswith(opening + " "):
            return False
        items = {
            x.text.rstrip(",") for x in lines[i + 1 : self.orig.block_end(i)] if not x.blank and not x.weak
        }
        kept = [x.strip() for x in new.text[len(opening) :].split(",")]
        return all(x in items for x in kept)

    def _rewritten_block(self, seg: list[Line], k: int, i: int, delta: int) -> tuple[int, int] | None:
        """A whole block of new lines that rewrites the original's block at i (`if (b) {..}` -> `if (b && c)
        {..}`): the same statement word, most of its header kept, its closing line shown, and a body line in
        common. Returns where the snippet's and the original's blocks end."""
        new, old, lines = seg[k], self.orig.lines[i], self.orig.lines
        if new.blank or new.weak or new.level + delta != old.level or not self.orig.is_header(i):
            return None
        if _LABEL_RE.match(new.text) or _LABEL_RE.match(old.text):
            return None  # `case` labels: siblings look alike
        if identity(new.text) or identity(old.text):
            return None  # named units and keyed lines are matched by their names (`similar`)
        word_new, word_old = (re.match(r"[A-Za-z_$][\w$]*", x.text) for x in (new, old))
        if not word_new or not word_old or word_new.group(0) != word_old.group(0):
            return None
        if difflib.SequenceMatcher(None, new.text, old.text, autojunk=False).ratio() < 0.6:
            return None
        j = k + 1
        while j < len(seg) and (seg[j].blank or seg[j].level > new.level):
            j += 1
        end = self.orig.block_end(i)
        if (
            lines[end - 1].weak and lines[end - 1].level == old.level
        ):  # the original's block has a closing line
            if not (j < len(seg) and seg[j].weak and seg[j].level == new.level):
                return None
            j += 1
        body = {x.text for x in seg[k + 1 : j] if not x.blank and not x.weak}
        old_body = {x.text for x in lines[i + 1 : end] if not x.blank and not x.weak}
        # an extension of the old block (its header's words kept in order, every old body line kept), not a
        # sibling that shares a line with it
        if j - k < 2 or not old_body or not old_body <= body or not _extends(new.text, old.text):
            return None
        return j, end

    def _reopens(self, new: Line, i: int, delta: int, after: Line | None) -> bool:
        """The segment's last line opens a block whose body the next marker elides (`<div className=..>`
        then `{/* ... */}` one level deeper): it rewrites the original's opener of the same kind there."""
        old = self.orig.lines[i]
        if after is None or after.level <= new.level or new.level + delta != old.level or new.weak:
            return False
        if not self.orig.is_header(i):
            return False
        return _extends(new.text, old.text)  # `className="a"` -> `className="a b"`; never a wrapper's rename

    def merge_segments(self) -> tuple[list[str], list[tuple[int, int]]]:
        segments, gaps = self.segments()
        placements: list[Placement] = []
        edges = self._blank_edges()

        def place(number: int) -> Placement:
            seg, cursor = segments[number], placements[-1].end if placements else 0
            self._leading_marker = gaps[number] is not None
            self._trailing_blanks = edges[number][1] if gaps[number + 1] is not None else 0
            self._floor = cursor + 1 if placements and gaps[number] is not None else 0
            self._ceiling = self._open_block_end(placements[-1], gaps[number]) if placements else None
            self._keep = kept.get(number)
            return self._close_open_block(seg, placements, cursor) or self.place(
                seg,
                cursor,
                pinned_start=gaps[number] is None,
                after=gaps[number + 1],
                prefer_delta=placements[-1].delta if placements else None,
            )

        kept: dict[int, int] = {}  # segment -> an original line its placement must not leave out
        number = 0
        while number < len(segments):
            placement = place(number)
            shown = self._shown_again(segments[number], placements[-1]) if placements else None
            if shown is not None and number - 1 not in kept:
                # The segment opens with a unit the previous one left out (between its head and a tail that
                # copied a later unit): the previous one is placed again, keeping that unit.
                previous = placements.pop()
                kept[number - 1] = shown
                try:
                    placements.append(place(number - 1))
                except AnchorError:
                    placements.append(previous)
                    kept[number - 1] = -1
                continue
            placements.append(placement)
            number += 1
        self._keep = None
        moved = self._moved_units(segments, placements, gaps)
        out: list[str] = []
        cursor = 0
        for placement, (lead, trail) in zip(placements, edges, strict=True):
            out.extend(self.raw[i] for i in range(cursor, placement.start) if i not in moved)
            # Blank lines the snippet puts between new code and a marker separate the new code from the
            # elided code: kept where the original has none there.
            if placement.starts_new and lead and out and out[-1].strip():
                out.extend([""] * lead)
            out.extend(placement.lines)
            if placement.ends_new and placement.end < len(self.raw):
                following = sum(
                    1 for _ in itertools.takewhile(lambda x: not x.strip(), self.raw[placement.end :])
                )
                if not following:
                    joins = not trail and self._joins_list(placement.lines[-1], self.raw[placement.end])
                    out.extend([""] * (0 if joins else placement.separator or trail))
                elif placement.separator and placement.end + following < len(self.raw):
                    # Inserted into a run of blank lines that the head ends in: the new code is followed by
                    # the run's full length, the file's own spacing (two blank lines between Python
                    # functions), or by the snippet's blank lines where it has more.
                    out.extend([""] * (max(trail, placement.separator + following) - following))
            cursor = placement.end
        out.extend(self.raw[i] for i in range(cursor, len(self.raw)) if i not in moved)
        return out, [(p.start, p.end) for p in placements]

    def _shown_again(self, seg: list[Line], previous: Placement) -> int | None:
        """The original line where the segment's first line, a unit header, stands inside what the previous
        placement left out; else None."""
        first = next(x for x in seg if not x.blank)
        if first.weak or not signature(first.text):
            return None
        low, high = previous.omitted
        places = self.orig.by_text.get(first.text, ())
        if any(i >= previous.end for i in places):
            return None  # the segment can anchor it after the previous one (another class's `__str__`)
        return next((i for i in places if low <= i < high), None)

    def _joins_list(self, new: str, following: str) -> bool:
        """Markdown: a new list item right above an item of the same list (`- Add dark mode` above
        `- Fix login bug`) joins it: a blank line between them would split the list."""
        a, b = _LIST_ITEM_RE.match(new), _LIST_ITEM_RE.match(following)
        return self.orig.markdown and bool(a and b) and a.groups() == b.groups()

    def _blank_edges(self) -> list[tuple[int, int]]:
        """(blank lines before, blank lines after) each segment, between it and its markers."""
        edges, current = [], []
        for line, marker in zip(self.snippet, self.markers, strict=True):
            if marker:
                if any(not x.blank for x in current):
                    edges.append(_edge_blanks(current))
                current = []
            else:
                current.append(line)
        if any(not x.blank for x in current):
            edges.append(_edge_blanks(current))
        return edges

    def _close_open_block(
        self, seg: list[Line], placements: list[Placement], cursor: int
    ) -> Placement | None:
        """A segment of closing lines only (`}`, `</div>`) after a marker closes the innermost block that an
        earlier segment opened and left open: placed on that block's closing lines."""
        if not placements or not all(x.weak for x in seg):
            return None
        opened = [
            j
            for p in placements
            for j in range(p.start, p.end)
            if self.orig.is_header(j) and self.orig.block_end(j) > cursor
        ]
        if not opened:
            return None
        lines, body = self.orig.lines, [x for x in seg if not x.blank]
        j = max(opened)  # the innermost: opened last
        close = self.orig.block_end(j) - 1
        delta = lines[close].level - body[0].level
        k = close
        for x in body:
            while k < len(lines) and lines[k].blank:
                k += 1
            if k >= len(lines) or not _same(x, lines[k], delta):
                break
            k += 1
        else:
            if close >= cursor:
                return Placement(close, k, delta, [x.raw for x in lines[close:k]], len(body))
            return None
        # Closers of the innermost block the earlier segment opened with a new line (a rewritten `<div>`),
        # then of the blocks around it: the segment's last line closes one of the opened blocks, and its
        # other lines are the closing lines right above that one.
        for j in sorted(opened, reverse=True):
            close = self.orig.block_end(j) - 1
            delta = lines[close].level - body[-1].level
            k, start = close, None
            for x in reversed(body):
                while k >= cursor and lines[k].blank:
                    k -= 1
                if k < cursor or not _same(x, lines[k], delta):
                    break
                start, k = k, k - 1
            else:
                return Placement(
                    start, close + 1, delta, [x.raw for x in lines[start : close + 1]], len(body)
                )
        return None

    def _moved_units(
        self, segments: list[list[Line]], placements: list[Placement], gaps: list[Line | None]
    ) -> set[int]:
        """Original lines of units the snippet moved: a whole unit written among a segment's new lines
        whose only original copy lies in code the snippet keeps. Its old copy (and the blank lines before
        it) goes."""
        replaced = set()
        for p in placements:
            replaced.update(range(p.start, p.end))
        names: dict[str, list[int]] = {}
        for i in range(len(self.orig.lines)):
            name = self._unit_name(i)
            if name:
                names.setdefault(name, []).append(i)
        # top-level one-line declarations (`_EMAIL_RE = re.compile(...)`, `type Multi []Notifier`) moved with
        # the units that use them, by their text
        wanted = {x.text for seg in segments for x in seg if x.text}  # only lines a segment writes can move
        for i, x in enumerate([] if self.orig.markdown else self.orig.lines):  # not lines of code examples
            if x.level or x.text not in wanted or self._unit_name(i):
                continue
            if _SIGNATURE_RES[0].match(x.text) or (identity(x.text) or "").startswith("set "):  # no calls
                names.setdefault(x.text, []).append(i)
        drop: set[int] = set()
        for number, (seg, placement) in enumerate(zip(segments, placements, strict=True)):
            kept_in_place = {x.text for x in self.orig.lines[placement.start : placement.end]}
            after = gaps[number + 1]
            for at, line in enumerate(seg):
                inside = after is not None and not line.blank and after.level > line.level
                if inside and all(x.blank or x.level > line.level for x in seg[at + 1 :]):
                    continue  # the marker after the segment stands inside this unit: only its top is shown
                name = signature(line.text) if not line.blank else None
                if name not in names and line.level + placement.delta == 0 and line.text in names:
                    name = line.text
                if not name or line.text in kept_in_place or len(names.get(name, ())) != 1:
                    continue
                j = names[name][0]
                if _opens_call(self.orig.lines[j].text):
                    continue  # `writeJSON(w, map[string]any{` opens a call's literal, not a unit
                level = self.orig.lines[j].level
                if level:
                    # a method written in another class (an override) is not this one moved there: the class
                    # the segment shows around the line, else the one around its place
                    shown = next(
                        (x for x in reversed(seg[:at]) if not x.blank and x.level < line.level), None
                    )
                    there = self._enclosing(j, level)
                    if shown is None and (here := self._enclosing(placement.start + 1, level)) is not None:
                        shown = self.orig.lines[here]
                    parent = shown
                    # classes by name: `class Report(Renderable):` is `class Report:` with its header edited
                    if there is not None and (
                        parent is None or _named(parent) != _named(self.orig.lines[there])
                    ):
                        continue
                end = self.orig.block_end(j)
                if any(i in replaced for i in range(j, end)):
                    continue
                body = next((x for x in self.orig.lines[j + 1 : end] if x.text and not x.weak), None)
                if (
                    self.orig.markdown
                    and body is not None
                    and not any(_rewords(x, body) for x in seg[at + 1 :])
                ):
                    continue  # a moved section brings its text: a new `### Added` is not the old release's moved
                start = j
                while start - 1 >= 0 and self._decoration(self.orig.lines[start - 1].text):
                    start -= 1
                while start - 1 >= 0 and self.orig.lines[start - 1].blank and start - 1 not in replaced:
                    start -= 1
                drop.update(range(start, end))
        return drop

    # ---------------------------------------------------------------- marker-less snippets
    def _enclosing(self, i: int, level: int) -> int | None:
        """The header of the block around line i that holds lines of this depth (a method's class), or None."""
        return next(
            (
                j
                for j in range(min(i, len(self.orig.lines)) - 1, -1, -1)
                if not self.orig.lines[j].blank and self.orig.lines[j].level < level
            ),
            None,
        )

    def covers_file(self) -> bool:
        """Whether a marker-less snippet is the whole new file. It is when it starts like the file (its
        imports, the file's own first line), mentions at least half of the file's units and reaches the
        file's end (its last unit or last line); or when it mentions nearly all units and reaches the end.
        A snippet that starts like the file but stops short of its end, or mentions only a quarter to a
        half of its units, is refused: the whole new file, or only its top part? Anything else is units."""
        headers = [i for i in range(len(self.orig.lines)) if self.orig.is_header(i) or self._top_statement(i)]
        if not headers:
            return True
        body = [line for line in self.snippet if not line.blank]
        texts = {line.text for line in body}
        sigs = {signature(line.text) for line in body} - {None}

        def mentioned(i: int) -> bool:
            return self.orig.lines[i].text in texts or (signature(self.orig.lines[i].text) or "\0") in sigs

        seen = sum(1 for i in headers if mentioned(i))
        first = body[0]
        starts_like_file = first.level == 0 and (
            first.text == self.orig.lines[self.orig.first].text or bool(_FILE_START_RE.match(first.text))
        )
        # the end: one of the file's last units, or one of its last lines among the snippet's last lines
        file_tail = {line.text for line in [x for x in self.orig.lines[: self.orig.last] if not x.weak][-2:]}
        snippet_tail = {line.text for line in body[-5:] if not line.weak}
        reaches_end = any(mentioned(i) for i in headers[-max(1, len(headers) // 5) :]) or bool(
            file_tail & snippet_tail
        )
        if reaches_end and (seen >= 0.9 * len(headers) or (starts_like_file and seen >= 0.5 * len(headers))):
            return True
        if starts_like_file and len(headers) >= 4 and seen >= 0.25 * len(headers):
            what = (
                "stops before the file's end"
                if seen >= 0.5 * len(headers)
                else f"mentions only {seen} of its {len(headers)} units"
            )
            raise AnchorError(
                Refusal.AMBIGUOUS_SCOPE,
                f"the snippet has no markers and starts like the file ({_show(first)}) but {what}: the whole new "
                "file, or only a part of it? Add `... existing code ...` markers where code is kept",
            )
        return False

    def _top_statement(self, i: int) -> bool:
        line = self.orig.lines[i]
        return not line.weak and line.level == 0 and not self.orig.markdown

    def whole_file(self) -> list[str]:
        seg = _trim(self.snippet)
        low = min(line.level for line in seg if not line.blank)
        lead = self.raw[: self.orig.first]
        trail = self.raw[self.orig.last :]
        return lead + [self.render_new(x, -low) for x in seg] + trail

    def merge_units(self) -> tuple[list[str], list[tuple[int, int]]]:
        """A marker-less snippet that is some units of the file: replace each by its name, insert new ones."""
        seg = _trim(self.snippet)
        edits = self._unit_edits(seg, 0, len(self.orig.lines))
        out, spans, cursor = [], [], 0
        for start, end, new in sorted(edits, key=lambda e: (e[0], e[1])):
            if start < cursor:
                raise AnchorError(Refusal.OUT_OF_ORDER, "two units of the snippet overlap in the original")
            out.extend(self.raw[cursor:start])
            out.extend(new)
            spans.append((start, end))
            cursor = end
        out.extend(self.raw[cursor:])
        return out, spans

    def _units(self, seg: list[Line]) -> list[list[Line]]:
        """The snippet's units at its outermost depth (decorations and comments stay with their unit)."""
        nonblank = [x for x in seg if not x.blank]
        low = min(x.level for x in nonblank)
        units: list[list[Line]] = []
        pending: list[Line] = []
        heading_depth = None
        for x in seg:
            starts = False
            if not x.blank and x.level == low:
                if self.orig.markdown:
                    heading = _HEADING_RE.match(x.text)
                    starts = bool(heading) and (
                        heading_depth is None or len(heading.group(1)) <= heading_depth
                    )
                    if heading and heading_depth is None:
                        heading_depth = len(heading.group(1))
                    starts = starts or not units
                else:
                    starts = not _CLOSER_RE.match(x.text) and not _continues(x.text)
            if starts and not (pending and all(self._decoration(p.text) or p.blank for p in pending)):
                if pending:
                    units.append(pending)
                pending = []
            pending.append(x)
        if pending:
            units.append(pending)
        return [_trim(u) for u in units if any(not x.blank for x in u)]

    def _decoration(self, text: str) -> bool:
        """A decorator, attribute or comment line that belongs to the unit below it (never in Markdown)."""
        return bool(text) and not self.orig.markdown and bool(_DECORATION_RE.match(text))

    def _find_unit(self, unit: list[Line], low: int, high: int) -> tuple[int, int] | None:
        """(line of the unit's header in the original, delta), by text or by name; None when it is new."""
        header = next((x for x in unit if not x.blank and not self._decoration(x.text)), unit[0])
        exact = [j for j in self.orig.by_text.get(header.text, ()) if low <= j < high]
        name = signature(header.text)
        by_name = []
        if name:
            by_name = [
                j
                for j in range(low, high)
                if not self.orig.lines[j].blank
                and not (self.orig.markdown and self.orig.in_fence[j])
                and signature(self.orig.lines[j].text) == name
            ]
        candidates = exact or by_name
        if self.orig.markdown and not name:
            candidates = exact
        if not candidates:
            return None
        if len(candidates) > 1:
            # the unit's other lines may tell which one: keep candidates whose block shares most lines
            texts = Counter(x.text for x in unit if not x.weak)
            scores = {}
            for j in candidates:
                block = {x.text for x in self.orig.lines[j : self.orig.block_end(j)] if not x.weak}
                scores[j] = sum(c for t, c in texts.items() if t in block)
            best = max(scores.values())
            candidates = [j for j, s in scores.items() if s == best]
            if len(candidates) > 1:
                raise AnchorError(
                    Refusal.AMBIGUOUS_ANCHOR,
                    f"the snippet's unit {_show(header)} matches {len(candidates)} units of the original (lines "
                    f"{', '.join(str(j + 1) for j in candidates[:5])}); add a marker and the unchanged lines around it",
                )
        j = candidates[0]
        return j, self.orig.lines[j].level - header.level

    def _unit_edits(self, seg: list[Line], low: int, high: int) -> list[tuple[int, int, list[str]]]:
        units = self._units(seg)
        edits: list[tuple[int, int, list[str]]] = []
        placed: list[tuple[int, int] | None] = []
        deltas = []
        for unit in units:
            found = self._find_unit(unit, low, high)
            if found is None:
                placed.append(None)
                deltas.append(None)
                continue
            j, delta = found
            header_at = next(
                (
                    k
                    for k, x in enumerate(unit)
                    if x.text == self.orig.lines[j].text
                    or signature(x.text) == signature(self.orig.lines[j].text)
                ),
                0,
            )
            start = j
            if header_at:  # the snippet's decorations/comments replace the original's
                k = j
                while k - 1 >= low and self._decoration(self.orig.lines[k - 1].text):
                    k -= 1
                start = k
            end = self.orig.block_end(j)
            inner = self._wrapper_edits(unit[header_at:], j, end, delta)
            if inner is not None:
                edits.extend(inner)
                if header_at:
                    edits.append((start, j, [self.render_new(x, delta) for x in unit[:header_at]]))
            else:
                edits.append((start, end, [self.render_new(x, delta) for x in unit]))
            placed.append((start, end))
            deltas.append(delta)
        if not any(placed):
            first = next(x for x in seg if not x.blank)
            raise AnchorError(
                Refusal.NO_ANCHOR,
                f"the snippet has no markers and none of its units (starting {_show(first)}) is in the original",
            )
        # New units go right after the unit before them in the snippet (or before the one after them).
        for number, unit in enumerate(units):
            if placed[number] is not None:
                continue
            before = next((k for k in range(number - 1, -1, -1) if placed[k]), None)
            after = next((k for k in range(number + 1, len(units)) if placed[k]), None)
            if before is not None:
                at, delta = placed[before][1], deltas[before]
                gap = self._gap_after(at)
                edits.append((at, at, [""] * gap + [self.render_new(x, delta) for x in unit]))
            else:
                at, delta = placed[after][0], deltas[after]
                gap = self._gap_before(at)
                edits.append((at, at, [self.render_new(x, delta) for x in unit] + [""] * gap))
        return edits

    def _gap_after(self, at: int) -> int:
        """Blank lines to put between an existing unit ending at `at` and a new one after it."""
        j = at
        while j < len(self.orig.lines) and self.orig.lines[j].blank:
            j += 1
        return max(1, j - at)

    def _gap_before(self, at: int) -> int:
        j = at
        while j > 0 and self.orig.lines[j - 1].blank:
            j -= 1
        return max(1, at - j)

    def _wrapper_edits(self, unit: list[Line], j: int, end: int, delta: int):
        """When the snippet's unit is a wrapper (same header, children of which only some are shown):
        the edits of its children inside the original unit; else None (replace the unit whole)."""
        header = unit[0]
        if header.text != self.orig.lines[j].text or len(unit) < 2:
            return None
        body = [x for x in unit[1:] if not (x.level == header.level and x.weak)]
        body = _trim(body)
        if not body or all(x.blank for x in body):
            return None
        children = self._units(body)
        if len(children) < 1:
            return None
        orig_children = [
            i
            for i in range(j + 1, end)
            if self.orig.lines[i].level == self.orig.lines[j].level + 1 and self._unit_name(i)
        ]
        function = (signature(header.text) or "").split(" ")[0] in _FUNCTION_KINDS or "=>" in header.text
        if not any(
            (name := signature(x.text))
            and (
                not function
                or name.split(" ")[0] in _DEFINITION_KINDS
                or bool(re.search(r"=>|\bfunction\b", x.text))
            )
            for x in body
            if x.level == body[0].level
        ):
            # no named member in the snippet's body (in a function's, only nested definitions and arrow
            # functions are members, not its values and calls): it is the unit's new body
            return None
        mentioned = {x.text for x in unit} | {signature(x.text) for x in unit if signature(x.text)}
        missing = [
            i
            for i in orig_children
            if self.orig.lines[i].text not in mentioned
            and signature(self.orig.lines[i].text) not in mentioned
        ]
        if not missing:
            return None  # the snippet shows every child: it is the whole unit
        return self._unit_edits(body, j + 1, end)

    # ---------------------------------------------------------------- driver
    def merge(self) -> ApplyResult:
        segments, gaps = self.segments()
        if not segments:
            return ApplyResult(
                None, Refusal.EMPTY_SNIPPET, "the snippet holds no code, only markers or blank lines"
            )
        if not any(not line.blank for line in self.orig.lines):
            out, spans, mode = [x.raw for x in _trim(self.snippet)], [(0, 0)], "whole_file"
        elif all(gap is None for gap in gaps):
            if self.covers_file():
                out, spans, mode = self.whole_file(), [(0, len(self.raw))], "whole_file"
            else:
                out, spans = self.merge_units()
                mode = "units"
        else:
            out, spans = self.merge_segments()
            mode = "segments"
        return ApplyResult(join_lines(out, self.newline, self.ends), spans=spans, mode=mode)


_WORD_RE = re.compile(r"[\w$]+|[^\w\s]")


def _extends(new: str, old: str) -> bool:
    """`new` keeps every word and sign of `old`, in order, and adds to them (`if (b) {` -> `if (b && c) {`,
    `<div className={clsx("a")}>` -> `<div className={clsx("a", extra)}>`): an edit, not a sibling."""
    words, rest = _WORD_RE.findall(old), iter(_WORD_RE.findall(new))
    return len(words) > 1 and new != old and all(w in rest for w in words)


_CALL_END_RE = re.compile(r"[\w$\]]\(.*\)[;,]?$")


def _adds_argument(new: Line, old: Line) -> bool:
    """`render(key, sizes);` -> `render(key, sizes, { signal });`: the same call with arguments appended
    (the old line up to its closing parenthesis, then `,`), an edit of the line rather than a new one."""
    if old.weak or new.weak or not _CALL_END_RE.search(old.text):
        return False
    cut = old.text.rindex(")")
    return new.text.startswith(old.text[:cut] + ",") and new.text.endswith(old.text[cut:])


def _same_level_headings(a: Line, b: Line) -> bool:
    found_a, found_b = _HEADING_RE.match(a.text), _HEADING_RE.match(b.text)
    return bool(found_a and found_b) and len(found_a.group(1)) == len(found_b.group(1))


def _opens_call(text: str) -> bool:
    """A line that leaves a parenthesis open and names no keyword: a call whose argument spans lines."""
    found = _SIGNATURE_RES[0].match(text)
    if (
        found
        and found.group("kw") in ("const", "let", "var")
        and not re.search(r"=>|\bfunction\b|\bclass\b", text)
    ):
        found = None  # `const res = await fetch(url, {`: a value computed by a call, not a unit
    return not found and text.count("(") > text.count(")")


def _opening_core(text: str) -> str:
    """A header without how it opens its block: `case X: {` and `case X:` are the same header."""
    return text.rstrip(" \t{(:")


def _displaces(new: Line, old: Line, delta: int) -> bool:
    if new.blank or old.blank:
        return False
    if new.level + delta != old.level:
        return False
    return similar(new, old)


def _rewords(new: Line, old: Line) -> bool:
    """A line of prose or a command rewritten in place: most of its characters kept."""
    if new.blank or old.blank or _FENCE_RE.match(new.text) or _FENCE_RE.match(old.text):
        return False
    return difflib.SequenceMatcher(None, new.text, old.text, autojunk=False).ratio() >= 0.75


def _header_groups(body: list[Line]) -> list[tuple[int, int]]:
    """The lines of `body` (no blank lines) as [first, last) groups: one line each, but a signature spread
    over several lines (a named opener ending in `(` or `{`, deeper lines, then its closing line at its
    depth: `): Promise<T> {`, `}: Props) {`) is one group."""
    groups, k = [], 0
    while k < len(body):
        end = k + 1
        if signature(body[k].text) and body[k].text.endswith(("(", "{")):
            j = k + 1
            while j < len(body) and body[j].level > body[k].level:
                j += 1
            if j > k + 1 and j < len(body) and body[j].level == body[k].level and _continues(body[j].text):
                end = j + 1
        groups.append((k, end))
        k = end
    return groups


_ONE_LINE_ELEMENT_RE = re.compile(r"^<([\w.]+)\b[^>]*>(.+)</\1>$")


def _expanded_element(seg: list[Line], k: int, old: Line, delta: int) -> int | None:
    """Where seg[k] closes an element (`</td>`) that the segment opens at seg[o] (`<td>`) and the old line is
    that element on one line, whose content (`{order.status}`) the new element still shows: o, else None."""
    found = _ONE_LINE_ELEMENT_RE.match(old.text)
    if found is None or seg[k].text != f"</{found.group(1)}>" or seg[k].level + delta != old.level:
        return None
    o = next((o for o in range(k - 1, -1, -1) if not seg[o].blank and seg[o].level <= seg[k].level), None)
    if (
        o is None
        or seg[o].level != seg[k].level
        or not re.match(rf"<{re.escape(found.group(1))}\b", seg[o].text)
    ):
        return None
    content = found.group(2).strip()
    shown = any(  # as a child of the new element or of an element in it, not in an attribute
        x.text == content
        or f">{content}<" in x.text
        or x.text.endswith(f">{content}")
        or x.text.startswith(f"{content}<")
        for x in seg[o + 1 : k]
    )
    return o if shown else None


_FUNCTION_KINDS = frozenset({"def", "fn", "func", "function"})
# what a function's body may hold as members (a marker-less snippet of it edits only those shown)
_DEFINITION_KINDS = _FUNCTION_KINDS | {"class", "struct", "impl", "enum", "trait", "interface"}
_CLASS_NAME_RE = re.compile(r"""\bclassName=("[^"]+"|'[^']+')""")


def _restyled_element(seg: list[Line], k: int, lines: list[Line], i: int, delta: int) -> int | None:
    """Where a new element spread over lines (`<input` / attributes / `/>`) ends, when it takes the place of the
    one-line element at i (`<span className="cart-item__qty">x {line.quantity}</span>`): the same depth, the
    same className, which no sibling around it shares, and every expression of the old content among the new
    attributes (`value={line.quantity}`). Else None (a new field above a sibling of the same class)."""
    new, old = seg[k], lines[i]
    if not re.match(r"^<[\w.]+$", new.text) or new.level + delta != old.level:
        return None
    content = _ONE_LINE_ELEMENT_RE.match(old.text)
    expressions = re.findall(r"\{[^{}]+\}", content.group(2)) if content else []
    if not expressions:
        return None
    m = _group_close(seg, k)
    if m == len(seg) or seg[m].text != "/>" or seg[m].level != new.level:
        return None
    ours, theirs = (
        _CLASS_NAME_RE.findall(" ".join(x.text for x in seg[k:m])),
        _CLASS_NAME_RE.findall(old.text),
    )
    if len(ours) != 1 or ours != theirs[:1]:
        return None
    if not all(any(e in x.text for x in seg[k:m]) for e in expressions):
        return None
    low, high = max(0, i - 8), min(len(lines), i + 9)
    if sum(ours[0] in x.text for x in lines[low:high]) != 1:
        return None  # siblings share the class (`className="field"`): which one it replaces is not shown
    return m + 1


_BLOCK_DECLARATION_RE = re.compile(r"^(?:export\s+)?(?:const|let)\s+([A-Za-z_$][\w$]*)\s*(?::[^=]+)?=")


def _named(line: Line) -> str:
    """A header by the name it declares (`class Report`), else by its text."""
    return signature(line.text) or line.text


def _spreads(seg: list[Line], k: int, old: Line, delta: int) -> bool:
    """`report.file.save(` opening a call spread over lines, where the file has that call on one line
    (`report.file.save(f"...", rows)`) with the same first argument (`f"..."`): the same statement, its
    arguments moved onto lines of their own. Another call of the same function (`parser.add_argument(` for
    another flag) starts with another argument."""
    new = seg[k]
    if not (
        new.level + delta == old.level
        and new.text.endswith("(")
        and len(new.text) >= 6
        and old.text.startswith(new.text)
        and k + 1 < len(seg)
        and not seg[k + 1].blank
    ):
        return False
    argument = seg[k + 1].text.rstrip(",")
    return len(argument) >= 3 and old.text[len(new.text) :].lstrip().startswith(argument)


def _group_close(seg: list[Line], k: int) -> int:
    """The first line after seg[k] that is blank or no deeper than it (len(seg) if none): where the lines
    that seg[k] opens end."""
    return next((m for m in range(k + 1, len(seg)) if seg[m].blank or seg[m].level <= seg[k].level), len(seg))


def _spread_end(seg: list[Line], k: int) -> int | None:
    """Where the bracket that seg[k] leaves open (`bio: [`) closes, on a line of its own at its depth (`],`),
    with only deeper lines between: the index after that line, else None."""
    if not seg[k].text.endswith(("[", "{", "(")):
        return None
    m = _group_close(seg, k)
    closer = {"[": "]", "{": "}", "(": ")"}[seg[k].text[-1]]
    if m == k + 1 or m == len(seg) or seg[m].level != seg[k].level or not seg[m].text.startswith(closer):
        return None
    return m + 1


def _undeclared(new: str, old: str) -> bool:
    """`res = await fetch(..` is `const res = await fetch(..` with its declaration moved elsewhere."""
    found = re.match(r"^(?:export\s+)?(?:const|let|var)\s+", old)
    return bool(found) and old[found.end() :] == new


def _restates(new: Line, old: Line) -> bool:
    """Markdown: two prose lines (not list items, headings, table rows or fences) of at least four words that
    differ in exactly one of them, at the same place."""
    if new.blank or old.blank or (new.level, new.rest) != (old.level, old.rest) or new.text == old.text:
        return False
    if any(
        pattern.match(x.text) for x in (new, old) for pattern in (_LIST_ITEM_RE, _HEADING_RE, _FENCE_RE)
    ) or new.text.startswith("|"):
        return False
    a, b = new.text.split(), old.text.split()
    return len(a) == len(b) >= 4 and sum(x != y for x, y in zip(a, b, strict=True)) == 1


def _same_item(new: Line, old: Line) -> bool:
    """Two ordered list items of the same number at the same depth (`2. Install ...`)."""
    a, b = _LIST_ITEM_RE.match(new.text), _LIST_ITEM_RE.match(old.text)
    numbered = bool(a and b) and a.group(2)[0].isdigit()
    return numbered and a.group(2) == b.group(2) and (new.level, new.rest) == (old.level, old.rest)


def _edits(new: Line, old: Line, delta: int) -> bool:
    return _displaces(new, old, delta) or (new.level + delta == old.level and near_copy(new, old))


def _rewrites(new: Line, old: Line, delta: int) -> bool:
    """An edit (`_edits`), or a block opener whose condition grew (`if (!user) {` -> `if (!user || expired) {`,
    `if ready:` -> `if ready and not paused:`): the old line, less its closing `) {` or `:`, begins the new."""
    if _edits(new, old, delta):
        return True
    core = re.sub(r"\)?\s*[{:]?$", "", old.text)
    return (
        new.level + delta == old.level
        and len(core) >= 4
        and not old.weak
        and new.text.startswith(core)
        # the old condition, then an operator that extends it (not `if (!token` -> `if (!tokenType`)
        and bool(re.match(r"\)?\s*(?:&&|\|\||\?\?|and\b|or\b)", new.text[len(core) :]))
    )


def _edge_blanks(lines: list[Line]) -> tuple[int, int]:
    lead = next((i for i, x in enumerate(lines) if not x.blank), 0)
    trail = next((i for i, x in enumerate(reversed(lines)) if not x.blank), 0)
    return lead, trail


def _trim(lines: list[Line]) -> list[Line]:
    start, end = 0, len(lines)
    while start < end and lines[start].blank:
        start += 1
    while end > start and lines[end - 1].blank:
        end -= 1
    return lines[start:end]


def drops_most_of_file(original: int, merged: int, snippet: int, max_drop_fraction: float = 0.5) -> bool:
    """A short snippet that would cut a file of 10+ lines by more than `max_drop_fraction` (line counts)."""
    return original >= 10 and merged < original * (1 - max_drop_fraction) and snippet < original / 2


def apply_snippet(
    original: str,
    snippet: str,
    *,
    language: str | None = None,
    max_drop_fraction: float = 0.5,
    check_syntax: bool = True,
) -> ApplyResult:
    """Merge a lazy snippet into the original file. See the module docstring for the rules.

    `language` (python, typescript, tsx, javascript, jsx, markdown, ...) turns on Markdown sections and
    the syntax check: a merge that does not parse where the original parsed is refused. The renderer
    passes `check_syntax=False`: it compares the merge with a final it has already parsed.
    """
    merger = _Merger(original, snippet, language)
    try:
        result = merger.merge()
    except AnchorError as err:
        return ApplyResult(None, err.reason, err.detail)
    if not result.ok:
        return result
    merged_lines = result.merged.count("\n") + (0 if result.merged.endswith("\n") else 1)
    snippet_lines = len(merger.snippet)
    if drops_most_of_file(len(merger.raw), merged_lines, snippet_lines, max_drop_fraction):
        return ApplyResult(
            None,
            Refusal.DROPS_MOST_OF_FILE,
            f"the merge would shrink the file from {len(merger.raw)} to {merged_lines} lines; refusing to drop most of it",
        )
    twice = _route_written_twice(original, snippet, result.merged) if language in _JS_LANGUAGES else None
    if twice:
        return ApplyResult(
            None,
            Refusal.AMBIGUOUS_SCOPE,
            f"the merge would hold {twice}... twice: the snippet's one is new beside the file's, or a rewrite of it "
            "that is not recognised (a one-line header spread over lines); show its old lines or a marker",
        )
    if check_syntax and language and _breaks_syntax(original, result.merged, language):
        return ApplyResult(
            None,
            Refusal.BREAKS_SYNTAX,
            f"the merged file does not parse as {language} although the original does; the snippet's place or its "
            "brackets are wrong",
        )
    return result


_JS_LANGUAGES = frozenset({"javascript", "typescript", "tsx", "jsx"})
_CALL_KEY_RE = re.compile(r"""^([\w$]+(?:\.[\w$]+)+)\(\s*("[^"]*"|'[^']*'|`[^`$]*`)?""")


def _call_keys(text: str) -> list[str]:
    """`router.patch("/:id", ...` (also spread over lines: `router.patch(` / `"/:id",`): a method call by
    its callee and its string first argument, one key per such call opening a line."""
    keys, lines = [], [x.strip() for x in text.splitlines()]
    for i, line in enumerate(lines):
        found = _CALL_KEY_RE.match(line)
        if not found:
            continue
        argument = found.group(2)
        if argument is None and line == found.group(1) + "(" and i + 1 < len(lines):
            argument = re.match(r"""("[^"]*"|'[^']*'|`[^`$]*`),?$""", lines[i + 1])
            argument = argument.group(1) if argument else None
        if argument is not None:
            keys.append(f"{found.group(1)}({argument}")
    return keys


def _route_written_twice(original: str, snippet: str, merged: str) -> str | None:
    """A method call with a string first argument (`router.patch("/:id"`) that the original holds once,
    the snippet once, and the merge twice: the snippet rewrote it in a form the applier did not match."""
    before, shown, after = (
        Counter(_call_keys(original)),
        Counter(_call_keys(snippet)),
        Counter(_call_keys(merged)),
    )
    return next((k for k, n in after.items() if n == 2 and before[k] == 1 and shown[k] == 1), None)


BRACE_LANGUAGES = frozenset({"rust", "go", "java", "c", "cpp", "csharp", "kotlin", "swift", "php", "css"})


def _breaks_syntax(original: str, merged: str, language: str) -> bool:
    """tree-sitter's verdict where a grammar is installed; for other brace languages (Rust, Go, ...) at
    least the brackets: a merge that unbalances the brackets of a balanced file is broken."""
    from fastapply_pipeline.core.parsing import has_grammar, parses

    if has_grammar(language):
        return parses(original, language) and not parses(merged, language)
    if language in BRACE_LANGUAGES:
        return _bracket_balance(original) == (0, 0, 0) and _bracket_balance(merged) != (0, 0, 0)
    if language == "markdown":
        return _fences_closed(original) and not _fences_closed(merged)
    return False


def _fences_closed(text: str) -> bool:
    """Markdown: whether every code fence is closed (a merge that leaves one open turns the rest of the
    file into code)."""
    open_fence = None
    for line in text.splitlines():
        found = _FENCE_RE.match(line.strip())
        if found is None:
            continue
        if open_fence is None:
            open_fence = found.group(1)
        elif found.group(1) == open_fence and not line.strip()[3:].strip(open_fence[0]).strip():
            open_fence = None
    return open_fence is None


_LITERALS_RE = re.compile(r'"(?:\\.|[^"\\\n])*"|`[^`]*`|\'(?:\\.|[^\'\\\n])\'|//[^\n]*|/\*.*?\*/', re.DOTALL)


def _bracket_balance(text: str) -> tuple[int, int, int]:
    """Opened minus closed {}, (), [] outside string literals and comments (roughly: only a change from
    balanced to unbalanced is taken as a sign)."""
    code = _LITERALS_RE.sub("", text)
    return (
        code.count("{") - code.count("}"),
        code.count("(") - code.count(")"),
        code.count("[") - code.count("]"),
    )

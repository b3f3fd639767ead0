"""Validate the hand-written realistic lazy-edit cases in this folder.

Usage: python check_cases.py [folder]

Checks every ``<id>.case`` file: header lines, sections, that ``expect: merge``
cases carry a ``final`` section and ``expect: refuse`` cases do not, that the
originals and finals parse where a tree-sitter grammar is installed (python,
typescript, tsx, javascript; rust and go when their grammar packages happen to be
present), plus light sanity checks for the other languages (bracket balance for
rust/go, balanced code fences for markdown). Prints counts per language, shape
and expect, and exits non-zero on any error.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

HEADER_KEYS = ("language", "shape", "expect", "note")
LANGUAGES = ("python", "typescript", "tsx", "javascript", "markdown", "rust", "go")
SHAPES = (
    "anchored",
    "changed_first_line",
    "dedented_fragment",
    "class_wrapper",
    "unit_no_markers",
    "whole_file",
    "marker_spellings",
    "reorder",
    "deletion",
    "blank_lines",
    "multi_hunk",
    "ambiguous",
)
EXPECTS = ("merge", "refuse")
ID_RE = re.compile(r"^[a-z0-9_]+$")
SECTION_RE = re.compile(r"^=== ([a-z]+) ===\r?\n?$")

# Minimum counts the set is meant to keep.
MIN_LANGUAGE = {"python": 8, "typescript": 8, "tsx": 8, "javascript": 8, "markdown": 6, "rust": 6, "go": 5}
MIN_SHAPE = 4
MIN_REFUSE = 10
MIN_TOTAL = 72


def load_parsers() -> dict:
    """Return {language: tree_sitter.Parser} for the grammars that are installed."""
    parsers: dict = {}
    try:
        import tree_sitter as ts
    except ImportError:  # pragma: no cover - the venv has it
        return parsers

    def add(name: str, module: str, attr: str = "language") -> None:
        try:
            mod = __import__(module)
        except ImportError:
            return
        parsers[name] = ts.Parser(ts.Language(getattr(mod, attr)()))

    add("python", "tree_sitter_python")
    add("typescript", "tree_sitter_typescript", "language_typescript")
    add("tsx", "tree_sitter_typescript", "language_tsx")
    add("javascript", "tree_sitter_javascript")
    add("rust", "tree_sitter_rust")
    add("go", "tree_sitter_go")
    return parsers


class Case:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.stem
        self.headers: dict[str, str] = {}
        self.sections: dict[str, str] = {}
        self.errors: list[str] = []

    @property
    def language(self) -> str:
        return self.headers.get("language", "?")

    @property
    def shape(self) -> str:
        return self.headers.get("shape", "?")

    @property
    def expect(self) -> str:
        return self.headers.get("expect", "?")


def parse_case(path: Path) -> Case:
    case = Case(path)
    err = case.errors.append
    if not ID_RE.match(case.id):
        err(f"bad id {case.id!r}: use lowercase letters, digits and underscores")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        err(f"not utf-8: {exc}")
        return case
    if not text.endswith("\n"):
        err("file does not end with a newline")
    lines = text.splitlines(keepends=True)

    # Header lines up to the first section marker.
    i = 0
    header_order: list[str] = []
    while i < len(lines) and not lines[i].startswith("=== "):
        line = lines[i].rstrip("\r\n")
        i += 1
        if not line.strip():
            err("blank line inside the header")
            continue
        key, sep, value = line.partition(":")
        if not sep:
            err(f"bad header line {line!r}")
            continue
        key, value = key.strip(), value.strip()
        if key in case.headers:
            err(f"duplicate header {key!r}")
        case.headers[key] = value
        header_order.append(key)
    if tuple(header_order) != HEADER_KEYS:
        err(f"headers must be exactly {', '.join(HEADER_KEYS)} in that order, got {header_order}")
    if case.language not in LANGUAGES:
        err(f"unknown language {case.language!r}")
    if case.shape not in SHAPES:
        err(f"unknown shape {case.shape!r}")
    if case.expect not in EXPECTS:
        err(f"unknown expect {case.expect!r}")
    if not case.headers.get("note"):
        err("empty note")

    # Sections: each is everything after its marker line up to the next marker.
    order: list[str] = []
    current: str | None = None
    buf: list[str] = []
    for line in lines[i:]:
        if line.startswith("=== "):
            m = SECTION_RE.match(line)
            if not m:
                err(f"line starting with '=== ' is not a section marker: {line.rstrip()!r}")
                buf.append(line)
                continue
            if current is not None:
                case.sections[current] = "".join(buf)
            current = m.group(1)
            if current in order:
                err(f"duplicate section {current!r}")
            order.append(current)
            buf = []
        else:
            buf.append(line)
    if current is not None:
        case.sections[current] = "".join(buf)

    want = ["original", "snippet"] + (["final"] if case.expect == "merge" else [])
    if order != want:
        err(f"sections must be {want} for expect: {case.expect}, got {order}")
    for name, body in case.sections.items():
        if not body.strip():
            err(f"section {name!r} is empty")
        elif not body.endswith("\n"):
            err(f"section {name!r} does not end with a newline")
    return case


def bracket_balance(text: str, language: str) -> str | None:
    """Cheap structural check for languages without a grammar here."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[tuple[str, int]] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            line += text[i : (n if j < 0 else j)].count("\n")
            i = n if j < 0 else j + 2
            continue
        if c == '"' or c == "`" or (language == "go" and c == "'"):
            close = c
            j = i + 1
            while j < n and text[j] != close:
                if text[j] == "\\" and close != "`":
                    j += 1
                j += 1
            line += text[i:j].count("\n")
            i = j + 1
            continue
        if language == "rust" and c == "'":
            # char literal like 'a' or '\n'; lifetimes ('a) are left alone
            m = re.match(r"'(\\.|[^\\'])'", text[i:])
            if m:
                i += m.end()
                continue
        if c in "([{":
            stack.append((c, line))
        elif c in pairs:
            if not stack or stack[-1][0] != pairs[c]:
                return f"unbalanced {c!r} at line {line}"
            stack.pop()
        i += 1
    if stack:
        return f"unclosed {stack[-1][0]!r} from line {stack[-1][1]}"
    return None


def fence_balance(text: str) -> str | None:
    fences = [ln for ln in text.splitlines() if ln.lstrip().startswith("```")]
    if len(fences) % 2:
        return "odd number of ``` fence lines"
    return None


def check_syntax(case: Case, parsers: dict) -> None:
    for name in ("original", "final"):
        body = case.sections.get(name)
        if body is None:
            continue
        parser = parsers.get(case.language)
        if parser is not None:
            tree = parser.parse(body.encode("utf-8"))
            if tree.root_node.has_error:
                case.errors.append(f"{name} does not parse as {case.language}")
        elif case.language in ("rust", "go"):
            problem = bracket_balance(body, case.language)
            if problem:
                case.errors.append(f"{name}: {problem}")
        elif case.language == "markdown":
            problem = fence_balance(body)
            if problem:
                case.errors.append(f"{name}: {problem}")


def check_content(case: Case) -> None:
    original = case.sections.get("original")
    snippet = case.sections.get("snippet")
    final = case.sections.get("final")
    if original is None or snippet is None:
        return
    n = len(original.splitlines())
    if not 15 <= n <= 120:
        case.errors.append(f"original has {n} lines, want 15-120")
    if final is not None:
        if final == original:
            case.errors.append("final equals original (no edit)")
        if case.shape == "whole_file" and final.replace("\r\n", "\n") != snippet.replace("\r\n", "\n"):
            case.errors.append("whole_file: final should be the snippet itself")
    if snippet == original:
        case.errors.append("snippet equals original")


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    paths = sorted(folder.glob("*.case"))
    parsers = load_parsers()
    cases = []
    for path in paths:
        case = parse_case(path)
        check_syntax(case, parsers)
        check_content(case)
        cases.append(case)

    failures = 0
    for case in cases:
        for msg in case.errors:
            print(f"ERROR {case.id}: {msg}")
            failures += 1

    by_lang = Counter(c.language for c in cases)
    by_shape = Counter(c.shape for c in cases)
    by_expect = Counter(c.expect for c in cases)
    print(f"cases: {len(cases)}")
    print("language: " + ", ".join(f"{k}={by_lang[k]}" for k in LANGUAGES))
    print("shape:    " + ", ".join(f"{k}={by_shape[k]}" for k in SHAPES))
    print("expect:   " + ", ".join(f"{k}={by_expect[k]}" for k in EXPECTS))
    crlf = [c.id for c in cases if "\r\n" in c.sections.get("original", "")]
    tabs = [c.id for c in cases if c.language != "go" and "\n\t" in c.sections.get("original", "")]
    print(f"crlf originals: {crlf}; tab-indented (non-go): {tabs}")
    print("grammars: " + ", ".join(sorted(parsers)))

    gaps = []
    if len(cases) < MIN_TOTAL:
        gaps.append(f"only {len(cases)} cases (< {MIN_TOTAL})")
    for lang, least in MIN_LANGUAGE.items():
        if by_lang[lang] < least:
            gaps.append(f"{lang}: {by_lang[lang]} < {least}")
    for shape in SHAPES:
        if by_shape[shape] < MIN_SHAPE:
            gaps.append(f"shape {shape}: {by_shape[shape]} < {MIN_SHAPE}")
    if by_expect["refuse"] < MIN_REFUSE:
        gaps.append(f"refuse: {by_expect['refuse']} < {MIN_REFUSE}")
    for gap in gaps:
        print(f"DISTRIBUTION {gap}")

    if failures or gaps:
        print(f"FAILED: {failures} error(s), {len(gaps)} distribution gap(s)")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Elision markers: the comment each language uses for "unchanged code here", and every spelling models use.

Our snippets always use the canonical marker of the file's language; the applier and the dataset checks
recognize the spellings models produce in the wild too (`// ... rest of code ...`, `/* ... */`, `# ...`,
`// ...`, `{/* ... */}` in JSX), in any indentation.
"""

from __future__ import annotations

import re

MARKER_TEXT = "... existing code ..."
LINE_COMMENT = {"python": "#", "typescript": "//", "tsx": "//", "javascript": "//", "jsx": "//"}
JSX_LANGUAGES = frozenset({"tsx", "jsx"})
JSX_MARKER = "{/* " + MARKER_TEXT + " */}"

_ELLIPSIS = r"(?:\.\.\.+|…)"
_TAIL = r"[\w\s,.'()/…-]*"
# Comments that announce elided code in words ("rest of the code", "existing imports remain unchanged").
_ELIDED_WORDS = (
    r"(?:keep\s+)?(?:existing|rest\s+of(?:\s+the)?|remaining|unchanged|omitted|previous)\s+(?:\w+\s+){0,2}?"
    r"(?:code|file|functions?|methods?|components?|class|imports?|logic|implementation|props|properties|lines?)"
    r"(?:\s+(?:remains?|stays?|is|are|unchanged|the\s+same|as\s+before|here|above|below|\.\.\.+|…))*\s*\.?"
)
_MARKER_BODY = rf"(?:{_ELLIPSIS}{_TAIL}|{_ELIDED_WORDS})"
_MARKER_RE = re.compile(
    r"^\s*(?:"
    rf"(?://|#|--)\s*{_MARKER_BODY}"  # line comments
    rf"|/\*+\s*{_MARKER_BODY}\s*\*+/"  # block comment
    rf"|\{{\s*/\*+\s*{_MARKER_BODY}\s*\*+/\s*\}}"  # JSX expression container
    rf"|<!--\s*{_MARKER_BODY}\s*-->"  # HTML/markdown
    r")\s*$",
    re.IGNORECASE,
)


def marker_for(language: str, *, jsx_child: bool = False, indent: str = "") -> str:
    """The canonical marker line for a language; `jsx_child` when it stands among JSX children."""
    if jsx_child and language in JSX_LANGUAGES:
        return indent + JSX_MARKER
    return f"{indent}{LINE_COMMENT.get(language, '//')} {MARKER_TEXT}"


def is_marker_line(line: str) -> bool:
    """True when the whole line is an elision marker in any common spelling and indentation."""
    return bool(_MARKER_RE.match(line))


def contains_marker(text: str) -> bool:
    """True when any line of `text` is an elision marker (a leak, when `text` is a merged file)."""
    return any(is_marker_line(line) for line in text.splitlines())


def looks_like_jsx_child(previous: str | None, following: str | None) -> bool:
    """Whether elided lines between these two kept lines sit among JSX children.

    Inside JSX children a `//` comment would be rendered as text, so the marker must be `{/* ... */}`.
    Both neighbours being JSX markup (`<tag ...>`, `</tag>`, `{expr}`) is the telling sign.
    """

    def is_markup(line: str | None) -> bool:
        stripped = (line or "").strip()
        if stripped.startswith("</"):
            return True
        if stripped.startswith("<") and stripped.endswith(">"):
            return True
        return stripped.startswith("{") and stripped.endswith("}") and len(stripped) > 2

    return previous is not None and following is not None and is_markup(previous) and is_markup(following)

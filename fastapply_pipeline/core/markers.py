"""Elision markers: the comment each language uses for "unchanged code here", and every spelling models use.

Our snippets always use the canonical marker of the file's language; the applier and the dataset checks
recognize the spellings models produce in the wild too (`// ... rest of code ...`, `/* ... */`, `# ...`,
`// ...`, `{/* ... */}` in JSX), in any indentation.
"""

from __future__ import annotations

import re

MARKER_TEXT = "... existing code ..."
LINE_COMMENT = {
    "python": "#",
    "typescript": "//",
    "tsx": "//",
    "javascript": "//",
    "jsx": "//",
    "rust": "//",
    "go": "//",
    "ruby": "#",
    "shell": "#",
    "yaml": "#",
}
BLOCK_COMMENT = {"markdown": ("<!--", "-->"), "html": ("<!--", "-->"), "css": ("/*", "*/")}
JSX_LANGUAGES = frozenset({"tsx", "jsx"})
JSX_MARKER = "{/* " + MARKER_TEXT + " */}"

_ELLIPSIS = r"(?:\.\.\.+|…)"
# words after the ellipsis; a colon only after a space (`... unchanged: load the batch ...`, never `...props:`)
_TAIL = r"(?:[\w\s,.'()/…-]*|\s[\w\s,.:;'()/…-]*)"
# Comments that announce elided code in words ("rest of the code", "existing imports remain unchanged").
_ELIDED_WORDS = (
    r"(?:keep\s+)?(?:existing|rest\s+of(?:\s+the)?|remaining|unchanged|omitted|previous)\s+(?:\w+\s+){0,2}?"
    r"(?:code|file|functions?|methods?|components?|class|classes|imports?|logic|implementation|props|properties|"
    r"lines?|content|sections?|fields?|members?|tests?|cases?|routes?|handlers?|styles?|rules?|items?|entries)"
    r"(?:\s+(?:remains?|stays?|is|are|unchanged|the\s+same|as\s+before|here|above|below|\.\.\.+|…))*\s*\.?"
)
# "other methods unchanged", "everything else stays the same": only with the word that says it is unchanged
_OTHER = (
    r"(?:other\s+\w+(?:\s+\w+)?|everything\s+else)\s+(?:(?:is|are|remains?|stays?)\s+)?"
    r"(?:unchanged|the\s+same|as\s+before|omitted|\.\.\.+|…)\s*\.?"
)
_SAME_WORDS = r"(?:same|unchanged|as\s+before|no\s+changes?)\s*\.?"
# "rest of the README unchanged", "the rest of this file stays the same", "rest of predict() and main() unchanged",
# "keep the rest as is" (more than three words only when they end by saying it is unchanged)
_REST_SAID = (
    r"(?:is\s+|are\s+)?(?:unchanged|(?:remains?|stays?)\s+(?:the\s+same|unchanged)|as\s+(?:is|before))"
)
_REST_OF = (
    r"(?:keep\s+)?(?:the\s+)?rest(?:"
    rf"(?:\s+of\s+(?:the\s+|this\s+)?[\w.-]+(?:\s+[\w.-]+){{0,2}}?)?(?:\s+{_REST_SAID})?"  # up to 3 words
    rf"|\s+of\s+(?:the\s+|this\s+)?[\w.()-]+(?:\s+[\w.()-]+){{0,4}}?\s+{_REST_SAID}"  # more, if it says so
    r")\s*\.?"
)
_WORDS = rf"(?:{_ELIDED_WORDS}|{_OTHER}|{_SAME_WORDS}|{_REST_OF})"
_MARKER_BODY = rf"(?:{_ELLIPSIS}{_TAIL}|{_WORDS}|\(\s*{_WORDS}\s*\))"  # `(rest unchanged)`
_MARKER_RE = re.compile(
    r"^\s*(?:"
    rf"(?://|#|--)\s*{_MARKER_BODY}"  # line comments
    rf"|/\*+\s*{_MARKER_BODY}\s*\*+/"  # block comment
    rf"|\{{\s*/\*+\s*{_MARKER_BODY}\s*\*+/\s*\}}"  # JSX expression container
    rf"|<!--\s*{_MARKER_BODY}\s*-->"  # HTML/markdown
    r")\s*$",
    re.IGNORECASE,
)


_BARE_RE = re.compile(rf"^\s*(?:{_ELLIPSIS}|\[\s*{_ELLIPSIS}\s*\])\s*$")


def marker_for(language: str, *, jsx_child: bool = False, indent: str = "", text: str = MARKER_TEXT) -> str:
    """The canonical marker line for a language; `jsx_child` when it stands among JSX children."""
    if jsx_child and language in JSX_LANGUAGES:
        return indent + "{/* " + text + " */}"
    if language in BLOCK_COMMENT:
        opening, closing = BLOCK_COMMENT[language]
        return f"{indent}{opening} {text} {closing}"
    return f"{indent}{LINE_COMMENT.get(language, '//')} {text}"


def is_marker_line(line: str, *, bare_ellipsis: bool = True) -> bool:
    """True when the whole line is an elision marker in any common spelling and indentation.

    A line of just `...` counts too unless `bare_ellipsis` is False (in a file where `...` is code, such
    as a Python stub).
    """
    return bool(_MARKER_RE.match(line)) or (bare_ellipsis and bool(_BARE_RE.match(line)))


def contains_marker(text: str) -> bool:
    """True when any line of `text` is an elision marker (a leak, when `text` is a merged file).

    A bare `...` line is not counted: it is code in Python stubs and protocols.
    """
    return any(is_marker_line(line, bare_ellipsis=False) for line in text.splitlines())


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

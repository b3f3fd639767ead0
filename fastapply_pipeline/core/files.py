"""Which tracked files become snippets, and the one reason each other file is excluded.

Two passes: `classify_entry` decides from the tree entry alone (path, mode, size) so that most files are
never read; `classify_content` decides from the bytes of the files that are left.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

import pathspec

from fastapply_pipeline.core.git import TreeEntry


class Exclusion(StrEnum):
    """Why a tracked file did not become a snippet. Every excluded file gets exactly one."""

    NON_UTF8_PATH = "non_utf8_path"  # a file name git holds as bytes that are not UTF-8
    SUBMODULE = "submodule"
    SYMLINK_OUTSIDE_REPO = "symlink_outside_repo"
    SYMLINK = "symlink"  # points inside the repo: its target is read on its own
    EXCLUDED_BY_GLOB = "excluded_by_glob"
    VENDORED = "vendored"
    LOCKFILE = "lockfile"
    LANGUAGE_NOT_SELECTED = "language_not_selected"
    TOO_LARGE = "too_large"
    BINARY = "binary"
    NON_UTF8 = "non_utf8"
    EMPTY = "empty"
    MINIFIED = "minified"
    GENERATED = "generated"
    DATA_TABLE = "data_table"  # mostly literals: lookup tables, unicode data, word lists
    SECRET = "secret"
    LICENSE_NOT_ALLOWED = "license_not_allowed"  # the whole repository is skipped
    NOT_SAMPLED = "not_sampled"  # a good file that its bucket's sample size left out


EXTENSION_LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "jsx",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rs": "rust",
    ".go": "go",
}

# Folders of code copied in from elsewhere, at any depth (`pip/_vendor/`, `web/node_modules/`). The default
# of the `files.vendored_dirs` setting: config.py refers to this one definition.
DEFAULT_VENDORED_DIRS = (
    "node_modules",
    "bower_components",
    "jspm_packages",
    ".yarn",
    "vendor",
    "vendors",
    "vendored",
    "_vendor",
    "_vendored",
    "third_party",
    "third-party",
    "thirdparty",
    "3rdparty",
    "external",
    "site-packages",
    ".venv",
    "venv",
)
GENERATED_DIRS = frozenset({"dist", "build", "out", ".next", ".nuxt", "coverage", "__generated__", ".turbo"})
LOCKFILES = frozenset(
    {
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "bun.lock",
        "poetry.lock",
        "uv.lock",
        "Pipfile.lock",
        "Cargo.lock",
        "composer.lock",
        "Gemfile.lock",
        "npm-shrinkwrap.json",
        "pdm.lock",
    }
)
_GENERATED_NAME_RE = re.compile(
    r"(_pb2(_grpc)?\.pyi?$|\.pb\.(js|ts)$|\.generated\.[a-z]+$|\.gen\.[a-z]+$|(^|/)generated_[^/]*$)"
)
_MINIFIED_NAME_RE = re.compile(r"[.-]min\.(js|mjs|cjs|css)$|\.bundle\.js$")

# Minified code packs most of its text into long lines; hand-written code can hold one long line (a regex,
# a data URI) among hundreds of short ones. So the file is minified when lines longer than the first limit
# hold at least this share of its characters (a bundle: one huge line, maybe a license comment), or when
# most non-blank lines are longer than the second limit (wrapped minifier output: every line ~500
# characters). Over the 27,000 .py/.js files installed in this project's virtualenv these catch every
# bundle and a few data files (72,000-character lines of names), and none of the hand-written modules with
# one long line (pygments' scripting lexer, 6,300 characters). Markdown, where one paragraph per line is
# normal prose, gets only the first rule.
MINIFIED_LONG_LINE_CHARS = 1000
MINIFIED_LONG_LINE_SHARE = 0.9
MINIFIED_MEDIAN_LINE_CHARS = 200

# A generated file says so in its header: the comments (or module docstring) before the first line of
# code, within this many lines. Only there: the same words in a string a generator script writes, or in
# a comment further down, describe other files.
HEADER_LINES = 40


@dataclass(frozen=True)
class FileRules:
    """The filters of fastapply.yaml for one source, compiled once."""

    languages: frozenset[str]
    max_file_bytes: int
    include: pathspec.GitIgnoreSpec | None
    exclude: pathspec.GitIgnoreSpec | None
    vendored_dirs: frozenset[str] = frozenset(DEFAULT_VENDORED_DIRS)

    @classmethod
    def build(
        cls,
        languages: Iterable[str],
        max_file_bytes: int,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        vendored_dirs: Iterable[str] = DEFAULT_VENDORED_DIRS,
    ) -> FileRules:
        include, exclude = list(include), list(exclude)
        return cls(
            languages=frozenset(languages),
            max_file_bytes=max_file_bytes,
            include=pathspec.GitIgnoreSpec.from_lines(include) if include else None,
            exclude=pathspec.GitIgnoreSpec.from_lines(exclude) if exclude else None,
            vendored_dirs=frozenset(vendored_dirs),
        )


def language_of(path: str) -> str | None:
    """The language of a path by its extension, or None."""
    return EXTENSION_LANGUAGES.get(posixpath.splitext(path)[1].lower())


def is_utf8_path(path: str) -> bool:
    """Whether a path read from git (undecodable bytes kept as surrogates) is valid UTF-8 text."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_path(path: str) -> str:
    """A path safe to store and show: bytes that are not UTF-8 written as escapes (`caf\\xe9.py`)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _symlink_escapes(link_path: str, target: bytes) -> bool:
    try:
        target_str = target.decode("utf-8")
    except UnicodeDecodeError:
        return True
    if target_str.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target_str))
    return resolved == ".." or resolved.startswith("../")


def classify_entry(
    entry: TreeEntry, rules: FileRules, symlink_target: bytes | None = None
) -> Exclusion | None:
    """The exclusion reason decidable without reading the file, or None if its content must be read.

    `symlink_target` is the blob of a symlink entry (its target path), needed to tell escaping links apart.
    """
    path = entry.path
    if not is_utf8_path(path):  # a row's path must be text; checked first so no later step sees it
        return Exclusion.NON_UTF8_PATH
    if entry.is_submodule:
        return Exclusion.SUBMODULE
    if entry.is_symlink:
        if symlink_target is None or _symlink_escapes(path, symlink_target):
            return Exclusion.SYMLINK_OUTSIDE_REPO
        return Exclusion.SYMLINK
    if (rules.include is not None and not rules.include.match_file(path)) or (
        rules.exclude is not None and rules.exclude.match_file(path)
    ):
        return Exclusion.EXCLUDED_BY_GLOB
    parts = path.split("/")
    if any(part in rules.vendored_dirs for part in parts[:-1]):
        return Exclusion.VENDORED
    name = parts[-1]
    if name in LOCKFILES:
        return Exclusion.LOCKFILE
    if language_of(path) not in rules.languages:
        return Exclusion.LANGUAGE_NOT_SELECTED
    if any(part in GENERATED_DIRS for part in parts[:-1]) or _GENERATED_NAME_RE.search(path):
        return Exclusion.GENERATED
    if _MINIFIED_NAME_RE.search(name):
        return Exclusion.MINIFIED
    if entry.size is not None and entry.size > rules.max_file_bytes:
        return Exclusion.TOO_LARGE
    return None


def classify_content(data: bytes, language: str | None = None) -> tuple[Exclusion | None, str | None]:
    """(reason, None) for a file to exclude by its bytes, else (None, decoded text).

    `language` (from `language_of`) spares Markdown the rules meant for code; None applies them all.
    """
    if b"\0" in data[:8000]:  # git's own binary heuristic
        return Exclusion.BINARY, None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Exclusion.NON_UTF8, None
    if not text.strip():
        return Exclusion.EMPTY, None
    if is_minified(text, language):
        return Exclusion.MINIFIED, None
    if has_generated_header(text):
        return Exclusion.GENERATED, None
    if language != "markdown" and is_data_table(text):
        return Exclusion.DATA_TABLE, None
    return None, text


def is_minified(text: str, language: str | None = None) -> bool:
    """Whether most of the text sits in long lines (see MINIFIED_LONG_LINE_CHARS)."""
    lengths = list(map(len, text.split("\n")))
    if max(lengths) <= MINIFIED_MEDIAN_LINE_CHARS:  # most files: no line long enough for either rule
        return False
    if sum(n for n in lengths if n > MINIFIED_LONG_LINE_CHARS) >= MINIFIED_LONG_LINE_SHARE * len(text):
        return True
    if language == "markdown":
        return False
    # Most non-blank lines long (their median above the limit).
    non_blank = sum(1 for line in text.split("\n") if line.strip())
    return 2 * sum(1 for n in lengths if n > MINIFIED_MEDIAN_LINE_CHARS) > non_blank


# --- generated headers -------------------------------------------------------------------------------

# Lines a header may hold before its comments that are not comments themselves.
_HEADER_SKIP_RE = re.compile(r"""^(?:#!.*|['"]use (?:strict|client|server)['"];?)$""")
_DOCSTRING_OPEN_RE = re.compile(r'^[rRuU]?("{3}|\'{3})')
# Quoted text in a comment is an example ("this tool writes `# DO NOT EDIT` headers"), not a statement.
_QUOTED_RE = re.compile(r"""`[^`]*`|"[^"]*"|(?<![\w'])'[^']*'(?![\w'])""")

_EDIT = r"(?:do\s+not|don'?t|never)\s+"
_WHOLE_FILE = r"\s+(?:this|the)\s+(?:generated\s+)?(?:file|files|module|class|code)\b|\s+it\b"
_BY_HAND = r"\s+(?:by\s+hand|by-hand|manually|directly)\b"
_AUTO_REQUIRED = r"(?:auto[-\s]?|automatically\s+|machine[-\s])"
_AUTO = f"{_AUTO_REQUIRED}?"
_STARTS_UPPER = r"(?-i:(?=[A-Z]))"  # a header's sentence, not the wrapped middle of one
_GENERATED_MARKERS = [
    # Meta's marker, also Rust's Cargo and mypy-protobuf.
    r"(?<![\w@])@generated\b",
    r"\bgenerated\s+from\s+\S+\s+by\s+antlr\b",
    r"\bgenerated\s+by\s+(?:the\s+protocol\s+buffer\s+compiler|the\s+grpc\b|protoc\b)",
    # "DO NOT EDIT!", "Do not modify this file manually", "Don't edit by hand", "do not change this file",
    # but not "do not edit this line", "do not edit the MODULES dict by hand" (a note about one part of a
    # hand-written file) or "these don't change, but..." (prose).
    rf"\b{_EDIT}(?:edit|modify|change|touch)(?:{_WHOLE_FILE})(?:{_BY_HAND}|\s+(?:as|because|since)\b|\s*(?:[^\w\s]|$))",
    rf"\b{_EDIT}(?:edit|modify)(?:{_BY_HAND}|\s*(?:[.!;:*#=/<>—-]|$))",
    # "This file was auto-generated ...", "This is an autogenerated file", "THIS FILE IS GENERATED".
    rf"\b(?:this|the)\s+(?:file|module|code)\s+(?:is|was|has\s+been)\s+{_AUTO}generated\b",
    rf"\bthis\s+is\s+an?\s+{_AUTO}generated\s+(?:file|module)\b",
    # A header sentence opening with "Generated by X", "Auto-generated from X", "Autogenerated.", Go's
    # "Code generated by stringer; DO NOT EDIT." (not "Generated values are cached": prose).
    rf"^(?:note:\s*)?(?:{_STARTS_UPPER}(?:code\s+)?generated|(?:code\s+)?{_AUTO_REQUIRED}generated)"
    r"(?:\s+(?:by|from|with|using)\b|\s*(?:[^\w\s]|$))",
    r"^file\s+generated\s+by\b",  # setuptools-scm's _version.py
]
_GENERATED_RE = re.compile("|".join(f"(?:{m})" for m in _GENERATED_MARKERS), re.IGNORECASE)


def header_comments(text: str) -> Iterator[str]:
    """The text of the comments (and module docstring) that open the file, before its first code line.

    Comment syntax is stripped (`#`, `//`, `/* */`, ` * `, `<!-- -->`, Python's docstring quotes), and
    so is quoted text.
    """
    closer: str | None = None  # the end of the block comment or docstring we are in
    in_docstring = False
    for raw in text.split("\n", HEADER_LINES)[:HEADER_LINES]:
        line = raw.strip()
        if closer is not None:
            end = line.find(closer)
            body = line if end == -1 else line[:end]
            if end != -1:
                closer = None
            # A comment line inside a docstring is an example of code, not this file's own comment.
            if not (in_docstring and body.startswith(("#", "//", ">>>"))):
                yield _comment_text(body)
            continue
        if not line or _HEADER_SKIP_RE.match(line):
            continue
        if line.startswith(("#", "//")):
            yield _comment_text(line)
            continue
        docstring = _DOCSTRING_OPEN_RE.match(line)
        if docstring is not None:
            opener, end_mark = docstring.group(0), docstring.group(1)
        elif line.startswith("/*"):
            opener, end_mark = "/*", "*/"
        elif line.startswith("<!--"):
            opener, end_mark = "<!--", "-->"
        elif line.startswith("*"):  # the rest of a block comment whose opener came before
            yield _comment_text(line)
            continue
        else:
            return  # the first line of code: the header is over
        in_docstring = docstring is not None
        rest = line[len(opener) :]
        end = rest.find(end_mark)
        yield _comment_text(rest if end == -1 else rest[:end])
        closer = end_mark if end == -1 else None


def _comment_text(line: str) -> str:
    line = line.lstrip("#/!*-<> \t").rstrip("*/-> \t")
    return _QUOTED_RE.sub("", line).strip()


def has_generated_header(text: str) -> bool:
    """Whether the file's own header says it is generated (ANTLR, protoc, `@generated`, `DO NOT EDIT`)."""
    return any(_GENERATED_RE.search(comment) for comment in header_comments(text))


# --- data tables -------------------------------------------------------------------------------------

# A line of a data table holds only literals: strings, numbers, constants, the brackets and commas between
# them, and maybe a key (`name:`) or a trailing comment. Atomic groups keep the match linear on any line.
_STRING = r"""(?:[rRbBuUfF]{0,2}(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`\n]*`))"""
_NUMBER = (
    r"(?>[-+]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"(?:_?(?:[iu](?:8|16|32|64|128|size)|f32|f64)|[jJlLnuU]{0,3}))"
)
_CONSTANT = r"(?:True|False|None|null|true|false|undefined|nil|NaN|Infinity)"
_LITERAL_LINE_RE = re.compile(
    rf"(?>[\s\[\](){{}},;:]+|(?:{_STRING}|{_NUMBER}|{_CONSTANT})(?![\w$])|[A-Za-z_$][\w$]*\s*:(?!:))*+"
    r"(?:(?:#|//).*)?"
)

_BRACKETS_ONLY_RE = re.compile(r"[^\w'\"`]*")

# Measured over the .py/.js sources installed in this project's virtualenv (27,000 files): pure tables
# (idna's uts46data, pygments' _mapping and *_builtins, unicode and colour tables, SPDX and reserved-word
# lists) have 90-100 % literal lines, while hand-written modules with a table (websocket's UTF-8 DFA,
# graphql's escape table, `__all__`-heavy `__init__`s, parametrized tests) stay under 90 %. Files with
# fewer lines than the minimum are too small to call (a docstring-only `__init__.py`).
DATA_TABLE_LITERAL_SHARE = 0.9
DATA_TABLE_MIN_LINES = 20


def is_data_table(text: str) -> bool:
    """Whether at least DATA_TABLE_LITERAL_SHARE of the file's lines (not blank, comment or bracket-only)
    are nothing but literals."""
    lines = text.split("\n")
    literal = other = 0
    allowed = (1 - DATA_TABLE_LITERAL_SHARE) / DATA_TABLE_LITERAL_SHARE  # other lines per literal line
    for number, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith(("#", "//", "/*", "*")):
            continue
        if _BRACKETS_ONLY_RE.fullmatch(line):  # `],` `})`: neutral
            continue
        if _LITERAL_LINE_RE.fullmatch(line):
            literal += 1
        else:
            other += 1
            # Stop once even an all-literal rest could not reach the share: normal code stops early.
            if other > allowed * (literal + len(lines) - number - 1):
                return False
    return literal + other >= DATA_TABLE_MIN_LINES and other <= allowed * literal

"""tree-sitter parsers for the pipeline's languages (from the per-language wheels; nothing downloads)."""

from __future__ import annotations

import hashlib
import threading
from functools import cache

import tree_sitter as ts


@cache
def language(name: str) -> ts.Language:
    """The tree-sitter grammar for one of: python, typescript, tsx, javascript, jsx."""
    if name == "python":
        import tree_sitter_python as grammar

        return ts.Language(grammar.language())
    if name in ("typescript", "tsx"):
        import tree_sitter_typescript as grammar

        return ts.Language(grammar.language_typescript() if name == "typescript" else grammar.language_tsx())
    if name in ("javascript", "jsx"):  # the JavaScript grammar parses JSX too
        import tree_sitter_javascript as grammar

        return ts.Language(grammar.language())
    raise ValueError(f"no tree-sitter grammar for {name!r}")


GRAMMARS = frozenset({"python", "typescript", "tsx", "javascript", "jsx"})


def has_grammar(name: str) -> bool:
    """Whether tree-sitter can parse this language here."""
    return name in GRAMMARS


def parser(name: str) -> ts.Parser:
    return ts.Parser(language(name))


def parse(text: str, lang: str) -> ts.Tree:
    return parser(lang).parse(text.encode("utf-8"))


def parses(text: str, lang: str) -> bool:
    """True when the text parses without any error or missing node (always True where no grammar is
    available here: Markdown, Rust, Go are checked by line alignment only). Python is also compiled
    (`ast.parse`): tree-sitter accepts some code Python rejects (an empty `with` body, `del f()`).

    The verdict is remembered by the text's digest: the same original is checked for every edit of its
    file (renderer, applier, dataset), and compiling a 1,500-line file costs ~40 ms."""
    if not has_grammar(lang):
        return True
    key = (lang, hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest())
    verdict = _VERDICTS.get(key)
    if verdict is None:
        verdict = not parse(text, lang).root_node.has_error and (lang != "python" or _compiles(text))
        with _VERDICTS_LOCK:
            if len(_VERDICTS) >= _VERDICTS_MAX:
                _VERDICTS.clear()  # a bound on memory; a cleared verdict is only computed again
            _VERDICTS[key] = verdict
    return verdict


_VERDICTS: dict[tuple[str, bytes], bool] = {}
_VERDICTS_MAX = 8192
_VERDICTS_LOCK = threading.Lock()


def _compiles(text: str) -> bool:
    import ast

    try:
        ast.parse(text)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte
        return False
    return True

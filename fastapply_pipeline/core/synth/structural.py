"""The structural generator: LintSeq's idea beyond Python. Remove or restore whole syntactic units.

A real file is parsed with tree-sitter; whole-line units (functions, methods, classes, class members,
statements, import groups, JSX elements, object properties, ...) are chosen with a seeded RNG and
removed, so that both versions of the file are real code that parses. Depending on the edit kind the
real file is the final version (add), the original (delete), or both sides lose different units of
one function (modify). The labels are exact by construction; every pair is still checked by parsing
and by the applier before it becomes a triple.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter as ts

from fastapply_pipeline.core.parsing import parse
from fastapply_pipeline.core.settings import DEFAULT_EDIT_KINDS, TripleSettings

_JS = {
    "functions": {
        "function_declaration",
        "method_definition",
        "generator_function_declaration",
        "arrow_function",
        "function_expression",
        "function",
    },
    "features": {
        "function_declaration",
        "generator_function_declaration",
        "class_declaration",
        "method_definition",
        "lexical_declaration",
        "variable_declaration",
        "export_statement",
        "interface_declaration",
        "type_alias_declaration",
        "enum_declaration",
        "public_field_definition",
        "field_definition",
        "import_statement",
        "jsx_element",
        "jsx_self_closing_element",
        "pair",
        "property_signature",
    },
    "body": {"statement_block"},
    "literals": {"number", "string"},
}
UNITS = {
    "python": {
        "functions": {"function_definition"},
        "features": {
            "function_definition",
            "class_definition",
            "decorated_definition",
            "import_statement",
            "import_from_statement",
            "expression_statement",
            "pair",
        },
        "body": {"block"},
        "literals": {"integer", "float", "string"},
    },
    "typescript": _JS,
    "tsx": _JS,
    "javascript": _JS,
    "jsx": _JS,
}
_IDENTIFIER_TYPES = {"identifier", "shorthand_property_identifier", "shorthand_property_identifier_pattern"}


@dataclass(frozen=True)
class Edit:
    original: str
    final: str
    kind: str


class NoCandidate(Exception):
    """The file has no unit this edit kind can use (counted, not an error)."""


@dataclass(frozen=True)
class _Unit:
    start_row: int
    end_row: int  # inclusive
    node_type: str

    def overlaps(self, other: _Unit) -> bool:
        return not (self.end_row < other.start_row or other.end_row < self.start_row)


class FileUnits:
    """The removable whole-line units of one parsed file."""

    def __init__(self, text: str, language: str):
        self.text = text
        self.language = language
        self.lines = text.split("\n")
        self.tree = parse(text, language)
        self.kinds = UNITS[language]
        self.features: list[_Unit] = []
        self.functions: list[tuple[ts.Node, list[_Unit]]] = []  # function node, its body statements
        self.literals: list[ts.Node] = []
        self._walk(self.tree.root_node)

    def _walk(self, root: ts.Node) -> None:
        # Iterative, in document order: deeply nested code must not hit Python's recursion limit.
        stack = [root]
        while stack:
            node = stack.pop()
            self._visit_children(node)
            stack.extend(reversed(node.named_children))

    def _visit_children(self, node: ts.Node) -> None:
        for child in node.named_children:
            if (
                child.type in self.kinds["features"]
                and self._whole_lines(child)
                and node.type != "decorated_definition"  # the decorators go with the definition
                and (child.type != "expression_statement" or node.type == "module")
            ):
                self.features.append(_Unit(child.start_point[0], child.end_point[0], child.type))
            if child.type in self.kinds["functions"]:
                body = next((c for c in child.named_children if c.type in self.kinds["body"]), None)
                if body is not None:
                    statements = [
                        _Unit(s.start_point[0], s.end_point[0], s.type)
                        for s in body.named_children
                        if s.type != "comment" and self._whole_lines(s)
                    ]
                    if len(statements) >= 2:
                        self.functions.append((child, statements))
            if child.type in self.kinds["literals"] and child.start_point[0] == child.end_point[0]:
                self.literals.append(child)

    def _whole_lines(self, node: ts.Node) -> bool:
        """The node alone on its lines (a trailing ',' or ';' allowed), so removing its lines is clean."""
        (r0, c0), (r1, c1) = node.start_point, node.end_point
        before = self._line_bytes(r0)[:c0]
        after = self._line_bytes(r1)[c1:]
        return not before.strip() and after.strip() in (b"", b",", b";")

    def _line_bytes(self, row: int) -> bytes:
        return self.lines[row].encode("utf-8") if row < len(self.lines) else b""

    def without(self, units: list[_Unit]) -> str:
        """The text with the units' lines removed, and the blank lines that would pile up where they were."""
        drop: set[int] = set()
        last = len(self.lines) - (1 if self.text.endswith("\n") else 0)  # keep the final newline
        for unit in units:
            rows = range(unit.start_row, unit.end_row + 1)
            drop.update(rows)
            # Blank lines after the unit go too when blank lines also precede it (keeps spacing uniform)...
            before = unit.start_row - 1
            while before >= 0 and before in drop:
                before -= 1
            after = unit.end_row + 1
            # ...and so do they when the unit opened the file (no blank lines left at its very start).
            if before < 0 or not self.lines[before].strip():
                while after < last and not self.lines[after].strip() and after not in drop:
                    drop.add(after)
                    after += 1
            if after >= last:  # the unit closed the file: no blank lines left at its very end either
                while before >= 0 and not self.lines[before].strip():
                    drop.add(before)
                    before -= 1
        return "\n".join(line for row, line in enumerate(self.lines) if row not in drop)


@dataclass(frozen=True)
class _Section:
    """A Markdown section standing in for a function: an id, like a tree-sitter node's."""

    id: int


class MarkdownUnits(FileUnits):
    """The removable units of a Markdown file, by its layout (no grammar here): features are blocks
    (paragraphs, lists, tables, fenced code), sections (a heading and its blocks) play the functions."""

    def __init__(self, text: str, language: str = "markdown"):
        self.text, self.language = text, language
        self.lines = text.split("\n")
        self.tree = None
        self.features, self.functions, self.literals = [], [], []
        blocks: list[_Unit] = []
        start, fence = None, False
        for row, line in enumerate([*self.lines, ""]):
            if line.lstrip().startswith(("```", "~~~")):
                fence = not fence
                start = row if start is None else start
                continue
            if fence:
                continue
            if line.strip():
                start = row if start is None else start
            elif start is not None:
                kind = "heading" if self.lines[start].startswith("#") and row - start == 1 else "block"
                blocks.append(_Unit(start, row - 1, kind))
                start = None
        self.features = [b for b in blocks if b.node_type == "block"]
        heading_rows = [i for i, b in enumerate(blocks) if b.node_type == "heading"]
        for number, at in enumerate(heading_rows):
            end = heading_rows[number + 1] if number + 1 < len(heading_rows) else len(blocks)
            body = blocks[at + 1 : end]
            if len(body) >= 2:
                self.functions.append((_Section(at), body))


def units_of(text: str, language: str) -> FileUnits:
    """The removable units of a file: tree-sitter's where a grammar exists, the layout's for Markdown."""
    return MarkdownUnits(text, language) if language == "markdown" else FileUnits(text, language)


def _pick(rng: random.Random, items: list, count: int, *, disjoint: bool = True) -> list:
    if len(items) < count:
        raise NoCandidate(f"needs {count} units, the file has {len(items)}")
    for _ in range(20):
        chosen = rng.sample(items, count)
        if not disjoint or all(not a.overlaps(b) for i, a in enumerate(chosen) for b in chosen[i + 1 :]):
            return chosen
    raise NoCandidate("no disjoint units")


def _modify(units: FileUnits, rng: random.Random, functions: int) -> tuple[list[_Unit], list[_Unit]]:
    """Removals for (original, final) that change statements inside `functions` functions."""
    chosen = _pick(rng, units.functions, functions, disjoint=False)
    if len({node.id for node, _ in chosen}) < functions:
        raise NoCandidate("needs distinct functions")
    from_original: list[_Unit] = []
    from_final: list[_Unit] = []
    for _, statements in chosen:
        a, b = rng.sample(statements, 2)
        if rng.random() < 0.5:  # rewrite: the edit drops one statement and adds another
            from_original.append(a)
            from_final.append(b)
        else:  # extend: the edit adds statements back
            from_original.append(a)
    return from_original, from_final


def _swap_neighbours(units: FileUnits, rng: random.Random) -> str:
    """The file with two neighbouring units (at the same depth, only blank lines between) swapped."""
    lines = units.lines
    features = sorted(units.features, key=lambda u: (u.start_row, -u.end_row))

    def indent(row: int) -> str:
        return lines[row][: len(lines[row]) - len(lines[row].lstrip())]

    pairs = [
        (a, b)
        for a, b in itertools.pairwise(features)
        if a.end_row < b.start_row
        and all(not lines[r].strip() for r in range(a.end_row + 1, b.start_row))
        and indent(a.start_row) == indent(b.start_row)
        and lines[a.start_row : a.end_row + 1] != lines[b.start_row : b.end_row + 1]
    ]
    if not pairs:
        raise NoCandidate("no two neighbouring units to swap")
    a, b = rng.choice(pairs)
    swapped = (
        lines[: a.start_row]
        + lines[b.start_row : b.end_row + 1]
        + lines[a.end_row + 1 : b.start_row]
        + lines[a.start_row : a.end_row + 1]
        + lines[b.end_row + 1 :]
    )
    return "\n".join(swapped)


def _rename(units: FileUnits, rng: random.Random) -> str:
    """The file with one local name renamed throughout one function (a small refactor)."""
    if not units.functions or units.tree is None:
        raise NoCandidate("no function to refactor")
    node, _ = rng.choice(units.functions)
    names: dict[str, list[ts.Node]] = {}
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type in _IDENTIFIER_TYPES:
            names.setdefault(current.text.decode("utf-8", "replace"), []).append(current)
        stack.extend(current.named_children)
    candidates = sorted(
        n for n, found in names.items() if len(found) >= 2 and len(n) >= 2 and n.isidentifier()
    )
    if not candidates:
        raise NoCandidate("no local name used twice")
    name = rng.choice(candidates)
    new_name = _better_name(name)
    if re.search(rf"\b{re.escape(new_name)}\b", units.text):
        raise NoCandidate("the new name is taken")
    data = units.text.encode("utf-8")
    for ident in sorted(names[name], key=lambda n: n.start_byte, reverse=True):
        data = data[: ident.start_byte] + new_name.encode() + data[ident.end_byte :]
    return data.decode("utf-8")


def _better_name(name: str) -> str:
    if "_" in name or name.islower():
        return f"{name}_value"
    return f"{name}Value"


def _change_literal(units: FileUnits, rng: random.Random) -> str:
    """The file with one plain number or string literal changed (a one-line modification)."""
    plain = [
        node for node in units.literals if _new_literal(node.text.decode("utf-8", "replace"), 1) is not None
    ]
    if not plain:
        raise NoCandidate("no plain number or string literal to change")
    node = rng.choice(plain)
    replacement = _new_literal(node.text.decode("utf-8"), rng.randint(1, 9))
    data = units.text.encode("utf-8")
    return (data[: node.start_byte] + replacement.encode() + data[node.end_byte :]).decode("utf-8")


def _new_literal(text: str, step: int) -> str | None:
    if text.isdigit():
        return str(int(text) + step)
    if len(text) >= 2 and text[0] in "'\"`" and text[-1] == text[0] and "\\" not in text and "{" not in text:
        return text[0] + (text[1:-1] + " (updated)" if text[1:-1] else "updated") + text[-1]
    return None


def structural_edit(
    text: str, language: str, kind: str, rng: random.Random, units: FileUnits | None = None
) -> Edit:
    """One edit of the given kind on a real file (raises NoCandidate when the file has no usable unit)."""
    units = units or units_of(text, language)
    if kind == "add_feature":
        return Edit(units.without(_pick(rng, units.features, 1)), text, kind)
    if kind == "add_two_features":
        return Edit(units.without(_pick(rng, units.features, 2)), text, kind)
    if kind == "delete_feature":
        return Edit(text, units.without(_pick(rng, units.features, 1)), kind)
    if kind in ("modify_function", "modify_two_functions"):
        from_original, from_final = _modify(units, rng, 1 if kind == "modify_function" else 2)
        return Edit(units.without(from_original), units.without(from_final), kind)
    if kind == "small_refactor":
        return Edit(text, _rename(units, rng), kind)
    if kind == "modify_single_line":
        return Edit(text, _change_literal(units, rng), kind)
    if kind == "reorder_units":
        return Edit(text, _swap_neighbours(units, rng), kind)
    raise ValueError(f"unknown edit kind {kind!r}; choose from {sorted(DEFAULT_EDIT_KINDS)}")


def structural_edits(
    units: FileUnits, *, attempts: int, weights: dict[str, float], rng: random.Random
) -> Iterator[Edit | NoCandidate]:
    """`attempts` edits of kinds drawn with `weights`; a kind the file cannot host yields NoCandidate."""
    kinds, chances = zip(*sorted(weights.items()), strict=True)
    for kind in rng.choices(kinds, weights=chances, k=attempts):
        try:
            yield structural_edit(units.text, units.language, kind, rng, units)
        except NoCandidate as missing:
            yield NoCandidate(f"{kind}: {missing}")


def structural_triples(
    files: list[tuple[str, str, str, str, str]],
    *,
    settings: TripleSettings,
    seed: int,
):
    """Triples from (repo, commit, path, language, content) rows; a report with failures by reason.

    From `settings`: the structural section (attempts per file, edit-kind weights), the snippet context
    and the snippet styles (core.render) drawn for each triple."""
    attempts_per_file = settings.structural.attempts_per_file
    weights = dict(settings.structural.edit_kinds)
    from fastapply_pipeline.core.triples import GeneratorReport, Provenance, make_triple

    report = GeneratorReport()
    for repo, commit, path, language, content in files:
        rng = random.Random(f"{seed}\0{repo}\0{path}")
        units = units_of(content, language)
        if units.tree is not None and units.tree.root_node.has_error:
            report.failures["source_does_not_parse"] += attempts_per_file
            continue
        edits = structural_edits(units, attempts=attempts_per_file, weights=weights, rng=rng)
        seen: set[tuple[str, str]] = set()
        for edit in edits:
            if isinstance(edit, NoCandidate):
                report.failures[f"no_unit_for_{str(edit).split(':', 1)[0]}"] += 1
                continue
            if (edit.original, edit.final) in seen:
                report.failures["duplicate_edit"] += 1
                continue
            seen.add((edit.original, edit.final))
            provenance = Provenance(repo, commit, path, language, "structural", edit.kind)
            result = make_triple(
                edit.original,
                edit.final,
                provenance,
                min_context=settings.min_context,
                max_context=settings.max_context,
                require_original_parses=True,
                styles=dict(settings.snippet_styles),
            )
            report.add(result)
    return report

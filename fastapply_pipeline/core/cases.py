"""Hand-written lazy-edit cases: the realistic evaluation set (one `.case` file per case).

A case file holds `key: value` header lines (language, shape, expect, note) and then the sections
`=== original ===`, `=== snippet ===` and, for `expect: merge`, `=== final ===`, each verbatim up to the
next section line. `expect: refuse` cases have no final: a careful reader could not place the snippet
either, so the only right answer of the applier is a refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_SECTION_RE = re.compile(r"^=== (original|snippet|final) ===$", re.MULTILINE)
HEADER_KEYS = ("language", "shape", "expect", "note")


@dataclass(frozen=True)
class Case:
    case_id: str
    language: str
    shape: str
    expect: str  # "merge" or "refuse"
    note: str
    original: str
    snippet: str
    final: str | None

    def as_row(self) -> dict:
        """The case as an evaluation row (the columns `fastapply eval --data` reads)."""
        return {
            "triple_id": self.case_id,
            "original_code": self.original,
            "update_snippet": self.snippet,
            "final_code": self.final,
            "language": self.language,
            "generator": "hand_written",
            "edit_kind": self.shape,
        }


def parse_case(text: str, case_id: str) -> Case:
    """One case from the text of a `.case` file; raises ValueError naming the file and the problem."""
    parts = _SECTION_RE.split(text)
    header, sections = parts[0], dict(zip(parts[1::2], parts[2::2], strict=True))
    fields = {}
    for line in header.splitlines():
        if line.strip():
            key, sep, value = line.partition(":")
            if not sep or key.strip() not in HEADER_KEYS:
                raise ValueError(f"{case_id}: bad header line {line!r} (keys: {', '.join(HEADER_KEYS)})")
            fields[key.strip()] = value.strip()
    missing = [k for k in ("language", "shape", "expect") if k not in fields]
    if missing or "original" not in sections or "snippet" not in sections:
        raise ValueError(
            f"{case_id}: needs the headers language, shape, expect and the original/snippet sections"
        )
    expect = fields["expect"]
    if expect not in ("merge", "refuse") or (expect == "merge") != ("final" in sections):
        raise ValueError(f"{case_id}: `expect: merge` needs a final section, `expect: refuse` must have none")
    text_of = {name: body.removeprefix("\n").removeprefix("\r\n") for name, body in sections.items()}
    return Case(
        case_id,
        fields["language"],
        fields["shape"],
        expect,
        fields.get("note", ""),
        text_of["original"],
        text_of["snippet"],
        text_of.get("final"),
    )


def load_cases(folder: str | Path) -> list[Case]:
    """Every `.case` file of a folder, sorted by name."""
    paths = sorted(Path(folder).glob("*.case"))
    if not paths:
        raise ValueError(f"{folder} holds no .case files")
    return [parse_case(path.read_bytes().decode("utf-8"), path.stem) for path in paths]


def is_case_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and any(path.glob("*.case"))

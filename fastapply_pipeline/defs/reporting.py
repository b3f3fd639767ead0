"""Small helpers that turn counts into metadata the Dagster UI renders well."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> dg.MarkdownMetadataValue:
    """A markdown table; numbers are right-aligned."""
    rows = [list(r) for r in rows]
    align = [
        "---:" if rows and all(isinstance(r[i], int | float) for r in rows) else "---"
        for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return dg.MetadataValue.md("\n".join(lines))


def count_table(title: str, counts: Mapping[str, int]) -> dg.MarkdownMetadataValue:
    """A two-column markdown table of counts, largest first, with a total row."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return markdown_table([title, "count"], [*ordered, ("**total**", sum(counts.values()))])


def histogram(labels: Sequence[str], counts: Sequence[int], width: int = 30) -> dg.MarkdownMetadataValue:
    """A text bar chart as a markdown table (renders in the asset's metadata panel)."""
    top = max(counts, default=0) or 1
    rows = [
        (label, count, "█" * round(width * count / top)) for label, count in zip(labels, counts, strict=True)
    ]
    return markdown_table(["bucket", "files", ""], rows)

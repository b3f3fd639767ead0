"""Small helpers that turn counts into metadata the Dagster UI renders well."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

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


def check_specs(asset: str, descriptions: Mapping[str, str]) -> list[dg.AssetCheckSpec]:
    """Blocking checks of an asset's data contract, one per named rule."""
    return [
        dg.AssetCheckSpec(name, asset=asset, description=text, blocking=True)
        for name, text in descriptions.items()
    ]


def check_results(offenders_by_check: Mapping[str, list[str]]) -> Iterator[dg.AssetCheckResult]:
    """One result per check: passed when it found no offender; the first offenders as metadata."""
    for name, offenders in offenders_by_check.items():
        yield dg.AssetCheckResult(
            check_name=name,
            passed=not offenders,
            metadata={"violations": len(offenders), "examples": ", ".join(offenders[:10]) or "-"},
        )

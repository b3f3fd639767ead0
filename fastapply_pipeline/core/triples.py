"""Edit triples: the record every generator emits, and the checks that make its label exact.

Every candidate (original, final) pair goes through `make_triple`: it must change something, the final
must parse wherever the original parsed, a snippet must render, and the deterministic applier must
turn (original, snippet) back into exactly the final. A candidate that fails is counted under its
reason, never silently dropped.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import polars as pl

from fastapply_pipeline.core.apply import apply_snippet
from fastapply_pipeline.core.markers import contains_marker
from fastapply_pipeline.core.parsing import has_grammar, parses
from fastapply_pipeline.core.render import RenderError, pick_style, render_snippet

TRIPLE_SCHEMA = {
    "triple_id": pl.String,
    "repo": pl.String,
    "commit": pl.String,
    "path": pl.String,
    "language": pl.String,
    "generator": pl.String,
    "edit_kind": pl.String,
    "snippet_style": pl.String,  # how the snippet is written (core.render styles; "llm" for LLM snippets)
    "model": pl.String,  # the LLM that wrote the edit; null for the offline generators
    "flag": pl.String,  # an LLM triple the applier disagrees with: why (kept for the dataset stage)
    "original_code": pl.String,
    "update_snippet": pl.String,
    "final_code": pl.String,
    "hunks": pl.Int64,
    "context_lines": pl.Int64,
    "original_tokens": pl.Int64,
    "snippet_tokens": pl.Int64,
    "final_tokens": pl.Int64,
}


@dataclass(frozen=True)
class Provenance:
    repo: str
    commit: str
    path: str
    language: str
    generator: str
    edit_kind: str


@dataclass
class Triple:
    provenance: Provenance
    original_code: str
    update_snippet: str
    final_code: str
    hunks: int
    context_lines: int
    snippet_style: str = "anchored"
    style_fallback: str | None = None  # "<drawn style>: <reason>" when the drawn style could not be used

    @property
    def triple_id(self) -> str:
        return triple_id(self.provenance.repo, self.provenance.path, self.original_code, self.final_code)


# When generators make the same edit of the same file (a commit that adds one function is also the
# structural edit that removes it; a reverted and re-applied commit; an LLM goal leading to an edit
# already made), one copy is kept: the first in this order. A real commit over a synthetic edit, exact
# offline labels over LLM-written ones.
GENERATOR_PRECEDENCE = ("git_history", "structural", "anthropic", "openai")


def triple_id(repo: str, path: str, original: str, final: str) -> str:
    """Content-addressed: the same edit of the same file gets the same id, whichever generator made it
    (and `drop_repeated_triples` keeps one copy of it)."""
    digest = hashlib.sha256()
    for part in (repo, path, original, final):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


@dataclass
class GeneratorReport:
    """What one generator produced, and why every other candidate was rejected."""

    triples: list[Triple] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    def extend(self, other: GeneratorReport) -> None:
        self.triples.extend(other.triples)
        self.failures.update(other.failures)

    def add(self, result: Triple | str) -> None:
        """Keep a triple, or count the reason a candidate was rejected."""
        if isinstance(result, Triple):
            self.triples.append(result)
        else:
            self.failures[result] += 1

    @property
    def style_fallbacks(self) -> Counter[str]:
        """Kept triples whose drawn snippet style could not express the edit, by "style: reason"."""
        return Counter(t.style_fallback for t in self.triples if t.style_fallback)


def make_triple(
    original: str,
    final: str,
    provenance: Provenance,
    *,
    min_context: int = 1,
    max_context: int = 12,
    require_original_parses: bool = False,
    styles: dict[str, float] | None = None,
) -> Triple | str:
    """A validated triple, or the reason (a short snake_case string) the pair cannot be one.

    The snippet's style is drawn from `styles` (weights; None: anchored), seeded by the triple itself;
    a style that cannot express the edit falls back to `anchored`, and the triple says why.
    """
    if original == final:
        return "no_change"
    language = provenance.language
    checks_syntax = has_grammar(language)
    original_parses = checks_syntax and parses(original, language)
    if require_original_parses and checks_syntax and not original_parses:
        return "original_does_not_parse"
    if original_parses and not parses(final, language):
        return "final_does_not_parse"
    if contains_marker(final) or contains_marker(original):
        return "marker_like_comment_in_file"
    rng = random.Random(triple_id(provenance.repo, provenance.path, original, final))
    drawn = pick_style(styles, rng) if styles else "anchored"
    fallback = None
    try:
        snippet = render_snippet(
            original, final, language, style=drawn, min_context=min_context, max_context=max_context, rng=rng
        )
    except RenderError as err:
        if drawn == "anchored":
            return err.reason
        fallback = f"{drawn}: {err.reason}"
        try:
            snippet = render_snippet(
                original, final, language, min_context=min_context, max_context=max_context
            )
        except RenderError as err:
            return err.reason
    result = apply_snippet(original, snippet.text, language=language)
    if not result.ok:
        return f"applier_{result.reason}"
    if result.merged != final:
        return "roundtrip_mismatch"
    return Triple(
        provenance, original, snippet.text, final, snippet.regions, snippet.context, snippet.style, fallback
    )


def triples_frame(triples: list[Triple]) -> pl.DataFrame:
    """Offline triples as a table (TRIPLE_SCHEMA; token counts filled by `with_token_counts`)."""
    rows = [
        {
            "triple_id": t.triple_id,
            **asdict(t.provenance),
            "original_code": t.original_code,
            "update_snippet": t.update_snippet,
            "final_code": t.final_code,
            "hunks": t.hunks,
            "context_lines": t.context_lines,
            "snippet_style": t.snippet_style,
        }
        for t in triples
    ]
    return pl.DataFrame(rows, schema=TRIPLE_SCHEMA)


def drop_repeated_triples(table: pl.DataFrame) -> tuple[pl.DataFrame, Counter[str]]:
    """Every triple_id once: the copy of the generator first in GENERATOR_PRECEDENCE (then the first in
    the table) is kept; the others are counted by "<generator>: duplicate_triple". Same rows, same order
    otherwise."""
    rank = {name: i for i, name in enumerate(GENERATOR_PRECEDENCE)}
    ordered = (
        table.with_row_index("_row")
        .with_columns(
            pl.col("generator").replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("_rank")
        )
        .sort("_rank", "_row")
    )
    first = ordered["triple_id"].is_first_distinct()
    dropped = Counter(f"{g}: duplicate_triple" for g in ordered.filter(~first)["generator"])
    kept = ordered.filter(first).sort("_row").drop("_row", "_rank")
    return kept, dropped


def with_token_counts(table: pl.DataFrame, count_batch: Callable[[list[str]], list[int]]) -> pl.DataFrame:
    """Token counts of the three texts of every row."""
    columns = {
        "original_tokens": "original_code",
        "snippet_tokens": "update_snippet",
        "final_tokens": "final_code",
    }
    return table.with_columns(
        pl.Series(name, count_batch(table[text].to_list()) if table.height else [], dtype=pl.Int64)
        for name, text in columns.items()
    )


@dataclass
class Combined:
    """edit_triples' rows and what was dropped on the way, by "generator: reason"."""

    table: pl.DataFrame
    failures: dict[str, int]
    style_fallbacks: Counter[str]


def combine(
    reports: dict[str, GeneratorReport],
    llm_tables: list[pl.DataFrame],
    count_batch: Callable[[list[str]], list[int]],
) -> Combined:
    """One repository's triples: the offline generators' (`reports`, by generator) with the LLM assets'
    rows (their rejected rows counted, their flagged ones kept with the applier's disagreement in
    `flag`), the same edit from two generators kept once (GENERATOR_PRECEDENCE, the others counted as
    duplicate_triple), with token counts, in a stable order."""
    offline = triples_frame([t for report in reports.values() for t in report.triples])
    failures = {f"{name}: {reason}": n for name, r in reports.items() for reason, n in r.failures.items()}
    kept_llm = []
    for llm_table in llm_tables:
        for (generator, reason), n in Counter(
            llm_table.filter(pl.col("status") == "rejected").select("generator", "reason").iter_rows()
        ).items():
            failures[f"{generator}: {reason}"] = n
        kept = llm_table.filter(pl.col("status") != "rejected").rename({"reason": "flag"})
        kept_llm.append(kept.select([name for name in TRIPLE_SCHEMA if name in kept.columns]))
    table, repeated = drop_repeated_triples(
        pl.concat([offline, *kept_llm], how="diagonal_relaxed")
        .with_columns(pl.col("snippet_style").fill_null("llm"))
        .select(list(TRIPLE_SCHEMA))
    )
    for key, n in repeated.items():
        failures[key] = failures.get(key, 0) + n
    style_fallbacks: Counter[str] = Counter()
    for report in reports.values():
        style_fallbacks.update(report.style_fallbacks)
    table = with_token_counts(table, count_batch).sort("generator", "path", "edit_kind", "triple_id")
    return Combined(table, failures, style_fallbacks)


def check_triples(table: pl.DataFrame) -> dict[str, list[str]]:
    """The data contract of edit_triples: check name -> offending triple ids."""
    not_roundtrip, leaked = [], []
    for tid, original, snippet, final, flag, language in table.select(
        "triple_id", "original_code", "update_snippet", "final_code", "flag", "language"
    ).iter_rows():
        if flag is None and apply_snippet(original, snippet, language=language).merged != final:
            not_roundtrip.append(tid)
        if contains_marker(final):
            leaked.append(tid)
    duplicates = table.filter(pl.col("triple_id").is_duplicated())["triple_id"].unique().to_list()
    return {"applier_roundtrip": not_roundtrip, "no_marker_in_final": leaked, "unique_triple_ids": duplicates}

"""edit_triples: exact-label (original_code, update_snippet, final_code) triples of one repository."""

from collections import Counter
from collections.abc import Iterator

import dagster as dg
import polars as pl

from fastapply_pipeline.core.reasons import WHY_EMPTY, why_no_triples
from fastapply_pipeline.core.repos import RepoSnapshot, ensure_mirror
from fastapply_pipeline.core.synth.git_history import git_history_triples
from fastapply_pipeline.core.synth.structural import structural_triples
from fastapply_pipeline.core.tokens import get_token_counter
from fastapply_pipeline.core.triples import GeneratorReport, check_triples, combine
from fastapply_pipeline.defs.partitions import source_repo_partitions
from fastapply_pipeline.defs.reporting import check_results, check_specs, count_table, markdown_table
from fastapply_pipeline.defs.resources import FastApplyResource

TRIPLE_CHECKS = {
    "applier_roundtrip": "apply(original_code, update_snippet) == final_code for every row not flagged.",
    "no_marker_in_final": "No elision marker leaked into any final_code.",
    "unique_triple_ids": "No triple appears twice.",
}


@dg.asset(
    partitions_def=source_repo_partitions,
    group_name="triples",
    kinds={"polars", "parquet", "tree-sitter"},
    io_manager_key="parquet_io_manager",
    code_version="4",
    check_specs=check_specs("edit_triples", TRIPLE_CHECKS),
    description=(
        "The repository's edit triples from every enabled generator. Offline, with exact labels: "
        "`structural` removes or restores whole syntactic units (tree-sitter) in the snippet files; "
        "`git_history` takes real commits' parent/child file versions; their snippets are rendered with "
        "just enough context and the deterministic applier turns (original, snippet) into exactly the "
        "final, which parses wherever the original did. LLM-written (`anthropic`, `openai`, from their "
        "assets): the ok rows, and the flagged ones with the applier's disagreement in `flag`. The same "
        "edit from two generators is kept once (a real commit's copy first, then structural, then LLM) "
        "and the others counted as duplicate_triple. Rejected candidates are counted by reason."
    ),
)
def edit_triples(
    context: dg.AssetExecutionContext,
    fastapply: FastApplyResource,
    cloned_repo: dict,
    code_snippets: pl.DataFrame,
    anthropic_triples: pl.DataFrame,
    openai_triples: pl.DataFrame,
) -> Iterator[dg.Output[pl.DataFrame] | dg.AssetCheckResult]:
    config = fastapply.load()
    source = config.source(context.partition_key)
    snapshot = RepoSnapshot.from_dict(cloned_repo)
    settings = config.triples
    reports: dict[str, GeneratorReport] = {}

    if "structural" in settings.generators:
        files = code_snippets.select("repo", "commit", "path", "language", "content").rows()
        reports["structural"] = structural_triples(files, settings=settings, seed=config.seed)
    if "git_history" in settings.generators:
        if not config.allows_license(snapshot.license):
            reports["git_history"] = GeneratorReport()  # a repository skipped for its license stays skipped
        else:
            rules = config.file_rules(source)
            reports["git_history"] = git_history_triples(
                ensure_mirror(snapshot, timeout=config.clone.timeout_seconds),
                snapshot.commit,
                repo=source.key,
                rules=rules,
                scanner=config.secret_scanner(),
                settings=settings,
            )

    combined = combine(
        reports, [anthropic_triples, openai_triples], get_token_counter(config.snippets.tokenizer).count_batch
    )
    table, failures, style_fallbacks = combined.table, combined.failures, combined.style_fallbacks

    by_kind = Counter(zip(table["generator"], table["edit_kind"], strict=True))
    yield dg.Output(
        table,
        metadata={
            "rows": table.height,
            "rows_by_generator": count_table("generator", dict(Counter(table["generator"]))),
            "rows_by_edit_kind": markdown_table(
                ["generator", "edit kind", "rows"], [(g, k, n) for (g, k), n in sorted(by_kind.items())]
            ),
            "rejected_by_reason": count_table("generator: reason", failures),
            "rejected": dg.MetadataValue.json(failures),
            "rows_by_language": count_table("language", dict(Counter(table["language"]))),
            "rows_by_snippet_style": count_table("snippet style", dict(Counter(table["snippet_style"]))),
            "style_fallbacks": count_table("drawn style: why it fell back to anchored", dict(style_fallbacks))
            if style_fallbacks
            else "none",
            "examples": dg.MetadataValue.md(_examples(table)),
            "snippet_tokens_median": float(table["snippet_tokens"].median() or 0),
            "final_tokens_median": float(table["final_tokens"].median() or 0),
            "commit": snapshot.commit,
            **(
                {
                    WHY_EMPTY: why_no_triples(
                        snippet_rows=code_snippets.height, generators=settings.generators, rejected=failures
                    )
                }
                if table.height == 0
                else {}
            ),
        },
    )
    yield from check_results(check_triples(table))


def _examples(table: pl.DataFrame, count: int = 3) -> str:
    """A few rendered snippets (one per generator first), shortened, as markdown."""
    if table.height == 0:
        return "(no triples)"
    picks = table.group_by("generator", maintain_order=True).head(count - 1).head(count)
    parts = []
    for row in picks.iter_rows(named=True):
        snippet = row["update_snippet"]
        if len(snippet) > 1500:
            snippet = snippet[:1500] + "\n…"
        parts.append(f"**{row['generator']} / {row['edit_kind']}**: `{row['path']}`\n\n```\n{snippet}\n```")
    return "\n\n".join(parts)

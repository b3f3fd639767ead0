"""code_snippets: each repository's source files, filtered, token-counted, bucketed and sampled."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from fastapply_pipeline.config import FastApplyConfig
from fastapply_pipeline.core.buckets import BucketSpec
from fastapply_pipeline.core.reasons import WHY_EMPTY, why_no_snippets
from fastapply_pipeline.core.repos import RepoSnapshot, ensure_mirror
from fastapply_pipeline.core.snippets import (
    CACHE_VERSION,
    bucket_spec,
    build_snippets,
    cache_key,
    cached_snippets,
    check_snippets,
)
from fastapply_pipeline.core.tokens import get_token_counter
from fastapply_pipeline.defs.partitions import source_repo_partitions
from fastapply_pipeline.defs.reporting import (
    check_results,
    check_specs,
    count_table,
    histogram,
    markdown_table,
)
from fastapply_pipeline.defs.resources import FastApplyResource

SNIPPET_CHECKS = {
    "no_empty_content": "Every snippet has non-blank content.",
    "token_counts_inside_bucket": "Every snippet's token count lies inside its bucket's range.",
    "no_duplicate_paths": "No path appears twice in a repository's snippets.",
}


@dg.asset(
    partitions_def=source_repo_partitions,
    group_name="snippets",
    kinds={"polars", "parquet"},
    io_manager_key="parquet_io_manager",
    code_version=CACHE_VERSION,
    check_specs=check_specs("code_snippets", SNIPPET_CHECKS),
    description=(
        "Source files of one repository at its pinned commit: kept by language, with vendored, generated, "
        "minified, binary, non-UTF-8, oversize, symlinked, lockfile and secret-holding files excluded and "
        "counted by reason; token-counted offline, bucketed by tokens and sampled with a seed."
    ),
)
def code_snippets(
    context: dg.AssetExecutionContext, fastapply: FastApplyResource, cloned_repo: dict
) -> Iterator[dg.Output[pl.DataFrame] | dg.AssetCheckResult]:
    config = fastapply.load()
    source = config.source(context.partition_key)
    snapshot = RepoSnapshot.from_dict(cloned_repo)
    spec = bucket_spec(config.snippets)
    key = cache_key(config, source, snapshot.commit)

    def build() -> tuple[pl.DataFrame, dict]:
        allowed = config.allows_license(snapshot.license)
        built = build_snippets(
            ensure_mirror(snapshot, timeout=config.clone.timeout_seconds),
            snapshot.commit,
            repo=source.key,
            rules=config.file_rules(source),
            counter=get_token_counter(config.snippets.tokenizer),
            buckets=spec,
            seed=config.seed,
            scanner=config.secret_scanner(),
            license_allowed=allowed,
        )
        if not built.accounted():
            raise RuntimeError(f"{source.key}: files were lost between the tree and the table (a bug)")
        return built.table, built.report(license_allowed=allowed)

    table, report, cache_hit = cached_snippets(config.cache_dir / "snippets", key, build)
    if cache_hit:
        context.log.info(f"{source.key}: snippets for {snapshot.commit[:12]} come from the cache ({key})")

    if not report["license_allowed"]:
        context.log.warning(f"{source.key}: license {snapshot.license} is not allowed; no snippets")

    labels = spec.labels
    rows_per_bucket = dict.fromkeys(labels, 0) | dict(table.group_by("bucket").len().iter_rows())
    token_counts = table["token_count"]
    yield dg.Output(
        table,
        data_version=dg.DataVersion(key),
        metadata={
            "rows": table.height,
            "files_total": report["files_total"],
            "excluded": sum(report["exclusions"].values()),
            "exclusions_by_reason": count_table("reason", report["exclusions"]),
            "exclusions": dg.MetadataValue.json(report["exclusions"]),
            "excluded_examples": markdown_table(
                ["reason", "example paths"],
                [(reason, ", ".join(paths)) for reason, paths in sorted(report["examples"].items())],
            ),
            "secret_files_by_type": count_table("secret type", report["secret_types"]),
            # Files detect-secrets flagged that were kept: every finding an obvious placeholder.
            "placeholder_secret_files_by_type": count_table(
                "placeholder type", report.get("placeholder_secrets", {})
            ),
            "rows_per_bucket": markdown_table(
                ["bucket", "candidates", "sample size", "rows"],
                [
                    (
                        label,
                        report["candidates_per_bucket"].get(label, 0),
                        "all" if size is None else size,
                        rows_per_bucket[label],
                    )
                    for label, size in zip(labels, spec.samples, strict=True)
                ],
            ),
            # Files that only sample-0 buckets could hold, seen from their size: never tokenized (the
            # candidates above are the tokenized files), counted under not_sampled.
            "untokenized_by_range": count_table(
                "sample-0 token range", report.get("untokenized_per_range", {})
            ),
            "token_histogram": histogram(labels, [rows_per_bucket[label] for label in labels]),
            "rows_by_language": count_table("language", dict(table.group_by("language").len().iter_rows())),
            "tokens_total": int(token_counts.sum() or 0),
            "tokens_median": float(token_counts.median() or 0),
            "tokenizer": config.snippets.tokenizer,
            "seed": config.seed,
            "commit": snapshot.commit,
            "license": snapshot.license,
            "cache_key": key,
            "cache_hit": cache_hit,
            **({WHY_EMPTY: why_empty(config, snapshot, report, spec)} if table.height == 0 else {}),
        },
    )
    yield from check_results(check_snippets(table, spec))


def why_empty(config: FastApplyConfig, snapshot: RepoSnapshot, report: dict, spec: BucketSpec) -> str:
    """Why no file of the repository was kept, naming the setting to change (printed by `fastapply run`)."""
    return why_no_snippets(
        files_total=report["files_total"],
        exclusions=report["exclusions"],
        license=snapshot.license,
        license_allowed=report["license_allowed"],
        languages=config.files.languages,
        samples=dict(zip(spec.labels, spec.samples, strict=True)),
        candidates_per_bucket=report["candidates_per_bucket"],
        untokenized_per_range=report.get("untokenized_per_range", {}),  # absent in older cache entries
    )

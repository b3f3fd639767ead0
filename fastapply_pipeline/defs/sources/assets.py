"""cloned_repo: each source in fastapply.yaml, fetched at a pinned commit into the local cache."""

from pathlib import Path

import dagster as dg

from fastapply_pipeline.core.repos import snapshot_repo
from fastapply_pipeline.core.sources import redact_url
from fastapply_pipeline.defs.partitions import source_repo_partitions
from fastapply_pipeline.defs.reporting import count_table
from fastapply_pipeline.defs.resources import FastApplyResource


@dg.asset(
    partitions_def=source_repo_partitions,
    group_name="sources",
    kinds={"git"},
    code_version="1",
    description=(
        "A source repository of fastapply.yaml fetched with git (no prompts, no hooks, a timeout) into a "
        "bare mirror in the cache folder, pinned to the commit its ref resolves to. The commit is the "
        "data version: re-materializing an unchanged repository leaves everything downstream up to date."
    ),
)
def cloned_repo(context: dg.AssetExecutionContext, fastapply: FastApplyResource) -> dg.Output[dict]:
    config = fastapply.load()
    source = config.source(context.partition_key)
    location = config.source_location(source)
    if (
        source.path is not None
        and not (Path(location) / ".git").exists()
        and not (Path(location) / "HEAD").exists()
    ):
        raise FileNotFoundError(
            f"source {source.key!r}: {location} is not a git repository; fix its `path:` in fastapply.yaml"
        )
    snapshot, synced = snapshot_repo(
        key=source.key,
        location=location,
        ref=source.ref,
        cache_dir=config.cache_dir,
        depth=config.clone.depth,
        timeout=config.clone.timeout_seconds,
        license_override=source.license,
    )
    allowed = config.allows_license(snapshot.license)
    if not allowed:
        context.log.warning(
            f"{source.key}: license {snapshot.license} is not in files.allowed_licenses; code_snippets will "
            "skip this repository (set `license:` on the source if the detection is wrong)"
        )
    if synced.cleared_locks:
        context.log.warning(
            f"{source.key}: removed git lock files that a killed git left in the mirror: "
            f"{', '.join(synced.cleared_locks)}"
        )
    context.log.info(
        f"{source.key}: {snapshot.commit[:12]} ({'fetched' if synced.fetched else 'already cached'})"
    )
    return dg.Output(
        snapshot.to_dict(),
        data_version=dg.DataVersion(snapshot.commit),
        metadata={
            "commit": snapshot.commit,
            "ref": source.ref or "HEAD",
            "location": redact_url(snapshot.location),
            "license": snapshot.license,
            "license_files": ", ".join(snapshot.license_files) or "(none)",
            "license_overridden": snapshot.license_overridden,
            "license_allowed": allowed,
            "file_count": snapshot.file_count,
            "total_bytes": snapshot.total_bytes,
            "files_by_language": count_table("language", snapshot.files_by_language),
            "committed_at": snapshot.committed_at,
            "commit_subject": snapshot.subject,
            "history_depth": snapshot.depth or "full",
            "fetched": synced.fetched,
            "stale_git_locks_cleared": len(synced.cleared_locks),
        },
    )

"""The partitions every per-repository stage shares: one dynamic partition per source in fastapply.yaml."""

import dagster as dg

SOURCE_REPO_PARTITIONS = "source_repo"

source_repo_partitions = dg.DynamicPartitionsDefinition(name=SOURCE_REPO_PARTITIONS)

PER_REPO_GROUPS = ("sources", "snippets", "triples")  # the asset groups partitioned by source_repo
PER_REPO = dg.AssetSelection.groups(*PER_REPO_GROUPS)
PER_REPO_JOB = "source_repo_job"

per_repo_job = dg.define_asset_job(
    PER_REPO_JOB,
    selection=PER_REPO,
    description="Builds every per-repository asset for one source_repo partition.",
)

"""The partitions every per-repository stage shares: one dynamic partition per source in fastapply.yaml."""

import dagster as dg

SOURCE_REPO_PARTITIONS = "source_repo"

source_repo_partitions = dg.DynamicPartitionsDefinition(name=SOURCE_REPO_PARTITIONS)

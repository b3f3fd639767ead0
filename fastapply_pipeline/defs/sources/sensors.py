"""The sensor that turns sources in fastapply.yaml into source_repo partitions.

It only registers partitions: building them is declarative automation's job (the per-repository assets
are `on_missing`, see defs/automation.py), so a new source is built once, by one mechanism.
"""

import dagster as dg

from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS, source_repo_partitions
from fastapply_pipeline.defs.resources import FastApplyResource


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Adds a source_repo partition for each new source in fastapply.yaml; the automation sensor then "
        "builds its per-repository assets (on_missing). Sources removed from the file are reported, never "
        "deleted: remove their partitions explicitly with `fastapply sources remove KEY`."
    ),
)
def source_repos_sensor(context: dg.SensorEvaluationContext, fastapply: FastApplyResource) -> dg.SensorResult:
    config = fastapply.load()  # an invalid file fails the tick with the message that names the field
    existing = set(context.instance.get_dynamic_partitions(SOURCE_REPO_PARTITIONS))
    new_sources = [s for s in config.sources if s.key not in existing]
    orphaned = sorted(existing - {s.key for s in config.sources})
    if orphaned:
        context.log.warning(
            f"partitions without a source in fastapply.yaml (kept; remove explicitly): {', '.join(orphaned)}"
        )
    if not new_sources:
        return dg.SensorResult(skip_reason=dg.SkipReason("every source already has a partition"))
    keys = [s.key for s in new_sources]
    context.log.info(f"adding source_repo partitions: {', '.join(keys)}")
    return dg.SensorResult(dynamic_partitions_requests=[source_repo_partitions.build_add_request(keys)])

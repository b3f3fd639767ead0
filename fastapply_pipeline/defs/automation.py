"""What starts work without a click: the dataset refresh schedule, declarative automation, GPU jobs.

- `dataset_refresh` (cron `automation.refresh_cron`): resolves each built source's ref again with
  `git ls-remote` (no fetch) and requests the per-repository assets only for sources whose commit
  differs from the one their triples were built from (or whose last refresh stopped half-way).
- Per-repository assets: built when missing: a new source_repo partition (the sensor adds it when a
  source appears in fastapply.yaml) is materialized once; nothing else re-runs.
- fastapply_dataset: after each tick of `automation.dataset_cron` (later than the refresh, so that its
  runs exist by then), once any upstream partition was updated since it was last built and no upstream
  run is still in flight, it is rebuilt, once. Not `eager`: eager would
  rebuild after every single partition (and, with a new repository still missing, not at all).
- Training and evaluation: jobs a user launches (`train_job`, `eval_job`), each step holding the `gpu`
  pool; `automation.train_cron` / `eval_cron` add schedules for them.
"""

import dagster as dg

from fastapply_pipeline.config import FastApplyConfig
from fastapply_pipeline.core.git import GitError, remote_commit
from fastapply_pipeline.defs.dataset.assets import fastapply_dataset
from fastapply_pipeline.defs.eval.assets import eval_job
from fastapply_pipeline.defs.partitions import PER_REPO_JOB, SOURCE_REPO_PARTITIONS
from fastapply_pipeline.defs.resources import FastApplyResource
from fastapply_pipeline.defs.sources.assets import cloned_repo
from fastapply_pipeline.defs.training.assets import train_job
from fastapply_pipeline.defs.triples.assets import edit_triples

OWNERS = ["team:fastapply"]
REFRESH_TAG = "fastapply/refresh"

# Evaluates every asset's automation condition (on by default, unlike Dagster's implicit default sensor).
automation_sensor = dg.AutomationConditionSensorDefinition(
    "fastapply_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Builds new source_repo partitions (on_missing) and rebuilds fastapply_dataset after refreshes.",
)


def per_repo_condition() -> dg.AutomationCondition:
    """Build a source_repo partition that was never built, once its upstream is there.

    Dagster's `on_missing()` only reacts to partitions that go missing after its first evaluation, so
    sources already registered when the daemon first looks (a fresh deployment, or the sensor winning
    the race at start-up) would never be built. This is the same idea without that blind spot; a
    partition whose last run failed is left alone (no retry storm) until someone runs it again.
    """
    return (
        dg.AutomationCondition.missing()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.in_progress()
        & ~dg.AutomationCondition.execution_failed()
    ).with_label("on_missing (every never-built partition)")


def dataset_condition(cron: str, timezone: str) -> dg.AutomationCondition:
    """Once per cron tick, after any upstream update, when no upstream run is in flight."""
    return (
        dg.AutomationCondition.cron_tick_passed(cron, timezone).since_last_handled()
        & dg.AutomationCondition.any_deps_updated()
        .since_last_handled()
        .with_label("any_deps_updated_since_built")
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"on_cron({cron}) after any upstream update")


def _latest(instance: dg.DagsterInstance, asset: dg.AssetKey, partition: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition]), limit=1
    ).records
    return records[0] if records else None


def built_commit(instance: dg.DagsterInstance, partition: str) -> str | None:
    """The commit a partition's triples were built from: cloned_repo's last recorded commit, provided
    edit_triples was materialized after it. None: the last refresh stopped half-way (cloned, but its
    triples failed), which the next tick must try again."""
    cloned, triples = (
        _latest(instance, cloned_repo.key, partition),
        _latest(instance, edit_triples.key, partition),
    )
    if cloned is None or triples is None or triples.storage_id < cloned.storage_id:
        return None
    commit = cloned.asset_materialization.metadata.get("commit") if cloned.asset_materialization else None
    return commit.value if commit is not None else None


def refresh_schedule(config: FastApplyConfig) -> dg.ScheduleDefinition:
    settings = config.automation

    @dg.schedule(
        name="dataset_refresh",
        cron_schedule=settings.refresh_cron,
        execution_timezone=settings.timezone,
        job_name=PER_REPO_JOB,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Resolves every source's ref again (git ls-remote, no fetch) and rebuilds the per-repository "
            "assets of the sources whose commit changed; fastapply_dataset follows once they are done."
        ),
    )
    def dataset_refresh(context: dg.ScheduleEvaluationContext, fastapply: FastApplyResource):
        config = fastapply.load()
        registered = set(context.instance.get_dynamic_partitions(SOURCE_REPO_PARTITIONS))
        requests, unchanged, failed = [], [], []
        for source in config.sources:
            if source.key not in registered:
                continue  # the sensor adds it (and on_missing builds it)
            try:
                now = remote_commit(
                    config.source_location(source),
                    source.ref,
                    timeout=config.clone.timeout_seconds,
                    what=f"source {source.key!r}",
                )
            except GitError as err:
                failed.append(source.key)
                context.log.warning(f"{source.key}: cannot resolve {source.ref or 'HEAD'}: {err}")
                continue
            if _latest(context.instance, cloned_repo.key, source.key) is None:
                continue  # never built: the automation sensor builds it (no second run racing the first)
            before = built_commit(context.instance, source.key)
            if now == before:
                unchanged.append(source.key)
                continue
            context.log.info(f"{source.key}: {(before or 'not fully built')[:15]} -> {now[:12]}")
            tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
            requests.append(
                dg.RunRequest(
                    partition_key=source.key,
                    # Once per tick and commit; a refresh that failed is tried again at the next tick.
                    run_key=f"refresh:{source.key}:{now}:{tick}",
                    tags={"fastapply/source": source.key, REFRESH_TAG: now},
                )
            )
        summary = f"{len(requests)} changed, {len(unchanged)} unchanged, {len(failed)} unreachable"
        context.log.info(summary)
        if not requests:
            return dg.SkipReason(f"no source changed ({summary})")
        return requests

    return dataset_refresh


def job_schedules(config: FastApplyConfig) -> list[dg.ScheduleDefinition]:
    settings = config.automation
    schedules = []
    for job, cron in ((train_job, settings.train_cron), (eval_job, settings.eval_cron)):
        if cron:
            schedules.append(
                dg.ScheduleDefinition(
                    name=f"{job.name}_schedule",
                    job=job,
                    cron_schedule=cron,
                    execution_timezone=settings.timezone,
                    default_status=dg.DefaultScheduleStatus.RUNNING,
                )
            )
    return schedules


def automate(assets: list, config: FastApplyConfig) -> list:
    """The assets with their owners and automation conditions (those depend on fastapply.yaml)."""
    settings = config.automation
    per_repo = per_repo_condition()
    dataset = dataset_condition(settings.dataset_cron, settings.timezone) if settings.dataset_cron else None

    def spec(asset_spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = None
        if asset_spec.partitions_def is not None:
            condition = per_repo
        elif asset_spec.key in fastapply_dataset.keys:  # and rejected_triples, its other output
            condition = dataset
        return asset_spec.replace_attributes(owners=OWNERS, automation_condition=condition)

    return list(dg.map_asset_specs(spec, assets))

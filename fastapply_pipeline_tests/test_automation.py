"""Operations: the refresh schedule, declarative automation and backfills, on a real SQLite instance with
real git repositories."""

import shutil
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from fastapply_pipeline.definitions import build_defs
from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS
from fastapply_pipeline.defs.resources import FastApplyResource
from fastapply_pipeline_tests.helpers import (
    MIT_TEXT,
    base_settings,
    commit_all,
    invoke,
    make_repo,
    python_module,
    write_config,
    write_files,
)


def small_repo(root, name: str) -> str:
    module = name.replace("-", "_")
    files = {
        "LICENSE": MIT_TEXT,
        f"{module}/core.py": python_module(f"{module}_core", 4),
        f"{module}/util.py": python_module(f"{module}_util", 3),
    }
    return str(make_repo(root / name, files))


def refresh_tick(defs, instance, config_path, when: datetime):
    schedule = defs.resolve_schedule_def("dataset_refresh")
    # Entered and left: the context opens its own instance (from the test instance's ref), and one left
    # open is closed whenever the collector gets to it, resetting Dagster's current defs-state storage
    # in the middle of a later test ("undefined DagsterInstance weakref").
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        repository_def=defs.get_repository_def(),
        resources={"fastapply": FastApplyResource(config_path=str(config_path))},
    ) as context:
        return schedule.evaluate_tick(context)


PER_REPO = dg.AssetSelection.groups("sources", "snippets", "triples")


def build(defs, instance, key: str, selection=PER_REPO) -> None:
    assert dg.materialize(
        defs.assets, instance=instance, resources=defs.resources, partition_key=key, selection=selection
    ).success


@pytest.mark.slow
def test_the_refresh_tick_requests_runs_only_for_sources_whose_commit_changed(
    tmp_path, instance, make_config
):
    sources = [{"path": small_repo(tmp_path, n), "name": n} for n in ("alpha", "beta", "gamma", "delta")]
    path, _ = make_config(sources)
    defs = build_defs(path)
    # gamma: registered, never built (the automation sensor's job); delta: not registered yet.
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["alpha", "beta", "gamma"])
    build(defs, instance, "alpha")
    build(defs, instance, "beta")
    monday = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    quiet = refresh_tick(defs, instance, path, monday)
    assert not quiet.run_requests and "no source changed (0 changed, 2 unchanged" in quiet.skip_message

    write_files(tmp_path / "beta", {"beta/extra.py": python_module("extra", 2)})
    head = commit_all(tmp_path / "beta", "second")
    tick = refresh_tick(defs, instance, path, monday + timedelta(days=7))
    (request,) = tick.run_requests
    assert request.partition_key == "beta" and request.tags["fastapply/refresh"] == head
    assert request.run_key.startswith(f"refresh:beta:{head}:")
    assert defs.resolve_schedule_def("dataset_refresh").job_name == "source_repo_job"

    # A refresh that stopped half-way (cloned the new commit, triples never rebuilt) is tried again ...
    build(defs, instance, "beta", selection=["cloned_repo"])
    again = refresh_tick(defs, instance, path, monday + timedelta(days=14))
    assert [r.partition_key for r in again.run_requests] == ["beta"]
    assert again.run_requests[0].run_key != request.run_key  # a new tick: not deduplicated away
    # ... and once the triples are rebuilt from it, the next tick has nothing to do.
    build(defs, instance, "beta")
    assert not refresh_tick(defs, instance, path, monday + timedelta(days=21)).run_requests


@pytest.mark.slow
def test_an_unreachable_source_is_reported_and_the_others_still_refresh(tmp_path, instance, make_config):
    alpha = small_repo(tmp_path, "alpha")
    sources = [{"path": alpha, "name": "alpha"}, {"path": str(tmp_path / "gone"), "name": "gone"}]
    path, _ = make_config(sources)
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["alpha", "gone"])
    build(defs, instance, "alpha")
    shutil.copytree(alpha, tmp_path / "gone")
    build(defs, instance, "gone")
    shutil.rmtree(tmp_path / "gone")  # the source disappears
    write_files(tmp_path / "alpha", {"alpha/new.py": python_module("new", 1)})
    commit_all(tmp_path / "alpha", "second")
    tick = refresh_tick(defs, instance, path, datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
    assert [r.partition_key for r in tick.run_requests] == ["alpha"]


@pytest.mark.slow
def test_new_partitions_are_built_once_and_the_dataset_waits_for_the_cron_tick(
    tmp_path, instance, make_config
):
    sources = [{"path": small_repo(tmp_path, f"r{i}"), "name": f"r{i}"} for i in range(2)]
    path, _ = make_config(sources)
    defs = build_defs(path)
    start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # a Friday: the weekly ticks are on Monday
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=start)
    assert first.total_requested == 0  # no partitions yet

    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["r0", "r1"])
    second = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=start + timedelta(minutes=1), cursor=first.cursor
    )
    cloned = second.get_requested_partitions(dg.AssetKey("cloned_repo"))
    assert cloned == {"r0", "r1"}
    assert second.get_num_requested(dg.AssetKey("fastapply_dataset")) == 0  # not eager: waits for the tick

    # Built (as the runs would): nothing is requested again for them.
    for key in ("r0", "r1"):
        assert dg.materialize(defs.assets, instance=instance, resources=defs.resources, partition_key=key,
                              selection=dg.AssetSelection.groups("sources", "snippets", "triples")).success  # fmt: skip
    third = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=start + timedelta(minutes=2), cursor=second.cursor
    )
    assert third.get_num_requested(dg.AssetKey("cloned_repo")) == 0
    assert third.get_num_requested(dg.AssetKey("fastapply_dataset")) == 0  # updated, but no tick yet

    def at(when: datetime, previous):
        return dg.evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=when, cursor=previous.cursor
        )

    # Not at the refresh's tick (Monday 03:00: its runs do not exist yet) ...
    refresh = at(datetime(2026, 11, 23, 3, 1, tzinfo=UTC), third)
    assert refresh.get_num_requested(dg.AssetKey("fastapply_dataset")) == 0
    # ... but after dataset_cron's (06:00) the dataset is requested once (with rejected_triples) ...
    tick = at(datetime(2026, 11, 23, 6, 1, tzinfo=UTC), refresh)
    assert tick.get_num_requested(dg.AssetKey("fastapply_dataset")) == 1
    assert tick.get_num_requested(dg.AssetKey("rejected_triples")) == 1
    # ... and not again on the next evaluation (it was handled).
    after = at(datetime(2026, 11, 23, 6, 2, tzinfo=UTC), tick)
    assert after.get_num_requested(dg.AssetKey("fastapply_dataset")) == 0

    # Five new repositories: only their partitions are requested.
    new = [f"n{i}" for i in range(5)]
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, new)
    added = at(datetime(2026, 11, 23, 7, 0, tzinfo=UTC), after)
    assert added.get_requested_partitions(dg.AssetKey("cloned_repo")) == set(new)


@pytest.mark.slow
def test_add_five_sources_then_backfill_builds_only_their_partitions(tmp_path, home):
    first = [{"path": small_repo(tmp_path, "first"), "name": "first"}]
    path = write_config(tmp_path / "fastapply.yaml", base_settings(tmp_path, first))
    result = invoke("run", "--config", path, "-q")
    assert result.exit_code == 0, result.output

    new = [{"path": small_repo(tmp_path, f"added-{i}"), "name": f"added-{i}"} for i in range(5)]
    write_config(path, base_settings(tmp_path, first + new))
    result = invoke("backfill", "--config", path, "-q")
    assert result.exit_code == 0, result.output
    assert (
        "Backfilling 5 source(s): added-0, added-1, added-2, added-3, added-4 (already built: 1)"
        in result.output
    )

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"fastapply/backfill": "cli"}))
        sources = sorted(r.tags.get("fastapply/source", "-") for r in runs)
        assert sources == ["-", "added-0", "added-1", "added-2", "added-3", "added-4"]  # "-": the dataset run
        assert instance.get_materialized_partitions(dg.AssetKey("edit_triples")) == {
            "first",
            *(s["name"] for s in new),
        }
        first_runs = instance.get_runs(filters=dg.RunsFilter(tags={"fastapply/source": "first"}))
        assert len(first_runs) == 1  # built once, by `fastapply run`; the backfill left it alone
        dataset = instance.get_latest_materialization_event(dg.AssetKey("fastapply_dataset"))
        assert dataset.run_id in {r.run_id for r in runs}

    again = invoke("backfill", "--config", path)
    assert again.exit_code == 0 and "Nothing to backfill" in again.output


def test_training_and_eval_are_jobs_with_optional_schedules(make_config):
    path, _ = make_config([{"url": "https://github.com/vercel/next.js"}])
    defs = build_defs(path)
    assert {s.name for s in defs.schedules} == {"dataset_refresh"}
    train = defs.resolve_job_def("train_job")
    assert {k.to_user_string() for k in train.asset_layer.executable_asset_keys} == {"lora_adapter"}
    path, _ = make_config(
        [{"url": "https://github.com/vercel/next.js"}],
        automation={
            "refresh_cron": None,
            "dataset_cron": None,
            "train_cron": "0 5 * * 6",
            "eval_cron": "0 9 * * 6",
        },
    )
    defs = build_defs(path)
    assert {s.name: s.cron_schedule for s in defs.schedules} == {
        "train_job_schedule": "0 5 * * 6",
        "eval_job_schedule": "0 9 * * 6",
    }
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("fastapply_dataset")).automation_condition is None  # no refresh: by hand
    assert graph.get(dg.AssetKey("lora_adapter")).owners == ["team:fastapply"]


def test_a_bad_cron_names_the_field(make_config):
    with pytest.raises(Exception, match=r"automation\.train_cron.*is not a cron schedule"):
        make_config([{"url": "https://github.com/vercel/next.js"}], automation={"train_cron": "weekly"})


@pytest.mark.slow
def test_partitions_registered_before_the_first_evaluation_are_built_and_failures_not_retried(
    tmp_path, instance, make_config
):
    sources = [
        {"path": small_repo(tmp_path, "ok"), "name": "ok"},
        {"path": str(tmp_path / "missing"), "name": "bad"},
    ]
    path, _ = make_config(sources)
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["ok", "bad"])  # before automation ever ran
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)
    assert first.get_requested_partitions(dg.AssetKey("cloned_repo")) == {"ok", "bad"}
    failed = dg.materialize(
        defs.assets, instance=instance, resources=defs.resources, partition_key="bad", selection=["cloned_repo"],
        raise_on_error=False,
    )  # fmt: skip
    assert not failed.success
    later = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=now + timedelta(minutes=1), cursor=first.cursor
    )
    assert "bad" not in later.get_requested_partitions(dg.AssetKey("cloned_repo"))  # no retry storm

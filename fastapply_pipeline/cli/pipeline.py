"""`fastapply run`, `backfill`, `sources` and `ui`: the pipeline in the local Dagster instance.

The run-execution helpers are here too: the local instance and its run owners, the plan of runs (one per
source partition, then the whole-corpus assets) and its one-line-per-failure console log.
"""

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import dagster as dg
from dagster._core.storage.defs_state.base import set_defs_state_storage  # no public setter in 1.13
from filelock import FileLock

from fastapply_pipeline.cli.group import config_option, load_settings, main
from fastapply_pipeline.config import FastApplyConfig, config_path, deployment
from fastapply_pipeline.core.reasons import WHY_EMPTY
from fastapply_pipeline.core.sources import redact_url
from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS
from fastapply_pipeline.defs.resources import OBJECTS_DIR, TABLES_DIR
from fastapply_pipeline.instance import (
    CLI_TAG,
    ensure_dagster_home,
    pool_holders,
    recover_dead_runs,
    run_owner,
    sigterm_interrupts,
    unfinished_partitions,
)
from fastapply_pipeline.uptodate import Freshness

LOG_LEVELS = {0: "WARNING", 1: "INFO", 2: "DEBUG"}


@contextlib.contextmanager
def local_instance(config: FastApplyConfig):
    """(DAGSTER_HOME, the instance there), disposed on exit (which also restores Dagster's context)."""
    home = ensure_dagster_home(config.base_dir)
    # Two commands starting at once on a fresh DAGSTER_HOME would both create its SQLite tables
    # ("table runs already exists"): the first creates them, the second waits and opens them.
    (home / ".fastapply").mkdir(exist_ok=True)
    with FileLock(str(home / ".fastapply" / "instance.lock"), timeout=300):
        instance = dg.DagsterInstance.get()
    with instance:
        yield home, instance


@contextlib.contextmanager
def owned_runs(home: Path, instance: dg.DagsterInstance, config: FastApplyConfig):
    """Hold this process's owner lock, clean up after killed commands, yield the tags of our runs."""
    with run_owner(home) as owner, sigterm_interrupts():
        recovery = recover_dead_runs(instance, home)
        for run_id in recovery.failed:
            click.echo(f"Marked run {run_id} failed: the process running it is gone; freed its pool slots.")
        held = pool_holders(instance, sorted(config.pools))
        for pool, run_ids in held.items():
            click.echo(
                f"Pool {pool!r} is in use by run(s) {', '.join(run_ids)} (another command still running): "
                "steps in that pool wait for it.",
                err=True,
            )
        for run_id in recovery.unknown:
            if any(run_id in ids for ids in held.values()):
                click.echo(
                    f"Run {run_id} holds a pool slot and was not started by a live `fastapply` command; if "
                    f"its process is gone, `dagster run delete {run_id}` frees it.",
                    err=True,
                )
        yield owner.tags


def root_message(error) -> str:
    """The message of the innermost cause of a Dagster SerializableErrorInfo (the user's actual error)."""
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip() if error is not None else "unknown error"


def register_sources(instance: dg.DagsterInstance, config: FastApplyConfig) -> tuple[list[str], list[str]]:
    """Add a source_repo partition for every configured source; return (added, orphaned) keys."""
    existing = set(instance.get_dynamic_partitions(SOURCE_REPO_PARTITIONS))
    wanted = [s.key for s in config.sources]
    added = [k for k in wanted if k not in existing]
    if added:
        instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, added)
    return added, sorted(existing - set(wanted))


def apply_pools(instance: dg.DagsterInstance, config: FastApplyConfig) -> None:
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for pool, limit in config.pools.items():
            storage.set_concurrency_slots(pool, limit)


# Everything except training and evaluation: a data refresh should not start GPU work as a side effect.
DEFAULT_SELECTION = "not group:training and not group:eval"


@main.command()
@config_option
@click.option(
    "--select",
    "selection",
    default=DEFAULT_SELECTION,
    show_default=True,
    help=(
        "Dagster asset selection, e.g. 'code_snippets', 'group:sources', 'lora_adapter'. The default is the "
        "data pipeline; training (GPU work) runs only when selected."
    ),
)
@click.option(
    "--partition",
    "partitions",
    multiple=True,
    help="Only these source_repo partitions (repeatable); default: every source in the settings file.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Rebuild every selected asset, even those built before from the same code, settings and inputs.",
)
@click.option("-v", "--verbose", count=True, help="-v: Dagster's step events too; -vv: debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings, errors and the summary.")
def run(
    config_file: str | None,
    selection: str,
    partitions: tuple[str, ...],
    force: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """Register the configured sources and materialize the asset graph in the local Dagster instance.

    Assets last built by `fastapply` from the same code, settings and inputs (for a source: the commit
    its ref resolves to now) are up to date and skipped; --force rebuilds them."""
    config = load_settings(config_file)
    with local_instance(config) as (home, instance):
        from fastapply_pipeline.definitions import build_defs

        defs = build_defs(config_path(config_file))
        graph = defs.resolve_asset_graph()
        try:
            keys = dg.AssetSelection.from_string(selection).resolve(graph)
        except Exception as err:  # Dagster raises several types for a bad selection string
            raise click.ClickException(
                f"--select {selection!r} is not a valid asset selection: {err}"
            ) from None
        if not keys:
            raise click.ClickException(f"--select {selection!r} matches no asset; see `dagster asset list`")
        keys = _with_their_siblings(defs, keys)

        apply_pools(instance, config)
        added, orphaned = register_sources(instance, config)
        click.echo(f"Dagster instance: {home}")
        if added:
            click.echo(f"Registered source_repo partitions: {', '.join(added)}")
        if orphaned:
            click.echo(f"Partitions with no source in the settings (kept): {', '.join(orphaned)}", err=True)

        configured = [s.key for s in config.sources]
        unknown = [p for p in partitions if p not in configured]
        if unknown:
            raise click.ClickException(
                f"--partition {', '.join(unknown)}: no such source; known: {', '.join(configured)}"
            )
        repo_keys = list(partitions) or configured
        _require_upstream(instance, graph, keys, repo_keys, selection)

        per_repo = sorted(k for k in keys if graph.get(k).partitions_def is not None)
        whole = sorted(k for k in keys if graph.get(k).partitions_def is None)
        plan: list[tuple[str | None, list[dg.AssetKey]]] = []
        if per_repo:
            plan += [(repo, per_repo) for repo in repo_keys]
        if whole:
            plan.append((None, whole))

        with owned_runs(home, instance, config) as tags:
            unusable = _unusable_builds(config, instance, graph, repo_keys) if not force else {}
            for key, why in unusable.items():
                click.echo(f"Rebuilding {key}: {why}.")
            freshness = Freshness(instance, graph, config, force=force, unusable=unusable)
            _execute(defs, instance, plan, verbose=verbose, quiet=quiet, tags=tags, freshness=freshness)


def _with_their_siblings(defs, keys: set[dg.AssetKey], *, say: bool = True) -> set[dg.AssetKey]:
    """Assets written by one step together (fastapply_dataset and rejected_triples) are selected together."""
    whole = set(keys)
    for assets_def in defs.assets:
        if (
            isinstance(assets_def, dg.AssetsDefinition)
            and not assets_def.can_subset
            and keys & assets_def.keys
        ):
            added = assets_def.keys - whole
            if added and say:
                names = ", ".join(sorted(k.to_user_string() for k in added))
                click.echo(f"Also selected {names}: written by the same step as the selected asset.")
            whole |= assets_def.keys
    return whole


def _unusable_builds(config: FastApplyConfig, instance, graph, repo_keys: list[str]) -> dict[str, str]:
    """Built partitions (of `repo_keys`) whose last build cannot be reused, by why (instance.py)."""
    from fastapply_pipeline.definitions import PER_REPO
    from fastapply_pipeline.defs.triples.assets import edit_triples

    built = instance.get_materialized_partitions(edit_triples.key)
    local = deployment() == "local"  # in prod, S3 objects appear whole or not at all
    tables = {
        key.to_user_string(): config.artifacts_dir / TABLES_DIR / key.to_user_string()
        for key in PER_REPO.resolve(graph)
        if local and graph.get(key).io_manager_key == "parquet_io_manager"
    }
    locations = {
        s.key: redact_url(config.source_location(s))
        for s in config.sources
        if s.key in built and s.key in repo_keys
    }
    return unfinished_partitions(instance, locations, tables)


def _require_upstream(instance, graph, keys, repo_keys: list[str], selection: str) -> None:
    """A selected asset whose input is neither selected nor ever materialized fails before any run starts."""
    for key in sorted(keys):
        node = graph.get(key)
        for parent in sorted(node.parent_keys - keys):
            parent_node = graph.get(parent)
            if parent_node.partitions_def is not None and node.partitions_def is not None:
                built = instance.get_materialized_partitions(parent)
                missing = [repo for repo in repo_keys if repo not in built]
            elif parent_node.partitions_def is None:
                missing = [] if instance.get_latest_materialization_event(parent) else ["(all)"]
            else:
                continue  # the dataset reads whichever repositories are built (missing ones allowed)
            if missing:
                raise click.ClickException(
                    f"--select {selection!r}: {key.to_user_string()} reads {parent.to_user_string()}, which is "
                    f"not selected and was never materialized for {', '.join(missing)}; select it too "
                    f"(e.g. '{parent.to_user_string()}+' or '*{key.to_user_string()}'), or run `fastapply run` first"
                )


CLI_JOB = "__ephemeral_asset_job__"  # the name dg.materialize gives its runs: the UI and tests know it


class _ConciseFormatter(logging.Formatter):
    """A failure in one line: the step and its error; the stack trace stays in the run's log (`dagster dev`)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR and "\n" in text:
            lines = [line for line in text.splitlines() if line.strip()]
            cause = next((line.strip() for line in lines[1:] if not line.startswith(" ")), "")
            text = f"{lines[0]} {cause} (stack trace in the run's log: `fastapply ui`)".rstrip()
        return text


@dg.logger(
    config_schema={
        "log_level": dg.Field(str, default_value="INFO"),
        "name": dg.Field(str, default_value="dagster"),
    },
    description="Dagster's console log without stack traces (one line per failure).",
)
def concise_console_logger(init_context) -> logging.Logger:
    config = init_context.logger_config
    logger = logging.Logger(config["name"], level=config["log_level"])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ConciseFormatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    logger.addHandler(handler)
    return logger


def _execute(
    defs,
    instance,
    plan,
    *,
    verbose: int,
    quiet: bool,
    tags: dict | None = None,
    freshness: Freshness | None = None,
) -> None:
    """Materialize each (partition, asset keys) of the plan in its own run, except what `freshness`
    finds up to date; exit 1 if any step failed."""
    level = "WARNING" if quiet else LOG_LEVELS[min(verbose + 1, 2)]
    run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
    failures: list[str] = []
    skipped: list[str] = []
    notes: list[str] = []  # assets that kept nothing, with why
    started = time.monotonic()
    try:
        launched = _execute_plan(
            defs,
            instance,
            plan,
            run_config,
            failures,
            tags,
            concise=verbose < 1,
            freshness=freshness,
            skipped=skipped,
            notes=notes,
        )
    except KeyboardInterrupt:
        click.echo(
            "\nInterrupted: the current run is marked failed; `fastapply run` again resumes.", err=True
        )
        sys.exit(130)
    total = time.monotonic() - started
    if notes:
        click.echo(f"\n{len(notes)} asset(s) kept nothing:")
        for line in notes:
            click.echo(f"  - {line}")
    if failures:
        click.echo(f"\n{len(failures)} step(s) failed in {total:.1f} s:", err=True)
        for line in failures:
            click.echo(f"  - {line}", err=True)
        sys.exit(1)
    fresh = f", {len(skipped)} up to date (skipped; --force rebuilds)" if skipped else ""
    click.echo(
        f"\nDone: {launched} run(s){fresh} in {total:.1f} s. See them with `fastapply ui` (or `dagster dev`)."
    )


def _execute_plan(
    defs,
    instance,
    plan,
    run_config,
    failures: list[str],
    tags: dict | None,
    concise: bool,
    freshness: Freshness | None = None,
    skipped: list[str] | None = None,
    notes: list[str] | None = None,
) -> int:
    """Run the plan's entries in order; return how many runs were launched."""
    launched = 0
    for index, (partition, planned_keys) in enumerate(plan, start=1):
        where = f" [{partition}]" if partition else ""
        asset_keys, fingerprints = list(planned_keys), {}
        if freshness is not None:
            # Decided entry by entry: a whole-corpus asset reads what the runs before it recorded.
            decision = freshness.decide(partition, asset_keys)
            build = _with_their_siblings(defs, set(decision.build), say=False) & set(asset_keys)
            fresh = [k for k in asset_keys if k not in build]
            if not build:
                names = ", ".join(k.to_user_string() for k in asset_keys)
                click.echo(f"[{index}/{len(plan)}]{where} {names}: up to date ({decision.why}), skipped")
                if skipped is not None:
                    skipped.append(partition or "all")
                continue
            asset_keys = [k for k in asset_keys if k in build]
            fingerprints = decision.tags(asset_keys)
            if fresh:
                click.echo(
                    f"[{index}/{len(plan)}]{where} up to date, not rebuilt: {', '.join(k.to_user_string() for k in fresh)}"
                )
        names = ", ".join(k.to_user_string() for k in asset_keys)
        click.echo(f"[{index}/{len(plan)}]{where} {names} ...")
        launched += 1
        t0 = time.monotonic()
        # Resolving definitions reads the "current" defs-state storage (for state-backed components,
        # which this project has none of), a context variable that an instance entered earlier in the
        # same process can leave pointing at a disposed instance: CI hit "undefined DagsterInstance
        # weakref" there with the CLI run in-process. No storage: nothing to read, nothing stale.
        with set_defs_state_storage(None):
            job = dg.Definitions(
                jobs=[dg.define_asset_job(CLI_JOB, selection=asset_keys)],
                assets=defs.assets,
                resources=defs.resources,
                loggers={"console": concise_console_logger} if concise else None,
            ).resolve_job_def(CLI_JOB)
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition,
            raise_on_error=False,
            tags={
                CLI_TAG: "run",
                **(tags or {}),
                **fingerprints,
                **({"fastapply/source": partition} if partition else {}),
            },
            run_config=run_config,
        )
        seconds = time.monotonic() - t0
        for event in result.get_asset_materialization_events():
            meta = event.materialization.metadata
            rows = meta.get("rows") or meta.get("file_count")
            detail = f" ({rows.value} {'rows' if 'rows' in meta else 'files'})" if rows is not None else ""
            click.echo(f"    materialized {event.asset_key.to_user_string()}{detail}")
            why = meta.get(WHY_EMPTY)  # an asset that kept nothing says why, and what to change
            if why is not None:
                click.echo(f"      kept nothing: {why.value}")
                if notes is not None:
                    notes.append(f"{partition or 'all'}: {event.asset_key.to_user_string()}: {why.value}")
        for check in result.get_asset_check_evaluations():
            if not check.passed:
                click.echo(
                    f"    check failed: {check.asset_key.to_user_string()}:{check.check_name}", err=True
                )
        if result.success:
            click.echo(f"    ok in {seconds:.1f} s (run {result.run_id})")
        else:
            for failure in result.get_step_failure_events():
                message = root_message(failure.step_failure_data.error)
                failures.append(f"{partition or 'all'}: {failure.step_key}: {message}")
                click.echo(f"    FAILED {failure.step_key}: {message}", err=True)
            click.echo(f"    failed after {seconds:.1f} s (run {result.run_id}; see `dagster dev`)", err=True)
    return launched


@main.command()
@config_option
@click.option(
    "--dataset/--no-dataset",
    default=True,
    show_default=True,
    help="Rebuild fastapply_dataset once the new partitions are built.",
)
@click.option("-v", "--verbose", count=True, help="-v: Dagster's step events too; -vv: debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings, errors and the summary.")
def backfill(config_file: str | None, dataset: bool, verbose: int, quiet: bool) -> None:
    """Build only the sources never built yet (e.g. just added to fastapply.yaml), then the dataset.

    A source counts as built once its edit_triples partition has been materialized; every other
    partition is left alone (no refetch, no LLM calls).
    """
    config = load_settings(config_file)
    from fastapply_pipeline.definitions import PER_REPO, build_defs
    from fastapply_pipeline.defs.dataset.assets import fastapply_dataset
    from fastapply_pipeline.defs.triples.assets import edit_triples

    with local_instance(config) as (home, instance):
        defs = build_defs(config_path(config_file))
        apply_pools(instance, config)
        added, _ = register_sources(instance, config)
        click.echo(f"Dagster instance: {home}")
        if added:
            click.echo(f"Registered source_repo partitions: {', '.join(added)}")
        built = instance.get_materialized_partitions(edit_triples.key)
        graph = defs.resolve_asset_graph()
        per_repo = sorted(PER_REPO.resolve(graph))
        broken = _unusable_builds(config, instance, graph, [s.key for s in config.sources])
        for key, why in broken.items():
            click.echo(f"Rebuilding {key}: {why}.")
        todo = [s.key for s in config.sources if s.key not in built or s.key in broken]
        if not todo:
            click.echo(
                "Nothing to backfill: every source has been built (`fastapply run` rebuilds them all)."
            )
            return
        click.echo(f"Backfilling {len(todo)} source(s): {', '.join(todo)} (already built: {len(built)})")
        plan: list[tuple[str | None, list[dg.AssetKey]]] = [(key, per_repo) for key in todo]
        if dataset:
            plan.append((None, sorted(fastapply_dataset.keys)))  # with rejected_triples, its other output
        with owned_runs(home, instance, config) as tags:
            _execute(
                defs, instance, plan, verbose=verbose, quiet=quiet, tags={"fastapply/backfill": "cli", **tags}
            )


@main.group()
def sources() -> None:
    """List or remove source_repo partitions."""


@sources.command("list")
@config_option
def sources_list(config_file: str | None) -> None:
    """Show configured sources and registered partitions."""
    config = load_settings(config_file)
    ensure_dagster_home(config.base_dir)
    registered = set(dg.DagsterInstance.get().get_dynamic_partitions(SOURCE_REPO_PARTITIONS))
    for source in config.sources:
        state = "registered" if source.key in registered else "not registered yet"
        click.echo(f"{source.key}\t{source.location}\t{source.ref or 'HEAD'}\t{state}")
    for key in sorted(registered - {s.key for s in config.sources}):
        click.echo(f"{key}\t(not in the settings file)\t-\tregistered")


@sources.command("remove")
@config_option
@click.argument("keys", nargs=-1, required=True)
def sources_remove(config_file: str | None, keys: tuple[str, ...]) -> None:
    """Delete source_repo partitions and the tables built from them (runs and the git mirror stay).

    A name removed and later added again starts from nothing: backfill rebuilds a partition whose
    tables are gone, or whose settings point at another repository than the one it was built from.
    """
    config = load_settings(config_file)
    from fastapply_pipeline.definitions import PER_REPO, build_defs

    ensure_dagster_home(config.base_dir)
    instance = dg.DagsterInstance.get()
    registered = set(instance.get_dynamic_partitions(SOURCE_REPO_PARTITIONS))
    missing = [k for k in keys if k not in registered]
    if missing:
        raise click.ClickException(f"no such partition: {', '.join(missing)}")
    still_configured = [k for k in keys if k in {s.key for s in config.sources}]
    per_repo = sorted(PER_REPO.resolve(build_defs(config_path(config_file)).resolve_asset_graph()))
    for key in keys:
        deleted = []
        for asset in per_repo:
            name = asset.to_user_string()
            for path in (
                config.artifacts_dir / TABLES_DIR / name / f"{key}.parquet",
                config.artifacts_dir / OBJECTS_DIR / name / key,
            ):
                if path.is_file():
                    path.unlink()
                    deleted.append(str(path))
        instance.delete_dynamic_partition(SOURCE_REPO_PARTITIONS, key)
        click.echo(
            f"removed partition {key}: {len(deleted)} stored table(s)/value(s) deleted (a source added "
            "again under this name is built afresh by `fastapply backfill`)"
            + "".join(f"\n  deleted {path}" for path in deleted)
            + "\n  kept: its runs and materialization history in the Dagster instance, its git mirror and LLM "
            "answers in "
            f"{config.cache_dir} (content-addressed; delete that folder to free the space)"
        )
    if still_configured:
        click.echo(
            f"note: {', '.join(still_configured)} is still in the settings file; the sensor will add it back "
            "unless you delete it there too",
            err=True,
        )


@main.command(context_settings={"ignore_unknown_options": True})
@config_option
@click.argument("dagster_args", nargs=-1, type=click.UNPROCESSED)
def ui(config_file: str | None, dagster_args: tuple[str, ...]) -> None:
    """Start `dagster dev` on the same DAGSTER_HOME that `fastapply run` uses (extra args go to it)."""
    config = load_settings(config_file)
    ensure_dagster_home(config.base_dir)
    os.environ.setdefault("FASTAPPLY_CONFIG", str(config_path(config_file)))
    os.chdir(config.base_dir)
    dagster = shutil.which("dagster") or "dagster"
    # A child in its own process group, not exec: on SIGTERM/SIGINT the whole group (webserver, daemon,
    # code server) gets SIGTERM, then SIGKILL after UI_STOP_SECONDS; `dagster dev` alone took > 30 s.
    child = subprocess.Popen([dagster, "dev", *dagster_args], start_new_session=True)
    stopping = []

    def stop(signum, _frame) -> None:
        stopping.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = None
    while code is None:
        try:
            code = child.wait(timeout=UI_STOP_SECONDS if stopping else None)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            code = child.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)  # anything of the group still around
    sys.exit(0 if stopping else code)


UI_STOP_SECONDS = 10

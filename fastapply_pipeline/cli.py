"""The `fastapply` command line: run the pipeline in the local Dagster instance, manage sources."""

import os
import shutil
import sys
import time
from pathlib import Path

import click
import dagster as dg

from fastapply_pipeline.config import ConfigError, FastApplyConfig, config_path, load_config
from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS

RUN_TAG = "fastapply/cli"
LOG_LEVELS = {0: "WARNING", 1: "INFO", 2: "DEBUG"}


def ensure_dagster_home(config: FastApplyConfig) -> Path:
    """DAGSTER_HOME, defaulting to .dagster_home beside fastapply.yaml, seeded with the project's dagster.yaml.

    `dagster dev` (or `fastapply ui`) with the same DAGSTER_HOME shows the runs that `fastapply run` made.
    """
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(config.base_dir / ".dagster_home")
        os.environ["DAGSTER_HOME"] = home
    home_path = Path(home).resolve()
    home_path.mkdir(parents=True, exist_ok=True)
    instance_yaml = home_path / "dagster.yaml"
    project_yaml = config.base_dir / "dagster.yaml"
    if not instance_yaml.exists() and project_yaml.is_file() and project_yaml.resolve() != instance_yaml:
        shutil.copyfile(project_yaml, instance_yaml)
    return home_path


def root_message(error) -> str:
    """The message of the innermost cause of a Dagster SerializableErrorInfo (the user's actual error)."""
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip() if error is not None else "unknown error"


def _load(config_file: str | None) -> FastApplyConfig:
    try:
        return load_config(config_file)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


@click.group()
@click.version_option(package_name="fastapply-pipeline")
def main() -> None:
    """fastapply: build Fast Apply training data and models with Dagster."""


config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings file (default: $FASTAPPLY_CONFIG, else ./fastapply.yaml).",
)


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
@click.option("-v", "--verbose", count=True, help="-v: Dagster's step events too; -vv: debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings, errors and the summary.")
def run(
    config_file: str | None, selection: str, partitions: tuple[str, ...], verbose: int, quiet: bool
) -> None:
    """Register the configured sources and materialize the asset graph in the local Dagster instance."""
    config = _load(config_file)
    home = ensure_dagster_home(config)
    from fastapply_pipeline.definitions import build_defs

    defs = build_defs(config_path(config_file))
    graph = defs.resolve_asset_graph()
    try:
        keys = dg.AssetSelection.from_string(selection).resolve(graph)
    except Exception as err:  # Dagster raises several types for a bad selection string
        raise click.ClickException(f"--select {selection!r} is not a valid asset selection: {err}") from None
    if not keys:
        raise click.ClickException(f"--select {selection!r} matches no asset; see `dagster asset list`")

    instance = dg.DagsterInstance.get()
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

    per_repo = sorted(k for k in keys if graph.get(k).partitions_def is not None)
    whole = sorted(k for k in keys if graph.get(k).partitions_def is None)
    plan: list[tuple[str | None, list[dg.AssetKey]]] = []
    if per_repo:
        plan += [(repo, per_repo) for repo in repo_keys]
    if whole:
        plan.append((None, whole))

    level = "WARNING" if quiet else LOG_LEVELS[min(verbose + 1, 2)]
    run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
    failures = []
    started = time.monotonic()
    for index, (partition, asset_keys) in enumerate(plan, start=1):
        names = ", ".join(k.to_user_string() for k in asset_keys)
        where = f" [{partition}]" if partition else ""
        click.echo(f"[{index}/{len(plan)}]{where} {names} ...")
        t0 = time.monotonic()
        result = dg.materialize(
            defs.assets,
            instance=instance,
            resources=defs.resources,
            partition_key=partition,
            selection=asset_keys,
            raise_on_error=False,
            tags={RUN_TAG: "run", **({"fastapply/source": partition} if partition else {})},
            run_config=run_config,
        )
        seconds = time.monotonic() - t0
        for event in result.get_asset_materialization_events():
            meta = event.materialization.metadata
            rows = meta.get("rows") or meta.get("file_count")
            detail = f" ({rows.value} {'rows' if 'rows' in meta else 'files'})" if rows is not None else ""
            click.echo(f"    materialized {event.asset_key.to_user_string()}{detail}")
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

    total = time.monotonic() - started
    if failures:
        click.echo(f"\n{len(failures)} step(s) failed in {total:.1f} s:", err=True)
        for line in failures:
            click.echo(f"  - {line}", err=True)
        sys.exit(1)
    click.echo(
        f"\nDone: {len(plan)} run(s) in {total:.1f} s. See them with `fastapply ui` (or `dagster dev`)."
    )


EXIT_REFUSED = 3


@main.command()
@click.argument("original", type=click.Path(exists=True, dir_okay=False))
@click.argument("snippet", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write the merged file here."
)
def apply(original: str, snippet: str, output: str | None) -> None:
    """Merge a lazy SNIPPET into ORIGINAL with the deterministic applier.

    Prints the merged file (or writes it to -o). Exit 0: merged; exit 3: refused, with the reason
    (ambiguous_anchor, no_anchor, missing_leading_marker, missing_trailing_marker, drops_most_of_file,
    empty_snippet) and what to change; exit 2: a usage or file error.
    """
    from fastapply_pipeline.core.apply import apply_snippet

    def read(path: str) -> str:
        try:
            return (
                click.get_text_stream("stdin").read()
                if path == "-"
                else Path(path).read_text(encoding="utf-8")
            )
        except UnicodeDecodeError:
            raise click.UsageError(f"{path} is not UTF-8 text") from None

    result = apply_snippet(read(original), read(snippet))
    if not result.ok:
        click.echo(f"refused: {result.reason}: {result.detail}", err=True)
        sys.exit(EXIT_REFUSED)
    if output:
        Path(output).write_text(result.merged, encoding="utf-8", newline="")
        click.echo(f"merged into {output} ({len(result.spans)} region(s))", err=True)
    else:
        click.echo(result.merged, nl=False)


@main.group()
def sources() -> None:
    """List or remove source_repo partitions."""


@sources.command("list")
@config_option
def sources_list(config_file: str | None) -> None:
    """Show configured sources and registered partitions."""
    config = _load(config_file)
    ensure_dagster_home(config)
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
    """Delete source_repo partitions (their materialization history stays in the event log)."""
    config = _load(config_file)
    ensure_dagster_home(config)
    instance = dg.DagsterInstance.get()
    registered = set(instance.get_dynamic_partitions(SOURCE_REPO_PARTITIONS))
    missing = [k for k in keys if k not in registered]
    if missing:
        raise click.ClickException(f"no such partition: {', '.join(missing)}")
    still_configured = [k for k in keys if k in {s.key for s in config.sources}]
    for key in keys:
        instance.delete_dynamic_partition(SOURCE_REPO_PARTITIONS, key)
        click.echo(f"removed partition {key}")
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
    config = _load(config_file)
    ensure_dagster_home(config)
    os.environ.setdefault("FASTAPPLY_CONFIG", str(config_path(config_file)))
    os.chdir(config.base_dir)
    dagster = shutil.which("dagster") or "dagster"
    os.execvp(dagster, [dagster, "dev", *dagster_args])


if __name__ == "__main__":
    main()

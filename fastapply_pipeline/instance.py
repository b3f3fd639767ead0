"""The local Dagster instance that `fastapply` commands run in, and the runs a killed command left behind.

Every `fastapply run`/`backfill` process holds an exclusive file lock for its whole life
(`DAGSTER_HOME/.fastapply/owners/<id>.lock`) and tags its Dagster runs with that lock's id. A run still
marked STARTED whose lock can be taken belongs to a process that is gone (kill -9, a power cut): before
executing anything, the next command marks such runs failed and frees the pool slots they held, so a
step waiting for the `anthropic` or `openai` pool is never blocked by a dead run. A run whose owner is
alive is left alone and named, so a wait for its slot is never silent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from filelock import FileLock, Timeout

CLI_TAG = "fastapply/cli"
OWNER_TAG = "fastapply/owner"  # the id of the lock its process holds
HOST_TAG = "fastapply/host"
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def ensure_dagster_home(base_dir: Path) -> Path:
    """DAGSTER_HOME, defaulting to .dagster_home beside fastapply.yaml, seeded with the project's dagster.yaml.

    `dagster dev` (or `fastapply ui`) with the same DAGSTER_HOME shows the runs that `fastapply run` made.
    """
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(base_dir / ".dagster_home")
        os.environ["DAGSTER_HOME"] = home
    home_path = Path(home).resolve()
    home_path.mkdir(parents=True, exist_ok=True)
    instance_yaml = home_path / "dagster.yaml"
    project_yaml = base_dir / "dagster.yaml"
    if not instance_yaml.exists() and project_yaml.is_file() and project_yaml.resolve() != instance_yaml:
        shutil.copyfile(project_yaml, instance_yaml)
    return home_path


def _owners_dir(home: Path) -> Path:
    return home / ".fastapply" / "owners"


@dataclass(frozen=True)
class Owner:
    """This process's claim on the runs it starts: a held lock, and the tags that point at it."""

    id: str
    lock: FileLock

    @property
    def tags(self) -> dict[str, str]:
        return {OWNER_TAG: self.id, HOST_TAG: socket.gethostname()}


@contextlib.contextmanager
def run_owner(home: Path) -> Iterator[Owner]:
    folder = _owners_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    owner_id = uuid.uuid4().hex
    lock = FileLock(str(folder / f"{owner_id}.lock"))
    lock.acquire(timeout=0)
    try:
        yield Owner(owner_id, lock)
    finally:
        lock.release()
        Path(lock.lock_file).unlink(missing_ok=True)


def _owner_alive(home: Path, owner_id: str) -> bool:
    """Whether the process that tagged a run with `owner_id` still holds its lock."""
    path = _owners_dir(home) / f"{owner_id}.lock"
    probe = FileLock(str(path))
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    probe.release()
    path.unlink(missing_ok=True)
    return False


@dataclass(frozen=True)
class Recovery:
    failed: list[str]  # run ids marked failed: their process is gone
    alive: list[str]  # in-progress runs of live `fastapply` processes (they may hold pool slots)
    unknown: list[str]  # in-progress runs with no owner tag (another tool, or an older fastapply)


def recover_dead_runs(instance: dg.DagsterInstance, home: Path) -> Recovery:
    """Mark failed the in-progress `fastapply` runs whose process is gone, and free their pool slots."""
    failed, alive, unknown = [], [], []
    records = instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS, tags={CLI_TAG: ["run"]}))
    for record in records:
        run = record.dagster_run
        owner = run.tags.get(OWNER_TAG)
        if owner is None or run.tags.get(HOST_TAG) not in (None, socket.gethostname()):
            unknown.append(run.run_id)
        elif _owner_alive(home, owner):
            alive.append(run.run_id)
        else:
            instance.report_run_failed(
                run, message="The `fastapply` process running this run is gone (killed); marked failed."
            )
            failed.append(run.run_id)
            if instance.event_log_storage.supports_global_concurrency_limits:
                instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return Recovery(failed, alive, unknown)


def pool_holders(instance: dg.DagsterInstance, pools: list[str]) -> dict[str, list[str]]:
    """Run ids holding a slot of each pool (only pools with a holder)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    held = {}
    for pool in pools:
        info = storage.get_concurrency_info(pool)
        runs = sorted({slot.run_id for slot in info.claimed_slots})
        if runs:
            held[pool] = runs
    return held


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops a command as Ctrl-C does: Dagster ends the run as failed and frees its slots."""
    previous: Callable | int | None = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def built_from(instance: dg.DagsterInstance, key: str) -> str | None:
    """The location (redacted URL or path) that partition `key`'s latest cloned_repo was fetched from."""
    from fastapply_pipeline.defs.sources.assets import cloned_repo

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=cloned_repo.key, asset_partitions=[key]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    location = records[0].asset_materialization.metadata.get("location")
    return None if location is None else str(location.value)


def unfinished_partitions(
    instance: dg.DagsterInstance, locations: dict[str, str], tables: dict[str, Path]
) -> dict[str, str]:
    """Built partitions that are not usable, by why: they were built from another location (a source
    removed and another added under its name), their latest run failed, or a table is unreadable.

    `locations`: each built partition's configured location (redacted, as cloned_repo records it);
    `tables`: each per-repository table asset's local folder (`<folder>/<partition>.parquet`), which
    every built partition has.
    """
    import pyarrow.parquet as pq

    broken: dict[str, str] = {}
    for key, location in locations.items():
        previous = built_from(instance, key)
        if previous is not None and previous != location:
            broken[key] = f"it was built from {previous}, the settings now say {location}"
            continue
        (latest,) = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": key}), limit=1) or [
            None
        ]
        if latest is not None and latest.dagster_run.status in (
            dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELED,
        ):
            broken[key] = (
                f"its latest run {latest.dagster_run.run_id} {latest.dagster_run.status.value.lower()}"
            )
            continue
        for asset, folder in tables.items():
            path = folder / f"{key}.parquet"
            if not path.exists():
                broken[key] = f"its {asset} table {path} is missing"
                break
            try:
                pq.read_metadata(path)
            except Exception as err:  # pyarrow raises several types for a torn file
                broken[key] = f"its {asset} table {path} is unreadable ({type(err).__name__})"
                break
    return broken

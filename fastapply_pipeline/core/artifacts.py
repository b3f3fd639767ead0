"""Folders of artifacts (the dataset, adapters, eval charts) shared between machines.

Assets write and read these folders under a local `artifacts_dir`. Locally that folder is the store and
nothing moves. In production (`S3Store`) each machine's `artifacts_dir` is a staging copy: a producer
`publish`es a folder after writing it, and a consumer `fetch`es it before reading. A publish uploads a
new version (`<name>/versions/<version>/`) and then points `<name>/LATEST` at it, so a reader on another
machine gets the old folder or the new one, whole, never a mix or a stale file; a fetch downloads into a
temporary folder and swaps it in. Tables and small values do not come
through here: the IO managers store those (parquet and pickles, on S3 in production).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

LATEST = "LATEST"  # the object naming the current version of a published folder

# The folders that pass between stages, by their names in the store (relative to artifacts_dir): each
# is named here only (the IO managers' tables and pickles: defs/resources.py). The producer publishes
# the folder; its consumers fetch it.
DATASET = "dataset"  # fastapply_dataset: hf/ (DatasetDict.save_to_disk), data/ (parquet), README.md
DATASET_HF = "hf"  # the DatasetDict inside DATASET
ADAPTER = "adapters/lora_adapter"  # lora_adapter: adapter/, metrics.json, job.json, checkpoints/
ADAPTER_WEIGHTS = "adapter"  # the peft adapter folder inside ADAPTER
EVAL = "eval"  # eval_scores: the chart


def write_atomically(target: Path, write) -> None:
    """write(a temporary path beside `target`), then rename it over `target`: a kill or a full disk
    mid-write leaves the last good file (and no temporary one)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


class ArtifactMissing(FileNotFoundError):
    """The folder was never published (materialize its asset first)."""


OWNED_MARKER = ".fastapply-artifact"  # in every folder the pipeline replaces as a whole


class ForeignFilesError(RuntimeError):
    """A folder the pipeline would replace holds files it did not write."""


def mark_owned(folder: Path) -> None:
    """Mark a freshly written folder as the pipeline's: replacing it later deletes nothing of the user's."""
    (Path(folder) / OWNED_MARKER).write_text(
        "Written by fastapply-pipeline: this folder is replaced as a whole on each build.\n", encoding="utf-8"
    )


def check_replaceable(folder: Path, expected: set[str]) -> None:
    """Refuse to replace `folder` unless the pipeline wrote it (its marker, or only the names it writes)."""
    folder = Path(folder)
    if not folder.exists() or (folder / OWNED_MARKER).exists():
        return
    if not folder.is_dir():
        raise ForeignFilesError(f"{folder} is a file the pipeline did not write; move it elsewhere")
    foreign = sorted(entry.name for entry in folder.iterdir() if entry.name not in expected)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ForeignFilesError(
            f"{folder} holds files the pipeline did not write ({shown}) and would be replaced by this build: "
            "move them elsewhere, or set storage.artifacts_dir in fastapply.yaml to a folder of the "
            "pipeline's own (e.g. .fastapply/artifacts)"
        )


@dataclass(frozen=True)
class LocalStore:
    """The local folder is the store: publish and fetch only check that the folder is there."""

    root: Path

    def uri(self, name: str) -> str:
        return str(self.root / name)

    def publish(self, name: str) -> str:
        folder = self.root / name
        if not folder.exists():
            raise ArtifactMissing(f"{folder} does not exist: nothing to publish")
        return str(folder)

    def fetch(self, name: str) -> Path:
        folder = self.root / name
        if not folder.exists():
            raise ArtifactMissing(f"{folder} does not exist: materialize the asset that writes it first")
        return folder


@dataclass(frozen=True)
class S3Store:
    """`s3://bucket/prefix/<name>` holds versions of `root/<name>` (s3fs; credentials from the environment)."""

    root: Path
    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None

    def _fs(self):
        import s3fs

        client_kwargs = {
            k: v for k, v in {"endpoint_url": self.endpoint_url, "region_name": self.region}.items() if v
        }
        # A fresh filesystem each time: no listing cached from before another machine's publish.
        return s3fs.S3FileSystem(
            client_kwargs=client_kwargs, skip_instance_cache=True, use_listings_cache=False
        )

    def _key(self, name: str) -> str:
        return "/".join(part for part in (self.bucket, self.prefix, name.strip("/")) if part)

    def uri(self, name: str) -> str:
        return "s3://" + self._key(name)

    def _latest(self, fs, key: str) -> str | None:
        try:
            return fs.cat_file(f"{key}/{LATEST}").decode().strip() or None
        except FileNotFoundError:
            return None

    def publish(self, name: str) -> str:
        """Upload the folder as a new version, then point LATEST at it (one PUT: readers see the old
        version or the new one, never a mix); versions older than the previous one are deleted."""
        folder = self.root / name
        if not folder.is_dir():
            raise ArtifactMissing(f"{folder} is not a folder: nothing to publish")
        fs, key = self._fs(), self._key(name)
        previous = self._latest(fs, key)
        version = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            fs.put_file(str(path), f"{key}/versions/{version}/{path.relative_to(folder).as_posix()}")
        fs.pipe_file(f"{key}/{LATEST}", version.encode())
        keep = {version, previous}  # the previous one may still be being fetched
        if fs.exists(f"{key}/versions"):
            for old in fs.ls(f"{key}/versions", detail=False):
                if old.rstrip("/").rsplit("/", 1)[-1] not in keep:
                    fs.rm(old, recursive=True)
        return f"s3://{key}/versions/{version}"

    def fetch(self, name: str) -> Path:
        """Download the latest version into a temporary folder, then swap it in for the local copy."""
        fs, key = self._fs(), self._key(name)
        target = self.root / name
        for _attempt in range(2):  # a version can be pruned mid-download by two publishes in a row
            version = self._latest(fs, key)
            if version is None:
                raise ArtifactMissing(
                    f"s3://{key} has no published version: materialize the asset that publishes it first"
                )
            source = f"{key}/versions/{version}"
            staging = target.parent / f".{target.name}.fetch-{uuid.uuid4().hex[:8]}"
            try:
                for remote in fs.find(source):
                    local = staging / remote[len(source) + 1 :]
                    local.parent.mkdir(parents=True, exist_ok=True)
                    fs.get_file(remote, str(local))
            except FileNotFoundError:
                shutil.rmtree(staging, ignore_errors=True)
                continue
            staging.mkdir(parents=True, exist_ok=True)  # an empty version is still a folder
            # No ownership check here: in prod `artifacts_dir` is the pipeline's staging copy of S3 (a stale
            # copy of an older version is replaced whole), and it is never the project folder (config).
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            staging.rename(target)
            return target
        raise ArtifactMissing(f"s3://{key}: the latest version vanished twice while downloading; try again")

"""Folders of artifacts (the dataset, adapters, eval charts) shared between machines.

Assets write and read these folders under a local `artifacts_dir`. Locally that folder is the store and
nothing moves. In production (`S3Store`) each machine's `artifacts_dir` is a staging copy: a producer
`publish`es a folder after writing it (the S3 prefix is replaced, so no stale file survives), and a
consumer `fetch`es it before reading (the local copy is replaced). Tables and small values do not come
through here: the IO managers store those (parquet and pickles, on S3 in production).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


class ArtifactMissing(FileNotFoundError):
    """The folder was never published (materialize its asset first)."""


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
    """`s3://bucket/prefix/<name>` mirrors `root/<name>` (s3fs; credentials from the environment)."""

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

    def publish(self, name: str) -> str:
        folder = self.root / name
        if not folder.exists():
            raise ArtifactMissing(f"{folder} does not exist: nothing to publish")
        fs, key = self._fs(), self._key(name)
        if fs.exists(key):
            fs.rm(key, recursive=True)
        if folder.is_dir():
            files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
            for path in files:
                fs.put_file(str(path), f"{key}/{path.relative_to(folder).as_posix()}")
        else:
            fs.put_file(str(folder), key)
        return "s3://" + key

    def fetch(self, name: str) -> Path:
        fs, key = self._fs(), self._key(name)
        target = self.root / name
        if not fs.exists(key):
            raise ArtifactMissing(f"s3://{key} does not exist: materialize the asset that publishes it first")
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if fs.isdir(key):
            for remote in fs.find(key):
                local = target / remote[len(key) + 1 :]
                local.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(remote, str(local))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(key, str(target))
        return target

"""cloned_repo's pure core: a source at a pinned commit, with its license and a census of its files."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fastapply_pipeline.core.files import language_of, printable_path
from fastapply_pipeline.core.git import SyncResult, commit_info, list_tree, read_blobs, sync_mirror
from fastapply_pipeline.core.licenses import detect_license, license_files


@dataclass(frozen=True)
class RepoSnapshot:
    """What downstream stages need to find a repository's files again, on any machine."""

    key: str
    location: str
    ref: str | None
    commit: str
    mirror: str  # bare mirror in the cache folder; re-created from location + commit when missing
    license: str
    license_files: list[str]
    license_overridden: bool
    file_count: int
    total_bytes: int
    files_by_language: dict[str, int] = field(default_factory=dict)
    committed_at: str = ""
    subject: str = ""
    depth: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RepoSnapshot:
        return cls(**data)


def mirror_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / "repos" / f"{key}.git"


def snapshot_repo(
    *,
    key: str,
    location: str,
    ref: str | None,
    cache_dir: Path,
    depth: int | None,
    timeout: float,
    license_override: str | None = None,
) -> tuple[RepoSnapshot, SyncResult]:
    """Fetch `ref` of `location` into the cache and describe it.

    Returns the snapshot and how the mirror was synced (fetched or not, stale git locks cleared).
    """
    mirror = mirror_path(cache_dir, key)
    synced = sync_mirror(location, mirror, ref=ref, depth=depth, timeout=timeout, what=f"source {key!r}")
    entries = list_tree(mirror, synced.commit, timeout=timeout)
    names = license_files(e.path for e in entries if not e.is_symlink and not e.is_submodule)
    by_path = {e.path: e.sha for e in entries}
    blobs = read_blobs(mirror, (by_path[n] for n in names))
    # Keyed by a printable name: the snapshot is stored as text, and a name need not be UTF-8.
    texts = {printable_path(n): blobs[by_path[n]].decode("utf-8", "replace") for n in names}
    info = detect_license(texts, override=license_override)
    languages = Counter(language_of(e.path) or "other" for e in entries)
    snapshot = RepoSnapshot(
        key=key,
        location=location,
        ref=ref,
        commit=synced.commit,
        mirror=str(mirror),
        license=info.spdx,
        license_files=list(info.files),
        license_overridden=info.overridden,
        file_count=len(entries),
        total_bytes=sum(e.size or 0 for e in entries),
        files_by_language=dict(sorted(languages.items())),
        depth=depth,
        **commit_info(mirror, synced.commit),
    )
    return snapshot, synced


def ensure_mirror(snapshot: RepoSnapshot, *, timeout: float) -> Path:
    """The snapshot's mirror holding its commit; fetched again (e.g. on another machine) when missing."""
    mirror = Path(snapshot.mirror)
    sync_mirror(
        snapshot.location,
        mirror,
        ref=snapshot.commit,
        depth=snapshot.depth,
        timeout=timeout,
        what=f"source {snapshot.key!r}",
    )
    return mirror

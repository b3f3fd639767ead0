"""Running git safely: bare mirrors in a cache folder, trees and blobs read straight from the object store.

Nothing here checks files out. Reading blobs by id means a symlink is only ever a path string, never
something that can lead outside the repository, and hooks never have a working tree to run in.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapply_pipeline.core.locking import LockBusy, exclusive_lock

log = logging.getLogger(__name__)

_SHA_RE = re.compile(r"^[0-9a-f]{40}$")

# Protocols git may use at all, for the clone and anything it could recurse into.
ALLOWED_PROTOCOLS = "https:ssh:file"


class GitError(RuntimeError):
    """A git command failed or timed out; the message names the command and the source."""


def git_env() -> dict[str, str]:
    """The environment for every git call: never prompt, never ask for a password on a TTY."""
    env = dict(os.environ)
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "true",
            "SSH_ASKPASS": "true",
            "GIT_SSH_COMMAND": env.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
            "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
            "GIT_PROTOCOL_FROM_USER": "0",
            "GIT_LFS_SKIP_SMUDGE": "1",
            "LC_ALL": "C",
        }
    )
    return env


# `-c` settings for every call: no hooks, no fsmonitor daemon, no remote-helper transports.
_SAFE_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "protocol.fd.allow=never",
)


def run_git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    timeout: float = 600,
    input: bytes | None = None,
    what: str = "",
) -> bytes:
    """Run one git command with the safe config and a timeout; return stdout or raise GitError."""
    cmd = ["git", *_SAFE_CONFIG]
    if git_dir is not None:
        cmd += ["--git-dir", str(git_dir)]
    cmd += list(args)
    label = f" for {what}" if what else ""
    try:
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            timeout=timeout,
            env=git_env(),
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"`git {' '.join(args[:2])}`{label} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"`git {' '.join(args[:2])}`{label} failed (exit {proc.returncode}): {stderr[-2000:]}")
    return proc.stdout


@dataclass(frozen=True)
class SyncResult:
    commit: str
    fetched: bool  # False when the pinned commit was already in the mirror (no network, no work)
    # git lock files a killed git left in the mirror, removed before this fetch (paths inside the mirror)
    cleared_locks: tuple[str, ...] = ()


def mirror_lock_path(mirror: Path) -> Path:
    """The pipeline's own lock of a mirror: beside it, so it is never taken for one of git's."""
    return mirror.with_name(mirror.name + ".lock")


@contextmanager
def mirror_lock(mirror: Path, *, timeout: float, what: str) -> Iterator[None]:
    """Hold the pipeline's lock of `mirror` (every run, thread and process waits for it).

    Raises GitError naming the run that holds it when it stays held for `timeout` seconds.
    """
    try:
        with exclusive_lock(mirror_lock_path(mirror), timeout=timeout, what=what or str(mirror)):
            yield
    except LockBusy as busy:
        label = f"{what}: " if what else ""
        who = busy.holder.describe() if busy.holder else "another run (not yet named)"
        raise GitError(
            f"{label}the git mirror {mirror} is in use by {who}; waited {busy.waited:g} s. "
            "Let that run finish (or stop it) and run again."
        ) from None


def clear_stale_git_locks(mirror: Path) -> list[str]:
    """Remove the git lock files (shallow.lock, index.lock, refs/.../x.lock, ...) inside `mirror`.

    Call it only while holding `mirror_lock`: every git that writes to a mirror runs under that lock, so
    a lock file found then was left by a git process that was killed, and git would refuse to work
    until it is gone. Returns the removed paths, relative to the mirror.
    """
    removed = []
    for root, dirs, files in os.walk(mirror):
        if Path(root) == mirror / "objects":
            dirs[:] = [d for d in dirs if d in ("info", "pack")]  # skip the loose-object folders
        for name in files:
            if name.endswith(".lock"):
                path = Path(root, name)
                path.unlink(missing_ok=True)
                removed.append(path.relative_to(mirror).as_posix())
    return sorted(removed)


def sync_mirror(
    location: str,
    mirror: Path,
    *,
    ref: str | None,
    depth: int | None,
    timeout: float,
    what: str,
    lock_timeout: float | None = None,
) -> SyncResult:
    """Make `mirror` a bare repository holding `ref` of `location`; return the resolved commit.

    A ref that is already a full commit SHA present in the mirror costs nothing (and takes no lock).
    Otherwise only the requested ref is fetched (with `depth` commits of history), under the mirror's
    lock: a run that finds it held waits up to `lock_timeout` seconds (default: twice `timeout`, time
    for the holder's own fetch to end), then fails naming the holder. Lock files that a killed git left
    in the mirror are removed first and reported in `cleared_locks`.
    """
    mirror.parent.mkdir(parents=True, exist_ok=True)
    if ref and _SHA_RE.match(ref) and (mirror / "HEAD").exists() and _has_commit(mirror, ref):
        return SyncResult(commit=ref, fetched=False)  # reading needs no lock: git readers never collide
    wait = 2 * timeout if lock_timeout is None else lock_timeout
    with mirror_lock(mirror, timeout=wait, what=what):
        cleared = tuple(clear_stale_git_locks(mirror)) if mirror.exists() else ()
        if cleared:
            log.warning("%s: removed git lock files left in %s by a killed git: %s", what, mirror, cleared)
        if not (mirror / "HEAD").exists():
            run_git(["init", "--bare", "--quiet", str(mirror)], timeout=timeout, what=what)
        if ref and _SHA_RE.match(ref) and _has_commit(mirror, ref):  # fetched by the run we waited for
            return SyncResult(commit=ref, fetched=False, cleared_locks=cleared)

        remote = location
        if depth is not None and "://" not in location and Path(location).exists():
            remote = Path(location).resolve().as_uri()  # --depth is ignored for plain local paths
        # No automatic gc: a detached `git gc --auto` would still hold lock files after our lock is
        # released, and the next holder would take them for stale ones.
        fetch = ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--no-auto-gc"]
        if depth is not None:
            fetch.append(f"--depth={depth}")
        target = ref or "HEAD"
        try:
            run_git([*fetch, "--", remote, f"{target}"], git_dir=mirror, timeout=timeout, what=what)
        except GitError as err:
            if (
                target == "HEAD"
                and "couldn't find remote ref HEAD" in str(err)
                and _is_empty(location, timeout)
            ):
                raise GitError(
                    f"{what or location}: the repository has no commits yet; commit something (or give a "
                    "`ref:` that exists), or remove the source"
                ) from None
            raise
        commit = run_git(
            ["rev-parse", "--verify", "FETCH_HEAD^{commit}"], git_dir=mirror, timeout=60, what=what
        )
        commit_sha = commit.decode().strip()
        # Keep the fetched commit reachable so `git gc` never prunes it.
        run_git(["update-ref", "refs/fastapply/pinned", commit_sha], git_dir=mirror, timeout=60, what=what)
    return SyncResult(commit=commit_sha, fetched=True, cleared_locks=cleared)


def remote_commit(location: str, ref: str | None, *, timeout: float, what: str) -> str:
    """The commit `ref` (default HEAD) of `location` points at now, without fetching (`git ls-remote`).

    A full SHA is its own answer. A branch wins over a tag of the same name; an annotated tag resolves to
    its commit (the peeled `^{}` line).
    """
    if ref and _SHA_RE.match(ref):
        return ref
    target = ref or "HEAD"
    patterns = [target] if target == "HEAD" else [target, f"{target}^{{}}"]
    lines = (
        run_git(["ls-remote", "--", location, *patterns], timeout=timeout, what=what).decode().splitlines()
    )
    found = dict(reversed(line.split("\t", 1)) for line in lines if "\t" in line)
    for name in (
        "HEAD" if target == "HEAD" else None,
        target if target.startswith("refs/") else None,
        f"refs/heads/{target}",
        f"refs/tags/{target}^{{}}",
        f"refs/tags/{target}",
    ):
        if name and name in found:
            return found[name]
    raise GitError(f"`git ls-remote`{f' for {what}' if what else ''}: {location} has no ref {target!r}")


def _is_empty(location: str, timeout: float) -> bool:
    """Whether a repository has no refs at all (`git ls-remote` lists nothing)."""
    try:
        return not run_git(["ls-remote", "--", location], timeout=timeout).strip()
    except GitError:
        return False


def _has_commit(mirror: Path, sha: str) -> bool:
    try:
        run_git(["cat-file", "-e", f"{sha}^{{commit}}"], git_dir=mirror, timeout=60)
    except GitError:
        return False
    return True


@dataclass(frozen=True)
class TreeEntry:
    """One entry of `git ls-tree -r -l`: a blob, a symlink (mode 120000) or a submodule (160000)."""

    mode: str
    kind: str
    sha: str
    size: int | None
    path: str

    @property
    def is_symlink(self) -> bool:
        return self.mode == "120000"

    @property
    def is_submodule(self) -> bool:
        return self.kind == "commit"


def list_tree(mirror: Path, commit: str, *, timeout: float = 600) -> list[TreeEntry]:
    """Every path tracked at `commit`, with its mode and blob size, sorted by path."""
    out = run_git(["ls-tree", "-r", "-l", "-z", "--full-tree", commit], git_dir=mirror, timeout=timeout)
    entries = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, path = record.split(b"\t", 1)
        mode, kind, sha, size = meta.split()
        entries.append(
            TreeEntry(
                mode=mode.decode(),
                kind=kind.decode(),
                sha=sha.decode(),
                size=None if size == b"-" else int(size),
                path=path.decode("utf-8", "surrogateescape"),
            )
        )
    entries.sort(key=lambda e: e.path)
    return entries


def read_blobs(mirror: Path, shas: Iterable[str], *, timeout: float = 600) -> dict[str, bytes]:
    """Contents of many blobs in one `git cat-file --batch` call."""
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return {}
    out = run_git(
        ["cat-file", "--batch"], git_dir=mirror, timeout=timeout, input=("\n".join(wanted) + "\n").encode()
    )
    blobs: dict[str, bytes] = {}
    pos = 0
    for sha in wanted:
        header_end = out.index(b"\n", pos)
        header = out[pos:header_end].split()
        if len(header) < 3 or header[1] == b"missing":
            raise GitError(f"blob {sha} is missing from {mirror}")
        size = int(header[2])
        start = header_end + 1
        blobs[sha] = out[start : start + size]
        pos = start + size + 1
    return blobs


def commit_info(mirror: Path, commit: str) -> dict[str, str]:
    """Author date and subject of a commit (for metadata)."""
    out = run_git(["log", "-1", "--format=%cI%x00%s", commit], git_dir=mirror, timeout=60).decode()
    date, _, subject = out.strip().partition("\0")
    return {"committed_at": date, "subject": subject}

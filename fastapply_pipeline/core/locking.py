"""An exclusive file lock that says who holds it: pid, host, start time and what the holder is doing.

The lock is an OS file lock (`filelock`, flock on Unix), so the kernel drops it when its holder dies,
even on kill -9: a lock can never outlive its run. Beside it a small JSON file names the holder, so
that a run which times out waiting can say which run to wait for or stop.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import filelock


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, as written by the holder when it took it."""

    pid: int
    host: str
    started_at: str
    what: str

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host} ({self.what}, holding it since {self.started_at})"


class LockBusy(TimeoutError):
    """The lock stayed held by another process for the whole timeout."""

    def __init__(self, path: Path, waited: float, holder: LockHolder | None):
        self.path, self.waited, self.holder = path, waited, holder
        who = holder.describe() if holder else "another process (it has not written its name yet)"
        super().__init__(f"{path} is held by {who}; waited {waited:g} s")


def holder_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".holder")


def read_holder(lock_path: Path) -> LockHolder | None:
    """The holder written beside `lock_path`, or None when there is none (or it is unreadable)."""
    try:
        return LockHolder(**json.loads(holder_path(lock_path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


@contextmanager
def exclusive_lock(lock_path: Path, *, timeout: float, what: str) -> Iterator[LockHolder]:
    """Hold an exclusive lock on `lock_path` for the block; raise LockBusy after `timeout` seconds.

    Threads and processes alike wait for each other. The holder's name is written when the lock is
    taken and removed before it is released.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(lock_path), timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise LockBusy(lock_path, timeout, read_holder(lock_path)) from None
    try:
        me = LockHolder(
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            what=what,
        )
        target = holder_path(lock_path)
        # Written whole and renamed, so that a waiter never reads half a name.
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(me)), encoding="utf-8")
        tmp.replace(target)
        try:
            yield me
        finally:
            target.unlink(missing_ok=True)
    finally:
        lock.release()

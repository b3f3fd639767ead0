"""git runs safely: pinned commits, no prompts, no hooks, a timeout, and trees read from the object store."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fastapply_pipeline.core.git import GitError, list_tree, read_blobs, run_git, sync_mirror
from fastapply_pipeline.core.repos import snapshot_repo

from .helpers import FAKE_AWS, GPL_NOTICE, MIT_TEXT, commit_all, git, init_repo, write_files


@pytest.fixture
def history_repo(tmp_path) -> tuple[Path, list[str]]:
    repo = tmp_path / "history"
    init_repo(repo)
    commits = []
    for i in range(3):
        write_files(repo, {"LICENSE": MIT_TEXT, "src/mod.py": f"VALUE = {i}\n"})
        commits.append(commit_all(repo, f"commit {i}"))
    git(repo, "tag", "v0", commits[0])
    return repo, commits


def test_head_branch_tag_and_commit_resolve_to_the_right_commit(history_repo, tmp_path):
    repo, commits = history_repo
    mirror = tmp_path / "mirror.git"
    assert sync_mirror(str(repo), mirror, ref=None, depth=5, timeout=30, what="t").commit == commits[-1]
    assert sync_mirror(str(repo), mirror, ref="main", depth=5, timeout=30, what="t").commit == commits[-1]
    assert sync_mirror(str(repo), mirror, ref="v0", depth=5, timeout=30, what="t").commit == commits[0]
    pinned = sync_mirror(str(repo), mirror, ref=commits[1], depth=5, timeout=30, what="t")
    assert pinned.commit == commits[1]


def test_a_pinned_commit_already_cached_does_no_git_fetch(history_repo, tmp_path):
    repo, commits = history_repo
    mirror = tmp_path / "mirror.git"
    first = sync_mirror(str(repo), mirror, ref=commits[0], depth=5, timeout=30, what="t")
    assert first.fetched
    # Even with the source gone, the cached commit is served from the mirror.
    moved = repo.rename(tmp_path / "moved")
    again = sync_mirror(str(repo), mirror, ref=commits[0], depth=5, timeout=30, what="t")
    assert again == type(first)(commit=commits[0], fetched=False)
    assert moved.exists()


def test_depth_limits_history(history_repo, tmp_path):
    repo, commits = history_repo
    mirror = tmp_path / "mirror.git"
    sync_mirror(str(repo), mirror, ref=None, depth=2, timeout=30, what="t")
    count = run_git(["rev-list", "--count", commits[-1]], git_dir=mirror).decode().strip()
    assert count == "2"
    full = tmp_path / "full.git"
    sync_mirror(str(repo), full, ref=None, depth=None, timeout=30, what="t")
    assert run_git(["rev-list", "--count", commits[-1]], git_dir=full).decode().strip() == "3"


def test_unknown_ref_fails_with_the_source_named(history_repo, tmp_path):
    repo, _ = history_repo
    with pytest.raises(GitError, match=r"for source 'demo'.*no-such-branch"):
        sync_mirror(
            str(repo), tmp_path / "m.git", ref="no-such-branch", depth=1, timeout=30, what="source 'demo'"
        )


def test_hooks_configured_in_the_environment_never_run(history_repo, tmp_path, monkeypatch):
    repo, _ = history_repo
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "hook-ran"
    for name in ("reference-transaction", "post-checkout", "post-merge"):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
        hook.chmod(0o755)
    # Prove the hook works when git is run plainly...
    probe = tmp_path / "probe.git"
    subprocess.run(["git", "init", "-q", "--bare", str(probe)], check=True)
    subprocess.run(["git", "--git-dir", str(probe), "fetch", "-q", str(repo), "HEAD"], check=True)
    subprocess.run(
        [
            "git",
            "-c",
            f"core.hooksPath={hooks}",
            "--git-dir",
            str(probe),
            "update-ref",
            "refs/x",
            git(repo, "rev-parse", "HEAD"),
        ],
        check=True,
    )
    assert marker.exists()
    marker.unlink()
    # ...then that our git calls do not run it, even when the environment asks for it.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.hooksPath")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(hooks))
    sync_mirror(str(repo), tmp_path / "m.git", ref=None, depth=1, timeout=30, what="t")
    assert not marker.exists()


@pytest.mark.slow
def test_a_server_that_never_answers_times_out(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        with pytest.raises(GitError, match="timed out after 2 s"):
            sync_mirror(
                f"https://127.0.0.1:{port}/o/r.git",
                tmp_path / "m.git",
                ref=None,
                depth=1,
                timeout=2,
                what="t",
            )
    finally:
        server.close()


def test_ssh_fails_fast_instead_of_waiting_for_a_password(tmp_path):
    # BatchMode ssh and GIT_TERMINAL_PROMPT=0: a refused connection is an error at once, not a prompt that
    # waits until the timeout.
    with pytest.raises(GitError) as err:
        sync_mirror(
            "ssh://git@127.0.0.1:1/o/r.git", tmp_path / "m.git", ref=None, depth=1, timeout=20, what="t"
        )
    assert "timed out" not in str(err.value)


def test_tree_and_blobs_come_from_the_object_store(history_repo, tmp_path):
    repo, commits = history_repo
    mirror = tmp_path / "m.git"
    sync_mirror(str(repo), mirror, ref=commits[1], depth=5, timeout=30, what="t")
    entries = {e.path: e for e in list_tree(mirror, commits[1])}
    assert set(entries) == {"LICENSE", "src/mod.py"}
    assert read_blobs(mirror, [entries["src/mod.py"].sha])[entries["src/mod.py"].sha] == b"VALUE = 1\n"


def test_snapshot_records_commit_license_and_census(tmp_path):
    repo = tmp_path / "r"
    init_repo(repo)
    write_files(
        repo, {"LICENSE": MIT_TEXT, "a.py": "x = 1\n", "b.ts": "export const b = 1;\n", "c.md": "# c\n"}
    )
    commit = commit_all(repo, "c")
    snapshot, synced = snapshot_repo(
        key="r", location=str(repo), ref=None, cache_dir=tmp_path / "cache", depth=10, timeout=30
    )
    assert synced.fetched and synced.commit == snapshot.commit == commit
    assert snapshot.license == "MIT" and snapshot.license_files == ["LICENSE"]
    assert snapshot.file_count == 4
    assert snapshot.files_by_language == {"markdown": 1, "other": 1, "python": 1, "typescript": 1}
    assert snapshot.total_bytes == sum(
        len((repo / p).read_bytes()) for p in ("LICENSE", "a.py", "b.ts", "c.md")
    )


def test_license_detection_override_and_noassertion(tmp_path):
    repo = tmp_path / "gpl"
    init_repo(repo)
    write_files(repo, {"COPYING": GPL_NOTICE, "x.py": FAKE_AWS})
    commit_all(repo, "c")
    snapshot, _ = snapshot_repo(
        key="g", location=str(repo), ref=None, cache_dir=tmp_path / "c", depth=1, timeout=30
    )
    assert snapshot.license == "GPL-3.0-or-later"
    overridden, _ = snapshot_repo(
        key="g",
        location=str(repo),
        ref=None,
        cache_dir=tmp_path / "c",
        depth=1,
        timeout=30,
        license_override="MIT",
    )
    assert overridden.license == "MIT" and overridden.license_overridden
    bare = tmp_path / "nolicense"
    init_repo(bare)
    write_files(bare, {"x.py": "x = 1\n"})
    commit_all(bare, "c")
    none, _ = snapshot_repo(
        key="n", location=str(bare), ref=None, cache_dir=tmp_path / "c", depth=1, timeout=30
    )
    assert none.license == "NOASSERTION"


# A stand-in for another run: it takes the mirror's lock (as sync_mirror does), optionally leaves a git
# lock file inside the mirror as a git it started would, says "held", and keeps the lock until told.
HOLDER = """
import sys
from pathlib import Path
from fastapply_pipeline.core.git import mirror_lock
mirror = Path(sys.argv[1])
with mirror_lock(mirror, timeout=30, what="run holder-1 fetching source 'demo'"):
    if sys.argv[2:]:
        (mirror / sys.argv[2]).write_text("")
    print("held", flush=True)
    sys.stdin.readline()
    if sys.argv[2:]:
        (mirror / sys.argv[2]).unlink()
"""


@pytest.fixture
def lock_holder():
    """start(mirror, git_lock=None) -> a running process that holds the mirror's lock."""
    started = []

    def start(mirror: Path, git_lock: str | None = None) -> subprocess.Popen:
        args = [sys.executable, "-c", HOLDER, str(mirror), *([git_lock] if git_lock else [])]
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def add_commit(repo: Path, value: int) -> str:
    write_files(repo, {"src/mod.py": f"VALUE = {value}\n"})
    return commit_all(repo, f"commit {value}")


def test_git_lock_files_left_by_a_killed_fetch_are_cleared_on_the_next_sync(history_repo, tmp_path):
    repo, _ = history_repo
    mirror = tmp_path / "m.git"
    sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=30, what="t")
    # What a git fetch killed mid-way leaves behind: git refuses to fetch into the mirror while they exist.
    (mirror / "shallow.lock").write_text("")
    (mirror / "refs" / "fastapply" / "pinned.lock").write_text("")
    head = add_commit(repo, 10)
    result = sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=30, what="t")
    assert result.commit == head and result.fetched
    assert result.cleared_locks == ("refs/fastapply/pinned.lock", "shallow.lock")
    assert not (mirror / "shallow.lock").exists()
    assert run_git(["rev-parse", "refs/fastapply/pinned"], git_dir=mirror).decode().strip() == head
    # Nothing left over: the next sync has nothing to clear.
    assert sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=30, what="t").cleared_locks == ()


def test_a_run_killed_while_fetching_does_not_block_the_next(history_repo, tmp_path, lock_holder):
    repo, _ = history_repo
    mirror = tmp_path / "m.git"
    sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=30, what="t")
    holder = lock_holder(mirror, "shallow.lock")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (mirror / "shallow.lock").exists()
    head = add_commit(repo, 11)
    result = sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=30, what="t", lock_timeout=5)
    assert result.commit == head and result.cleared_locks == ("shallow.lock",)


@pytest.mark.slow
def test_a_run_waits_for_the_one_fetching_and_a_timeout_names_it(history_repo, tmp_path, lock_holder):
    repo, _ = history_repo
    mirror = tmp_path / "m.git"
    sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=30, what="t")
    holder = lock_holder(mirror, "shallow.lock")  # a live fetch: its lock file must stay untouched
    head = add_commit(repo, 12)

    started = time.monotonic()
    with pytest.raises(GitError) as err:
        sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=30, what="source 'demo'", lock_timeout=1)
    assert time.monotonic() - started >= 1
    message = str(err.value)
    assert message.startswith(f"source 'demo': the git mirror {mirror} is in use by pid {holder.pid}")
    assert f"on host {socket.gethostname()}" in message and "run holder-1 fetching source 'demo'" in message
    assert "waited 1 s" in message and "Let that run finish (or stop it)" in message
    assert (mirror / "shallow.lock").exists()

    # A run with time to wait waits for the holder, then fetches.
    results = []
    waiter = threading.Thread(
        target=lambda: results.append(
            sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=30, what="t", lock_timeout=30)
        )
    )
    waiter.start()
    waiter.join(1.0)
    assert waiter.is_alive() and not results
    holder.stdin.write("done\n")
    holder.stdin.flush()
    assert holder.wait(10) == 0
    waiter.join(30)
    assert [(r.commit, r.fetched, r.cleared_locks) for r in results] == [(head, True, ())]


def test_concurrent_syncs_of_one_mirror_all_succeed(history_repo, tmp_path):
    repo, commits = history_repo
    mirror = tmp_path / "m.git"
    refs = [None, "main", "v0", commits[1]] * 2
    results: dict[int, object] = {}

    def sync(i: int) -> None:
        try:
            results[i] = sync_mirror(str(repo), mirror, ref=refs[i], depth=1, timeout=30, what=f"run {i}")
        except GitError as exc:
            results[i] = exc

    threads = [threading.Thread(target=sync, args=(i,)) for i in range(len(refs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    expected = {None: commits[-1], "main": commits[-1], "v0": commits[0], commits[1]: commits[1]}
    assert {i: getattr(r, "commit", r) for i, r in results.items()} == {
        i: expected[ref] for i, ref in enumerate(refs)
    }


def test_snapshot_of_a_repository_with_names_that_are_not_utf8_stores_only_text(tmp_path):
    repo = tmp_path / "latin1"
    init_repo(repo)
    for name, content in ((b"LICENSE.caf\xe9", MIT_TEXT), (b"caf\xe9.py", "x = 1\n")):
        with open(os.fsencode(repo) + b"/" + name, "wb") as f:
            f.write(content.encode())
    commit_all(repo, "c")
    snapshot, _ = snapshot_repo(
        key="l", location=str(repo), ref=None, cache_dir=tmp_path / "cache", depth=1, timeout=30
    )
    assert snapshot.license == "MIT" and snapshot.license_files == ["LICENSE.caf\\xe9"]
    assert snapshot.file_count == 2 and snapshot.files_by_language == {"other": 1, "python": 1}
    json.dumps(snapshot.to_dict(), ensure_ascii=False).encode("utf-8")  # storable as UTF-8 text

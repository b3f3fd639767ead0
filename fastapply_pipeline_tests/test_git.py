"""git runs safely: pinned commits, no prompts, no hooks, a timeout, and trees read from the object store."""

import socket
import subprocess
import threading
from pathlib import Path

import pytest

from fastapply_pipeline.core.git import GitError, list_tree, read_blobs, run_git, sync_mirror
from fastapply_pipeline.core.repos import snapshot_repo

from .conftest import FAKE_AWS, GPL_NOTICE, MIT_TEXT, commit_all, git, init_repo, write_files


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
    snapshot, fetched = snapshot_repo(
        key="r", location=str(repo), ref=None, cache_dir=tmp_path / "cache", depth=10, timeout=30
    )
    assert fetched and snapshot.commit == commit
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

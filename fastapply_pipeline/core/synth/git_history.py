"""The git-history generator: real human edits, the parent and child versions of files changed by commits.

For each non-merge commit in the fetched history whose parent was fetched too, every modified source
file that passes the same filters as code_snippets (language, vendored, generated, minified, size,
secrets) becomes a candidate (original = parent version, final = child version). Renames, added and
deleted files, whole rewrites, commits that touch too many files, submodules and symlinks (told by their
tree mode: never read as content) and names that are not UTF-8 are skipped and counted.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from fastapply_pipeline.core.files import (
    Exclusion,
    FileRules,
    classify_content,
    classify_entry,
    language_of,
)
from fastapply_pipeline.core.git import GitError, TreeEntry, read_blobs, run_git
from fastapply_pipeline.core.secrets import SecretScanner
from fastapply_pipeline.core.settings import TripleSettings
from fastapply_pipeline.core.triples import GeneratorReport, Provenance, Triple, make_triple


@dataclass(frozen=True)
class _Change:
    commit: str
    path: str
    old_sha: str
    new_sha: str


def _commits(mirror: Path, head: str, limit: int) -> list[tuple[str, list[str]]]:
    out = run_git(["rev-list", "--parents", f"--max-count={limit}", head], git_dir=mirror).decode()
    return [(parts[0], parts[1:]) for parts in (line.split() for line in out.splitlines()) if parts]


# Tree entry modes that are not file content: a submodule's entry is a commit of another repository,
# a symlink's blob is its target path.
_GITLINK_MODE = "160000"
_SYMLINK_MODE = "120000"


@dataclass(frozen=True)
class _DiffEntry:
    status: str
    old_mode: str
    new_mode: str
    old_sha: str
    new_sha: str
    path: str

    def not_a_file(self) -> str | None:
        """The reason when either side is a submodule or a symlink (never read as content), else None."""
        modes = (self.old_mode, self.new_mode)
        if _GITLINK_MODE in modes:
            return str(Exclusion.SUBMODULE)
        if _SYMLINK_MODE in modes:
            return str(Exclusion.SYMLINK)
        return None


def _changes(mirror: Path, parent: str, commit: str) -> list[_DiffEntry]:
    """Each entry the commit changed (status, modes, shas, path), renames detected."""
    out = run_git(["diff-tree", "-r", "-z", "-M", "--no-commit-id", parent, commit], git_dir=mirror)
    fields = out.split(b"\0")
    changes, i = [], 0
    while i < len(fields) - 1:
        meta = fields[i].decode()
        if not meta.startswith(":"):
            i += 1
            continue
        old_mode, new_mode, old_sha, new_sha, status = meta[1:].split(" ")
        if status[0] in "RC":
            path = fields[i + 2].decode("utf-8", "surrogateescape")
            i += 3
        else:
            path = fields[i + 1].decode("utf-8", "surrogateescape")
            i += 2
        changes.append(_DiffEntry(status[0], old_mode, new_mode, old_sha, new_sha, path))
    return changes


def git_history_triples(
    mirror: Path,
    head: str,
    *,
    repo: str,
    rules: FileRules,
    scanner: SecretScanner | None,
    settings: TripleSettings,
) -> GeneratorReport:
    """Triples from the history reachable from `head` in a (possibly shallow) mirror: the `git_history`
    limits of `settings`, and its snippet context and styles."""
    history = settings.git_history
    report = GeneratorReport()
    candidates: list[_Change] = []
    for commit, parents in _commits(mirror, head, history.max_commits):
        if len(parents) != 1:
            report.failures["merge_commit" if parents else "root_or_history_boundary"] += 1
            continue
        try:
            changes = _changes(mirror, parents[0], commit)
        except GitError:
            report.failures["parent_not_fetched"] += 1
            continue
        source_changes = [c for c in changes if language_of(c.path) is not None]
        if len(source_changes) > history.max_files_per_commit:
            report.failures["too_many_files_in_commit"] += len(source_changes)
            continue
        for change in source_changes:
            not_a_file = change.not_a_file()
            if not_a_file is not None:
                report.failures[not_a_file] += 1
                continue
            if change.status != "M":
                report.failures[
                    {"A": "file_added", "D": "file_deleted", "R": "file_renamed"}.get(
                        change.status, "other_change"
                    )
                ] += 1
                continue
            entry = TreeEntry(
                mode=change.new_mode, kind="blob", sha=change.new_sha, size=None, path=change.path
            )
            reason = classify_entry(entry, rules)
            if reason is not None:
                report.failures[str(reason)] += 1
                continue
            candidates.append(_Change(commit, change.path, change.old_sha, change.new_sha))

    blobs = read_blobs(mirror, [s for c in candidates for s in (c.old_sha, c.new_sha)])
    for change in candidates:
        old, new = blobs[change.old_sha], blobs[change.new_sha]
        if max(len(old), len(new)) > rules.max_file_bytes:
            report.failures["too_large"] += 1
            continue
        (old_reason, original), (new_reason, final) = classify_content(old), classify_content(new)
        if original is None or final is None:
            report.failures[str(old_reason or new_reason)] += 1
            continue
        if scanner is not None and (
            scanner.secret_types(change.path, original) or scanner.secret_types(change.path, final)
        ):
            report.failures["secret"] += 1
            continue
        similarity = difflib.SequenceMatcher(
            None, original.splitlines(), final.splitlines(), autojunk=False
        ).ratio()
        if 1 - similarity > history.max_changed_fraction:
            report.failures["whole_rewrite"] += 1
            continue
        language = language_of(change.path) or ""
        provenance = Provenance(repo, change.commit, change.path, language, "git_history", "commit")
        result = make_triple(
            original,
            final,
            provenance,
            min_context=settings.min_context,
            max_context=settings.max_context,
            styles=dict(settings.snippet_styles),
        )
        if isinstance(result, Triple):
            result.provenance = Provenance(
                repo, change.commit, change.path, language, "git_history", edit_kind(result)
            )
            report.triples.append(result)
        else:
            report.failures[result] += 1
    return report


def edit_kind(triple: Triple) -> str:
    """What a real commit did to the file: add, delete or modify lines, in one region or several."""
    original, final = triple.original_code.splitlines(), triple.final_code.splitlines()
    ops = {
        tag for tag, *_ in difflib.SequenceMatcher(None, original, final, autojunk=False).get_opcodes()
    } - {"equal"}
    kind = "add" if ops == {"insert"} else "delete" if ops == {"delete"} else "modify"
    return f"{kind}_multi" if triple.hunks > 1 else kind

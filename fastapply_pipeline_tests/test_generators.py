"""The offline generators: structural edits in every language, and real edits from git history."""

import os
import random
from collections import Counter

import pytest

from fastapply_pipeline.core.apply import apply_snippet
from fastapply_pipeline.core.files import FileRules
from fastapply_pipeline.core.git import sync_mirror
from fastapply_pipeline.core.parsing import parses
from fastapply_pipeline.core.settings import TripleSettings
from fastapply_pipeline.core.synth.git_history import git_history_triples
from fastapply_pipeline.core.synth.structural import (
    DEFAULT_EDIT_KINDS,
    NoCandidate,
    structural_edit,
    structural_triples,
)

from .helpers import (
    FAKE_AWS,
    JS_MODULE,
    JSX_COMPONENT,
    MIT_TEXT,
    TSX_COMPONENT,
    commit_all,
    git,
    init_repo,
    python_module,
    ts_module,
    write_files,
)

COMPONENT = """import React, {{ useState }} from 'react';

export function Counter({{ start, label }}{props}) {{
  const [count, setCount] = useState(start);
  const double = count * 2;
  const reset = () => setCount(start);
  if (count > 100) {{
    reset();
  }}
  return (
    <div className="counter">
      <h2>{{label}}</h2>
      <span className="value">{{count}}</span>
      <span className="double">{{double}}</span>
      <button onClick={{() => setCount(count + 1)}}>Add</button>
      <button onClick={{reset}}>Reset</button>
    </div>
  );
}}
"""

SOURCES = {
    "python": python_module("app", 8)
    + "\n\nclass Store:\n    def get(self, key):\n        value = self.data[key]\n        return value\n\n    def put(self, key, value):\n        self.data[key] = value\n        return value\n",
    "typescript": ts_module("util", 6)
    + "\nexport class Cache {\n  private size = 0;\n  get(key: string): number {\n    const hit = this.map.get(key);\n    return hit ?? 0;\n  }\n}\n",
    "tsx": TSX_COMPONENT + "\n" + COMPONENT.format(props=": { start: number; label: string }"),
    "jsx": JSX_COMPONENT + "\n" + COMPONENT.format(props=""),
    "javascript": JS_MODULE,
}


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_structural_triples_in_every_language_round_trip_and_parse(language):
    text = SOURCES[language]
    files = [("repo", "c0ffee", f"file.{language}", language, text)]
    report = structural_triples(files, settings=anchored_only(30, DEFAULT_EDIT_KINDS), seed=3)
    assert len(report.triples) >= 5, report.failures
    for triple in report.triples:
        assert parses(triple.original_code, language) and parses(triple.final_code, language)
        assert apply_snippet(triple.original_code, triple.update_snippet).merged == triple.final_code
        assert triple.provenance.generator == "structural" and triple.provenance.language == language
    assert sum(report.failures.values()) + len(report.triples) == 30  # every attempt accounted for


def anchored_only(attempts_per_file: int = 2, edit_kinds=None) -> TripleSettings:
    """The triples settings of these tests: anchored snippets only (the styles have their own tests)."""
    structural = {"attempts_per_file": attempts_per_file}
    if edit_kinds is not None:
        structural["edit_kinds"] = dict(edit_kinds)
    return TripleSettings(structural=structural, snippet_styles={"anchored": 1})


def python_history(mirror, head: str, repo: str):
    """git_history's triples of the Python files, anchored snippets, no secret scan."""
    return git_history_triples(
        mirror,
        head,
        repo=repo,
        rules=FileRules.build(["python"], 100_000),
        scanner=None,
        settings=anchored_only(),
    )


def test_edit_kinds_do_what_they_say():
    text = SOURCES["python"]
    rng = random.Random(0)
    add = structural_edit(text, "python", "add_feature", rng)
    assert add.final == text and len(add.original) < len(text)
    delete = structural_edit(text, "python", "delete_feature", rng)
    assert delete.original == text and len(delete.final) < len(text)
    two = structural_edit(text, "python", "add_two_features", rng)
    assert two.final == text and len(two.original) < len(add.original) + 200
    modify = structural_edit(text, "python", "modify_function", rng)
    assert modify.original != modify.final
    refactor = structural_edit(text, "python", "small_refactor", rng)
    assert refactor.original == text and "_value" in refactor.final
    literal = structural_edit(text, "python", "modify_single_line", rng)
    changed = [
        a for a, b in zip(literal.original.splitlines(), literal.final.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 1
    moved = structural_edit(text, "python", "reorder_units", rng)
    assert moved.original == text and moved.final != text
    assert sorted(moved.final.splitlines()) == sorted(text.splitlines())  # the same lines, another order
    with pytest.raises(NoCandidate):
        structural_edit("x = 1\n", "python", "modify_two_functions", rng)


def test_weights_choose_the_mix_and_the_seed_fixes_it():
    files = [("r", "c", f"m{i}.py", "python", SOURCES["python"]) for i in range(20)]
    only_add = structural_triples(files, settings=anchored_only(3, {"add_feature": 1}), seed=1)
    assert {t.provenance.edit_kind for t in only_add.triples} == {"add_feature"}
    mixed = structural_triples(files, settings=anchored_only(3, DEFAULT_EDIT_KINDS), seed=1)
    again = structural_triples(files, settings=anchored_only(3, DEFAULT_EDIT_KINDS), seed=1)
    assert [t.triple_id for t in mixed.triples] == [t.triple_id for t in again.triples]
    kinds = Counter(t.provenance.edit_kind for t in mixed.triples)
    assert kinds["modify_function"] > kinds["delete_feature"]


def test_unparseable_sources_are_counted_not_used():
    report = structural_triples(
        [("r", "c", "bad.py", "python", "def f(:\n    pass\n")],
        settings=anchored_only(2, DEFAULT_EDIT_KINDS),
        seed=1,
    )
    assert not report.triples and report.failures["source_does_not_parse"] == 2


@pytest.fixture
def history_repo(tmp_path):
    repo = tmp_path / "history"
    init_repo(repo)
    app = python_module("app", 10)
    write_files(
        repo,
        {
            "LICENSE": MIT_TEXT,
            "src/app.py": app,
            "src/old.py": python_module("old", 3),
            "src/util.ts": ts_module("util", 5),
            "node_modules/x/index.js": JS_MODULE,
        },
    )
    commit_all(repo, "initial")
    # 1: a real modification of two files (+ a vendored file, skipped)
    write_files(
        repo,
        {
            "src/app.py": app.replace("app_step_3(", "app_step_three("),
            "src/util.ts": ts_module("util", 5).replace("utilStep2", "utilStepTwo"),
            "node_modules/x/index.js": JS_MODULE + "// patched\n",
        },
    )
    commit_all(repo, "rename helpers")
    # 2: a rename, an added file and a deleted file: all skipped
    git(repo, "mv", "src/old.py", "src/legacy.py")
    write_files(repo, {"src/new.py": python_module("new", 2)})
    git(repo, "rm", "-q", "src/util.ts")
    commit_all(repo, "reorganize")
    # 3: a whole rewrite, skipped
    write_files(
        repo, {"src/app.py": ts_module("rewritten", 12).replace("//", "#").replace("export function", "def")}
    )
    commit_all(repo, "rewrite")
    # 4: a commit that plants a secret: skipped
    write_files(repo, {"src/new.py": python_module("new", 2) + FAKE_AWS})
    commit_all(repo, "oops")
    return repo


def test_git_history_takes_real_modifications_and_counts_the_rest(history_repo, tmp_path):
    from fastapply_pipeline.config import DEFAULT_SECRET_PLUGINS
    from fastapply_pipeline.core.secrets import SecretScanner

    mirror = tmp_path / "m.git"
    head = sync_mirror(str(history_repo), mirror, ref=None, depth=50, timeout=30, what="t").commit
    rules = FileRules.build(["python", "typescript"], 100_000)
    report = git_history_triples(
        mirror,
        head,
        repo="history",
        rules=rules,
        scanner=SecretScanner(DEFAULT_SECRET_PLUGINS),
        settings=anchored_only(),
    )
    paths = sorted(t.provenance.path for t in report.triples)
    assert paths == ["src/app.py", "src/util.ts"]
    for triple in report.triples:
        assert apply_snippet(triple.original_code, triple.update_snippet).merged == triple.final_code
        assert triple.provenance.generator == "git_history" and triple.provenance.edit_kind == "modify"
        assert len(triple.provenance.commit) == 40
    assert report.failures == Counter(
        {
            "vendored": 1,
            "file_renamed": 1,
            "file_added": 1,
            "file_deleted": 1,
            "whole_rewrite": 1,
            "secret": 1,
            "root_or_history_boundary": 1,
        }
    )


def test_git_history_respects_the_fetched_depth(history_repo, tmp_path):
    mirror = tmp_path / "shallow.git"
    head = sync_mirror(str(history_repo), mirror, ref=None, depth=2, timeout=30, what="t").commit
    report = python_history(mirror, head, "h")
    assert report.failures["root_or_history_boundary"] == 1
    # Only the head commit's parent was fetched: its one modified file (no scanner here) is the only triple.
    assert [(t.provenance.commit, t.provenance.path) for t in report.triples] == [(head, "src/new.py")]


def add_commit_to(repo, name):
    write_files(repo, {name: python_module(name[:-3], 1)})
    return commit_all(repo, f"add {name}")


def _commit_paths(repo, message, *paths):
    git(repo, "add", "--", *paths)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def test_git_history_skips_submodules_symlinks_and_unreadable_names_with_reasons(tmp_path):
    # The submodule's own repository: its commits are never in the parent's mirror.
    library = tmp_path / "library"
    init_repo(library)
    library_commits = [add_commit_to(library, f"lib{i}.py") for i in range(2)]
    repo = tmp_path / "odd-entries"
    init_repo(repo)
    app = python_module("app", 10)
    latin1_name = os.fsencode(repo) + b"/caf\xe9.py"
    write_files(repo, {"app.py": app, "target_a.py": "A = 1\n", "target_b.py": "B = 2\n"})
    with open(latin1_name, "wb") as f:
        f.write(python_module("cafe", 10).encode())
    os.symlink("target_a.py", repo / "link.py")
    _commit_paths(repo, "initial", ".")
    # A submodule (gitlink) whose name looks like a source file: its "content" is a commit of another
    # repository, which this mirror does not hold.
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{library_commits[0]},lib.py")
    git(repo, "commit", "-q", "-m", "add a submodule")
    # One commit changes all four: the submodule's commit, the symlink's target, the Latin-1-named file
    # and a real file.
    write_files(repo, {"app.py": app.replace("app_step_3(", "app_step_three(")})
    with open(latin1_name, "wb") as f:
        f.write(python_module("cafe", 10).replace("cafe_step_2(", "cafe_step_two(").encode())
    os.remove(repo / "link.py")
    os.symlink("target_b.py", repo / "link.py")
    git(repo, "update-index", "--cacheinfo", f"160000,{library_commits[1]},lib.py")
    _commit_paths(repo, "change everything", "app.py", "link.py", os.fsdecode(latin1_name))

    mirror = tmp_path / "m.git"
    head = sync_mirror(str(repo), mirror, ref=None, depth=50, timeout=30, what="t").commit
    report = python_history(mirror, head, "odd")
    assert [t.provenance.path for t in report.triples] == ["app.py"]
    assert report.failures == Counter(
        {
            "submodule": 2,  # added, then its commit changed
            "symlink": 1,
            "non_utf8_path": 1,
            "root_or_history_boundary": 1,
        }
    )


def test_one_copy_of_an_edit_is_kept_whichever_generators_made_it():
    """The same edit of the same file is one triple; the copy kept follows GENERATOR_PRECEDENCE."""
    import polars as pl

    from fastapply_pipeline.core.triples import (
        Provenance,
        check_triples,
        drop_repeated_triples,
        make_triple,
        triples_frame,
    )

    code = python_module("dup", 4)
    final = code.replace("scale: float = 2.0", "scale: float = 2.5")
    other = code.replace("scale: float = 3.0", "scale: float = 3.5")

    def triple(generator, new=final, path="dup.py"):
        return make_triple(code, new, Provenance("r", "c0ffee", path, "python", generator, "modify"))

    table = triples_frame(
        [
            triple("structural"),
            triple("git_history"),
            triple("structural", other),
            triple("git_history", path="b.py"),
        ]
    )
    llm = triples_frame([triple("openai"), triple("anthropic", other), triple("anthropic", other)])
    both = pl.concat([table, llm]).with_columns(pl.col("model").fill_null("m"))
    assert check_triples(both)["unique_triple_ids"]  # the repeats are there to find
    kept, dropped = drop_repeated_triples(both)
    assert not check_triples(kept)["unique_triple_ids"]
    assert dropped == Counter(
        {"structural: duplicate_triple": 1, "openai: duplicate_triple": 1, "anthropic: duplicate_triple": 2}
    )
    assert kept.height + sum(dropped.values()) == both.height  # nothing lost uncounted
    # A real commit's copy wins over the structural one, offline over LLM; order otherwise unchanged.
    assert kept.select("path", "generator", "final_code").rows() == [
        ("dup.py", "git_history", final),
        ("dup.py", "structural", other),
        ("b.py", "git_history", final),
    ]

"""cloned_repo and code_snippets materialized for real into a SQLite Dagster instance holding the partitions."""

import json
import os
import shutil

import dagster as dg
import polars as pl
import pytest

from fastapply_pipeline.cli import root_message
from fastapply_pipeline.definitions import PER_REPO, build_defs
from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS

from .helpers import EXPECTED_REASONS, MIT_TEXT, commit_all, init_repo, python_module, write_files

pytestmark = pytest.mark.slow  # every test here is slow (see docs/testing.md)


def materialize(defs, instance, partition, selection=None):
    return dg.materialize(
        defs.assets,
        instance=instance,
        resources=defs.resources,
        partition_key=partition,
        selection=selection or PER_REPO,
        raise_on_error=False,
    )


def metadata(result, asset):
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_both_assets_materialize_with_exclusions_buckets_and_checks(mixed_repo, make_config, instance):
    path, config = make_config([{"path": str(mixed_repo), "name": "mixed"}])
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["mixed"])
    result = materialize(defs, instance, "mixed")
    assert result.success

    repo_meta = metadata(result, "cloned_repo")
    assert repo_meta["license"] == "MIT" and repo_meta["license_allowed"] is True
    assert repo_meta["file_count"] == len(EXPECTED_REASONS)
    assert len(repo_meta["commit"]) == 40

    snip_meta = metadata(result, "code_snippets")
    expected = {}
    for reason in EXPECTED_REASONS.values():
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert snip_meta["exclusions"] == expected
    kept = sorted(p for p, r in EXPECTED_REASONS.items() if r is None)
    assert snip_meta["rows"] == len(kept)
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps({k: str(v) for k, v in snip_meta.items()})

    table = pl.read_parquet(config.artifacts_dir / "tables" / "code_snippets" / "mixed.parquet")
    assert sorted(table["path"]) == kept
    buckets = dict(table.group_by("bucket").len().iter_rows())
    assert sum(buckets.values()) == len(kept)
    assert set(buckets) <= {"<100", "100-399", "400+"}
    assert f"| <100 | {buckets.get('<100', 0)} |" in snip_meta["token_histogram"]

    checks = {
        c.check_name: c.passed
        for c in result.get_asset_check_evaluations()
        if c.asset_key == dg.AssetKey("code_snippets")
    }
    assert checks == {
        "no_empty_content": True,
        "token_counts_inside_bucket": True,
        "no_duplicate_paths": True,
    }

    # The commit is the data version of cloned_repo.
    record = instance.get_latest_materialization_event(dg.AssetKey("cloned_repo"))
    assert record.asset_materialization.tags["dagster/data_version"] == repo_meta["commit"]


def test_unchanged_commit_does_no_work_and_same_seed_gives_same_rows(mixed_repo, make_config, instance):
    path, config = make_config([{"path": str(mixed_repo), "name": "mixed"}])
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["mixed"])
    first = materialize(defs, instance, "mixed")
    table_path = config.artifacts_dir / "tables" / "code_snippets" / "mixed.parquet"
    first_table = pl.read_parquet(table_path)

    second = materialize(defs, instance, "mixed")
    assert metadata(second, "cloned_repo")["fetched"] is True  # a branch head is always asked for...
    assert metadata(second, "cloned_repo")["commit"] == metadata(first, "cloned_repo")["commit"]
    assert metadata(second, "code_snippets")["cache_key"] == metadata(first, "code_snippets")["cache_key"]
    assert metadata(first, "code_snippets")["cache_hit"] is False
    assert metadata(second, "code_snippets")["cache_hit"] is True

    # Without the cache the rows are rebuilt from git, identically.
    shutil.rmtree(config.cache_dir / "snippets")
    materialize(defs, instance, "mixed")
    assert pl.read_parquet(table_path).equals(first_table)


def test_pinned_commit_already_fetched_is_not_fetched_again(tmp_path, make_config, instance):
    repo = tmp_path / "pinned"
    init_repo(repo)
    write_files(repo, {"LICENSE": MIT_TEXT, "a.py": python_module("a", 5)})
    commit = commit_all(repo, "one")
    path, _ = make_config([{"path": str(repo), "ref": commit, "name": "pinned"}])
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["pinned"])
    assert metadata(materialize(defs, instance, "pinned", ["cloned_repo"]), "cloned_repo")["fetched"] is True
    again = metadata(materialize(defs, instance, "pinned", ["cloned_repo"]), "cloned_repo")
    assert again["fetched"] is False and again["commit"] == commit


def test_repository_with_a_disallowed_license_gives_no_rows(tmp_path, make_config, instance):
    repo = tmp_path / "gpl"
    init_repo(repo)
    write_files(
        repo,
        {
            "COPYING": "This program is free software: you can redistribute it and/or modify it under "
            "the terms of the GNU General Public License as published by the Free Software Foundation, "
            "either version 3 of the License, or (at your option) any later version.\n",
            "a.py": python_module("a", 5),
        },
    )
    commit_all(repo, "one")
    path, _ = make_config([{"path": str(repo), "name": "gpl"}])
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["gpl"])
    result = materialize(defs, instance, "gpl")
    assert result.success
    assert metadata(result, "cloned_repo")["license_allowed"] is False
    snip = metadata(result, "code_snippets")
    assert snip["rows"] == 0 and snip["exclusions"] == {"license_not_allowed": 2}


def test_a_failing_source_fails_only_its_own_partition(mixed_repo, tmp_path, make_config, instance):
    path, _ = make_config(
        [
            {"path": str(mixed_repo), "name": "good"},
            {"path": str(tmp_path / "does-not-exist"), "name": "broken"},
        ]
    )
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["good", "broken"])
    broken = materialize(defs, instance, "broken")
    assert not broken.success
    (failure,) = broken.get_step_failure_events()
    message = root_message(failure.step_failure_data.error)
    assert message.startswith("FileNotFoundError: source 'broken'") and "fix its `path:`" in message
    assert materialize(defs, instance, "good").success
    status = instance.get_status_by_partition(
        dg.AssetKey("code_snippets"),
        ["good", "broken"],
        defs.resolve_assets_def("code_snippets").partitions_def,
    )
    assert status["good"].value == "MATERIALIZED"


def test_a_killed_fetch_and_a_file_name_that_is_not_utf8_fail_nothing(tmp_path, make_config, instance):
    repo = tmp_path / "latin1"
    init_repo(repo)
    write_files(repo, {"LICENSE": MIT_TEXT, "a.py": python_module("a", 5)})
    with open(os.fsencode(repo) + b"/caf\xe9.py", "wb") as f:
        f.write(python_module("cafe", 5).encode())
    commit_all(repo, "one")
    path, config = make_config([{"path": str(repo), "name": "latin1"}])
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["latin1"])
    selection = ["cloned_repo", "code_snippets"]
    first = materialize(defs, instance, "latin1", selection)
    assert first.success
    snip = metadata(first, "code_snippets")
    assert snip["rows"] == 1 and snip["exclusions"] == {"language_not_selected": 1, "non_utf8_path": 1}
    assert "caf\\xe9.py" in snip["excluded_examples"]
    assert metadata(first, "cloned_repo")["stale_git_locks_cleared"] == 0

    # A run killed during `git fetch` leaves git's lock in the mirror; the next run clears it and goes on.
    (config.cache_dir / "repos" / "latin1.git" / "shallow.lock").write_text("")
    write_files(repo, {"a.py": python_module("a", 6)})
    commit_all(repo, "two")
    second = materialize(defs, instance, "latin1", selection)
    assert second.success
    assert metadata(second, "cloned_repo")["stale_git_locks_cleared"] == 1


def test_files_only_sample_0_buckets_can_hold_are_reported_untokenized(mixed_repo, make_config, instance):
    buckets = [{"upper": 100, "sample": 0}, {"upper": None, "sample": None}]
    snippets = {"tokenizer": "cl100k_base", "buckets": buckets}
    path, _ = make_config([{"path": str(mixed_repo), "name": "mixed"}], snippets=snippets)
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["mixed"])
    result = materialize(defs, instance, "mixed")
    assert result.success
    snip = metadata(result, "code_snippets")
    # README.md ("# demo\n") has 7 bytes, so 7 tokens at most: never tokenized, still counted.
    assert "| <100 | 1 |" in snip["untokenized_by_range"]
    table = pl.read_parquet(next((path.parent / "artifacts" / "tables" / "code_snippets").glob("*.parquet")))
    assert "README.md" not in table["path"].to_list() and min(table["token_count"]) >= 100
    assert snip["files_total"] == snip["rows"] + snip["excluded"]

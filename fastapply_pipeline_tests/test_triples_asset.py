"""edit_triples materialized for real: on a test repository and on this project's own repository."""

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fastapply_pipeline.core.apply import apply_snippet
from fastapply_pipeline.core.parsing import parses
from fastapply_pipeline.definitions import PER_REPO, build_defs
from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS
from fastapply_pipeline_tests.helpers import MIT_TEXT, commit_all, init_repo, python_module, write_files

pytestmark = pytest.mark.slow  # every test here is slow (see docs/testing.md)

ROOT = Path(__file__).resolve().parents[1]


def run_all(path, instance, key):
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, [key])
    result = dg.materialize(
        defs.assets, instance=instance, resources=defs.resources, selection=PER_REPO, partition_key=key
    )
    assert result.success
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("edit_triples")
    ]
    checks = {
        c.check_name: c.passed
        for c in result.get_asset_check_evaluations()
        if c.asset_key.path == ["edit_triples"]
    }
    return {k: v.value for k, v in event.materialization.metadata.items()}, checks


def test_triples_of_this_repository_all_round_trip_and_parse(make_config, instance):
    """Structural and git_history triples from the project's own code and history; refusals counted. Only the
    package and its docs: the tests (hand-written cases, long test modules) grow every session and would make
    this test slower with nothing new to check."""
    path, config = make_config(
        [{"path": str(ROOT), "name": "self", "include": ["fastapply_pipeline/**", "docs/**"]}],
        snippets={"tokenizer": "cl100k_base", "buckets": [{"upper": None, "sample": None}]},
        files={"max_file_bytes": 500_000},
    )
    meta, checks = run_all(path, instance, "self")
    assert checks == {"applier_roundtrip": True, "no_marker_in_final": True, "unique_triple_ids": True}
    table = pl.read_parquet(config.artifacts_dir / "tables" / "edit_triples" / "self.parquet")
    generators = set(table["generator"])
    assert generators == {"structural", "git_history"}, meta["rejected"]
    for row in table.iter_rows(named=True):
        merged = apply_snippet(row["original_code"], row["update_snippet"], language=row["language"]).merged
        assert merged == row["final_code"]
        if parses(row["original_code"], row["language"]):
            assert parses(row["final_code"], row["language"]), row["path"]
        assert row["original_tokens"] > 0 and row["snippet_tokens"] > 0 and row["final_tokens"] > 0
    assert meta["rows"] == table.height
    assert all(key.split(": ")[0] in {"structural", "git_history"} for key in meta["rejected"])
    assert "| structural | modify_function |" in meta["rows_by_edit_kind"]


def test_generators_are_chosen_in_the_settings(mixed_repo, make_config, instance):
    path, config = make_config(
        [{"path": str(mixed_repo), "name": "mixed"}], triples={"generators": ["structural"]}
    )
    _, checks = run_all(path, instance, "mixed")
    assert all(checks.values())
    table = pl.read_parquet(config.artifacts_dir / "tables" / "edit_triples" / "mixed.parquet")
    assert set(table["generator"]) == {"structural"} and table.height > 0
    assert set(table["language"]) <= {"python", "typescript", "tsx", "jsx", "javascript", "markdown"}
    assert table["model"].is_null().all() and table["flag"].is_null().all()
    assert table.columns[:13] == [
        "triple_id",
        "repo",
        "commit",
        "path",
        "language",
        "generator",
        "edit_kind",
        "snippet_style",
        "model",
        "flag",
        "original_code",
        "update_snippet",
        "final_code",
    ]


def test_the_same_edit_from_two_generators_is_kept_once_and_counted(tmp_path, make_config, instance):
    """A commit that adds one function equals the structural edit that removes it from the file: both
    generators make the same triple. One copy is kept (the real commit's), the other counted."""
    repo = tmp_path / "adds-one"
    init_repo(repo)
    before = python_module("calc", 3)
    write_files(repo, {"LICENSE": MIT_TEXT, "calc.py": before})
    commit_all(repo, "calc")
    added = "\n\ndef calc_total(values: list[float]) -> float:\n    return sum(values)\n"
    write_files(repo, {"calc.py": before + added})
    commit_all(repo, "add calc_total")
    path, config = make_config(
        [{"path": str(repo), "name": "adds-one"}],
        # Only add_feature, tried often enough to remove every unit of the file once, the new one too.
        triples={"structural": {"attempts_per_file": 40, "edit_kinds": {"add_feature": 1}}},
    )
    meta, checks = run_all(path, instance, "adds-one")
    assert checks == {"applier_roundtrip": True, "no_marker_in_final": True, "unique_triple_ids": True}
    table = pl.read_parquet(config.artifacts_dir / "tables" / "edit_triples" / "adds-one.parquet")
    assert table["triple_id"].is_unique().all()
    commit_rows = table.filter(pl.col("final_code") == before + added, pl.col("original_code") == before)
    assert commit_rows["generator"].to_list() == ["git_history"]  # the real commit's copy
    assert meta["rejected"]["structural: duplicate_triple"] == 1
    assert meta["rows"] == table.height

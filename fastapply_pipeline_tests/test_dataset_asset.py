"""fastapply_dataset and rejected_triples materialized for real over two repositories."""

import dagster as dg
import polars as pl
import pytest
from datasets import load_from_disk

from fastapply_pipeline.definitions import PER_REPO, build_defs
from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS
from fastapply_pipeline.defs.triples import assets as triples_assets
from fastapply_pipeline_tests.helpers import (
    MIT_TEXT,
    commit_all,
    init_repo,
    python_module,
    ts_module,
    write_files,
)

pytestmark = pytest.mark.slow  # every test here is slow (see docs/testing.md)

KEYS = ["mixed", "second"]


@pytest.fixture(scope="module")
def second_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("sources") / "second"
    init_repo(repo)
    write_files(
        repo,
        {"LICENSE": MIT_TEXT}
        | {f"lib/part_{i}.py": python_module(f"part{i}", 8) for i in range(4)}
        | {f"web/page_{i}.ts": ts_module(f"page{i}", 6) for i in range(3)},
    )
    commit_all(repo, "second repository")
    return repo


def build(path, instance):
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, KEYS)
    for key in KEYS:
        result = dg.materialize(
            defs.assets, instance=instance, resources=defs.resources, partition_key=key, selection=PER_REPO
        )
        assert result.success
    return defs


def materialize_dataset(defs, instance, raise_on_error=True):
    return dg.materialize(
        defs.assets,
        instance=instance,
        resources=defs.resources,
        selection=["fastapply_dataset", "rejected_triples"],
        raise_on_error=raise_on_error,
    )


def test_dataset_over_two_repositories(mixed_repo, second_repo, make_config, instance):
    path, config = make_config(
        [{"path": str(mixed_repo), "name": "mixed"}, {"path": str(second_repo), "name": "second"}],
        dataset={"split": {"test": 0.3}, "max_seq_length": 4096},
    )
    defs = build(path, instance)
    result = materialize_dataset(defs, instance)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "no_repo_in_two_splits": True,
        "no_marker_in_final": True,
        "finals_parse": True,
        "test_split_not_empty": True,
    }
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path == ["fastapply_dataset"]
    ]
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["split_by"] == "repository" and meta["pushed_to"].startswith("off")

    folder = config.artifacts_dir / "dataset"
    dataset = load_from_disk(str(folder / "hf"))
    train_repos, test_repos = set(dataset["train"]["repo"]), set(dataset["test"]["repo"])
    assert train_repos | test_repos == set(KEYS) and not train_repos & test_repos
    rejected = pl.read_parquet(config.artifacts_dir / "tables" / "rejected_triples.parquet")
    triples = sum(
        pl.read_parquet(config.artifacts_dir / "tables" / "edit_triples" / f"{k}.parquet").height
        for k in KEYS
    )
    assert (
        dataset["train"].num_rows + dataset["test"].num_rows + rejected.height == triples == meta["rows_in"]
    )
    assert rejected["reason"].is_not_null().all()
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "| mixed |" in card and "| second |" in card

    # Same inputs and seed: the same dataset.
    first = {n: pl.read_parquet(folder / "data" / f"{n}.parquet") for n in ("train", "test")}
    materialize_dataset(defs, instance)
    assert all(pl.read_parquet(folder / "data" / f"{n}.parquet").equals(first[n]) for n in first)


def test_push_without_a_token_fails_naming_it(mixed_repo, second_repo, make_config, instance, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    path, _ = make_config(
        [{"path": str(mixed_repo), "name": "mixed"}, {"path": str(second_repo), "name": "second"}],
        triples={"generators": ["structural"]},
        dataset={"push": {"repo_id": "me/fast-apply"}},
    )
    defs = build(path, instance)
    result = materialize_dataset(defs, instance, raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "HF_TOKEN is not set" in str(failure.step_failure_data.error)


def test_too_few_rows_to_split_fails_clearly_and_still_writes_the_rejections(tmp_path, make_config, instance):
    repo = tmp_path / "tiny"
    init_repo(repo)
    write_files(repo, {"LICENSE": MIT_TEXT, "only.py": python_module("only", 10)})
    commit_all(repo, "one file")
    path, config = make_config([{"path": str(repo), "name": "tiny"}], triples={"generators": ["structural"]})
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["tiny"])
    assert dg.materialize(
        defs.assets, instance=instance, resources=defs.resources, partition_key="tiny", selection=PER_REPO
    ).success
    result = materialize_dataset(defs, instance, raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "needs rows from at least two files" in str(failure.step_failure_data.error)
    assert "rejected_triples holds the others" in str(failure.step_failure_data.error)
    assert (config.artifacts_dir / "tables" / "rejected_triples.parquet").is_file()


def dataset_repos(config) -> set[str]:
    dataset = load_from_disk(str(config.artifacts_dir / "dataset" / "hf"))
    return {repo for name in dataset for repo in dataset[name]["repo"]}


def test_a_partition_whose_blocking_check_last_failed_is_not_consumed(
    mixed_repo, second_repo, make_config, instance, monkeypatch
):
    """A blocking check fails the run but the table it checked stays stored: the next dataset run must not
    build on it. Its rows are counted in rejected_triples, and the partition and check are named."""
    path, config = make_config(
        [{"path": str(mixed_repo), "name": "mixed"}, {"path": str(second_repo), "name": "second"}],
        triples={"generators": ["structural"]},
        dataset={"split": {"test": 0.3}, "max_seq_length": 4096},
    )
    defs = build(path, instance)
    tables = config.artifacts_dir / "tables"

    # A run of `second` whose unique_triple_ids check fails. Its edits are exact by construction, so the
    # check's verdict is the one thing substituted here; the run, its storage and the dataset are real.
    real_check = triples_assets.check_triples
    monkeypatch.setattr(
        triples_assets,
        "check_triples",
        lambda table: real_check(table) | {"unique_triple_ids": table["triple_id"].head(1).to_list()},
    )
    failed_run = dg.materialize(
        defs.assets,
        instance=instance,
        resources=defs.resources,
        partition_key="second",
        selection=PER_REPO,
        raise_on_error=False,
    )
    assert not failed_run.success
    monkeypatch.undo()
    second_rows = pl.read_parquet(tables / "edit_triples" / "second.parquet").height  # still stored

    result = materialize_dataset(defs, instance)
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path == ["fastapply_dataset"]
    ]
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert f"| second | unique_triple_ids | {second_rows} |" in meta["partitions_skipped"]
    assert dataset_repos(config) == {"mixed"}
    rejected = pl.read_parquet(tables / "rejected_triples.parquet")
    skipped = rejected.filter(pl.col("reason") == "failed_check")
    assert skipped.height == second_rows and set(skipped["repo"]) == {"second"}
    assert set(skipped["stage"]) == {"input"}
    assert set(skipped["detail"]) == {"edit_triples partition second: unique_triple_ids failed"}
    dataset = load_from_disk(str(config.artifacts_dir / "dataset" / "hf"))
    assert sum(dataset[n].num_rows for n in dataset) + rejected.height == meta["rows_in"]  # nothing lost

    # Built again, its checks pass: the partition is consumed again.
    assert dg.materialize(
        defs.assets, instance=instance, resources=defs.resources, partition_key="second", selection=PER_REPO
    ).success
    materialize_dataset(defs, instance)
    assert dataset_repos(config) == {"mixed", "second"}
    rejected = pl.read_parquet(tables / "rejected_triples.parquet")
    assert rejected.filter(pl.col("reason") == "failed_check").is_empty()

    # A failed evaluation reported for the partition later (outside a run) counts too, as the latest.
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("edit_triples"),
            check_name="applier_roundtrip",
            passed=False,
            partition="second",
            blocking=True,
        )
    )
    materialize_dataset(defs, instance)
    assert dataset_repos(config) == {"mixed"}

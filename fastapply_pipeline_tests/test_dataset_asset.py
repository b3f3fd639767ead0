"""fastapply_dataset and rejected_triples materialized for real over two repositories."""

import dagster as dg
import polars as pl
import pytest
from datasets import load_from_disk

from fastapply_pipeline.definitions import PER_REPO, build_defs
from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS
from fastapply_pipeline_tests.conftest import (
    MIT_TEXT,
    commit_all,
    init_repo,
    python_module,
    ts_module,
    write_files,
)

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

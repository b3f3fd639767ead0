"""FASTAPPLY_ENV=prod: every artifact type goes to S3, here a real moto server on 127.0.0.1 spoken to by
boto3 (pickles, dagster-aws) and s3fs (parquet through dagster-polars, artifact folders). The asset code
is the same as locally; a second machine (an empty local folder) reads everything back from S3."""

import shutil

import boto3
import dagster as dg
import polars as pl
import pytest
from moto.server import ThreadedMotoServer

from fastapply_pipeline.config import ConfigError
from fastapply_pipeline.core.artifacts import ArtifactMissing, S3Store
from fastapply_pipeline.definitions import build_defs
from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS
from fastapply_pipeline_tests.test_training import small_dataset

BUCKET = "fastapply-test"


@pytest.fixture
def s3(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    url = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield url, client
    server.stop()


def keys(client, prefix: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


@pytest.mark.slow
def test_store_publishes_versions_and_fetches_the_latest_whole(s3, tmp_path):
    url, client = s3
    store = S3Store(tmp_path / "a", BUCKET, "p", endpoint_url=url)
    folder = tmp_path / "a" / "adapters" / "x"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    (folder / "sub" / "config.json").write_text("{}")
    first = store.publish("adapters/x")
    assert first.startswith(f"s3://{BUCKET}/p/adapters/x/versions/")
    (folder / "weights.bin").unlink()
    (folder / "new.txt").write_text("v2")
    second = store.publish("adapters/x")
    v1, v2 = (uri.rsplit("/", 1)[-1] for uri in (first, second))
    latest = client.get_object(Bucket=BUCKET, Key="p/adapters/x/LATEST")["Body"].read().decode()
    assert latest == v2
    # The previous version stays (a reader may be downloading it); older ones are pruned.
    assert {k.split("/")[4] for k in keys(client, "p/adapters/x/versions/")} == {v1, v2}
    store.publish("adapters/x")
    assert v1 not in {k.split("/")[4] for k in keys(client, "p/adapters/x/versions/")}

    elsewhere = S3Store(tmp_path / "b", BUCKET, "p", endpoint_url=url)  # another machine, with a stale copy
    stale = tmp_path / "b" / "adapters" / "x"
    stale.mkdir(parents=True)
    (stale / "weights.bin").write_text("old")
    fetched = elsewhere.fetch("adapters/x")
    assert sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file()) == [
        "new.txt",
        "sub/config.json",
    ]
    assert not list((tmp_path / "b" / "adapters").glob(".x.fetch-*"))  # the staging folder was swapped in
    with pytest.raises(ArtifactMissing, match=r"s3://fastapply-test/p/nothing has no published version"):
        elsewhere.fetch("nothing")


def test_prod_needs_an_s3_section(make_config, mixed_repo):
    path, _ = make_config([{"path": str(mixed_repo), "name": "mixed"}])
    with pytest.raises(ConfigError, match=r"FASTAPPLY_ENV=prod stores artifacts in S3: add storage\.s3"):
        build_defs(path, env="prod")


@pytest.mark.slow
def test_every_artifact_type_round_trips_through_s3(s3, make_config, mixed_repo, instance, tmp_path):
    url, client = s3
    storage = {
        "cache_dir": str(tmp_path / "cache"),
        "artifacts_dir": str(tmp_path / "machine-1"),
        "s3": {"bucket": BUCKET, "prefix": "team/fastapply", "endpoint_url": url},
    }
    path, _ = make_config(
        [{"path": str(mixed_repo), "name": "mixed"}],
        storage=storage,
        training={"max_steps": 1, "batch_size": 2, "gradient_accumulation_steps": 1, "r": 4, "alpha": 8},
        eval={"max_examples": 1, "speed_examples": 0, "candidates": ["adapter", "applier", "identity"]},
    )
    defs = build_defs(path, env="prod")
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["mixed"])
    per_repo = dg.AssetSelection.groups("sources", "snippets", "triples")
    assert dg.materialize(
        defs.assets, instance=instance, resources=defs.resources, partition_key="mixed", selection=per_repo
    ).success
    stored = keys(client, "team/fastapply/")
    assert "team/fastapply/objects/cloned_repo/mixed" in stored  # a pickled dict (dagster-aws, boto3)
    assert {
        "team/fastapply/tables/code_snippets/mixed.parquet",
        "team/fastapply/tables/edit_triples/mixed.parquet",
    } <= stored
    assert not (tmp_path / "machine-1" / "tables").exists()  # nothing went to the local folder

    # The dataset, then (on "machine 2": an empty artifacts folder) training and evaluation.
    assert dg.materialize(
        defs.assets,
        instance=instance,
        resources=defs.resources,
        selection=["fastapply_dataset", "rejected_triples"],
    ).success
    assert any(k.endswith("/hf/dataset_dict.json") for k in keys(client, "team/fastapply/dataset/versions/"))
    # The structural rows of one small repository are too few to train on; a hand-made dataset replaces them.
    small_dataset(tmp_path / "machine-1" / "dataset")
    S3Store(tmp_path / "machine-1", BUCKET, "team/fastapply", endpoint_url=url).publish("dataset")
    shutil.rmtree(tmp_path / "machine-1")

    result = dg.materialize(
        defs.assets, instance=instance, resources=defs.resources, selection=["lora_adapter", "eval_scores"]
    )
    assert result.success
    adapter = keys(client, "team/fastapply/adapters/lora_adapter/versions/")
    assert any(k.endswith("/adapter/adapter_model.safetensors") for k in adapter)
    assert any(k.endswith("/scores.png") for k in keys(client, "team/fastapply/eval/versions/"))
    body = client.get_object(Bucket=BUCKET, Key="team/fastapply/tables/eval_scores.parquet")["Body"].read()
    (tmp_path / "scores.parquet").write_bytes(body)
    scores = pl.read_parquet(tmp_path / "scores.parquet")
    assert scores["candidate"].to_list() == ["adapter", "applier", "identity"]
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["lora_adapter"]]
    assert (
        event.materialization.metadata["stored_at"].value
        == f"s3://{BUCKET}/team/fastapply/adapters/lora_adapter"
    )

"""Resources shared by every stage: the settings file and where artifacts are stored."""

import os
import pickle
from pathlib import Path
from typing import Literal

import dagster as dg
import polars as pl
from dagster_polars import PolarsParquetIOManager
from pydantic import Field
from upath import UPath

from fastapply_pipeline.config import (
    ConfigError,
    FastApplyConfig,
    config_path,
    deployment,
    environment_key,
    load_config,
)
from fastapply_pipeline.core.artifacts import LocalStore, S3Store
from fastapply_pipeline.core.artifacts import write_atomically as core_write_atomically
from fastapply_pipeline.defs.training.resources import GPUJobResource


def _is_local(path) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def write_atomically(path, write) -> None:
    """Local files through a temporary file and a rename; an S3 object appears whole or not at all anyway."""
    if _is_local(path):
        core_write_atomically(Path(str(path)), write)
    else:
        write(path)


class ParquetIOManager(PolarsParquetIOManager):
    """Polars DataFrames as parquet (locally or on S3 through universal-pathlib), written atomically.

    dagster-polars also stores a preview of the first rows and `describe()` statistics as metadata;
    for tables of whole source files those are full file contents (min/max of a text column), which
    would bloat the event log, so only the schema, row count and size are kept.
    """

    def get_metadata(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame | None):
        metadata = super().get_metadata(context, obj)
        return {k: v for k, v in metadata.items() if k not in {"table", "stats"}}

    def write_df_to_path(self, context: dg.OutputContext, df: pl.DataFrame, path) -> None:
        write_atomically(
            path, lambda target: super(ParquetIOManager, self).write_df_to_path(context, df, target)
        )


class _AtomicPickleIOManager(dg.UPathIOManager):
    extension = ""  # the paths of Dagster's FilesystemIOManager, so values it wrote stay readable

    def dump_to_path(self, context: dg.OutputContext, obj, path) -> None:
        def dump(target: Path) -> None:
            with target.open("wb") as handle:
                pickle.dump(obj, handle, pickle.HIGHEST_PROTOCOL)

        write_atomically(path, dump)

    def load_from_path(self, context: dg.InputContext, path):
        with path.open("rb") as handle:
            return pickle.load(handle)


class PickleIOManager(dg.ConfigurableIOManagerFactory):
    """Small Python values pickled under `base_dir` (like Dagster's FilesystemIOManager), written atomically."""

    base_dir: str

    def create_io_manager(self, context) -> dg.UPathIOManager:
        return _AtomicPickleIOManager(base_path=UPath(self.base_dir))


class FastApplyResource(dg.ConfigurableResource):
    """fastapply.yaml, read afresh at each use so that edits apply without reloading the code location."""

    config_path: str

    def load(self) -> FastApplyConfig:
        return load_config(self.config_path)


class SecretsResource(dg.ConfigurableResource):
    """API keys and tokens, read from the environment when a step needs one (an LLM request that is not
    in the cache, an endpoint or judge that names its `api_key_env`, a dataset push), never earlier: a
    disabled provider or a cached answer needs no key. Only variable names pass through settings; the
    values are never stored in config, logged or put in metadata. (Dagster's EnvVar fields would show the
    name in the UI too, but cannot be optional: an unset variable fails every run, dagster-io/dagster#16232.)
    """

    source: Literal["environment"] = Field(
        "environment", description="Where keys are read from: the process environment (the one source)."
    )

    def key(self, name: str) -> str | None:
        """The value of the environment variable `name`, or None (core.endpoints.KeySource)."""
        return environment_key(name)


class ArtifactsResource(dg.ConfigurableResource):
    """Folders of artifacts (dataset, adapters, eval charts): the local folder, or S3 in production."""

    root: str
    bucket: str | None = None
    prefix: str = "fastapply"
    endpoint_url: str | None = None
    region: str | None = None

    def path(self, name: str) -> Path:
        """The local folder of the artifact `name` (core.artifacts names them: DATASET, ADAPTER, EVAL)."""
        return Path(self.root) / name

    def store(self) -> LocalStore | S3Store:
        if self.bucket is None:
            return LocalStore(Path(self.root))
        return S3Store(Path(self.root), self.bucket, self.prefix, self.endpoint_url, self.region)

    def s3_settings(self) -> dict | None:
        """What a training job needs to reach the same store (None locally)."""
        if self.bucket is None:
            return None
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
        }


TABLES_DIR = "tables"  # parquet tables under artifacts_dir: <TABLES_DIR>/<asset>/<partition>.parquet
OBJECTS_DIR = "objects"  # pickled values under artifacts_dir: <OBJECTS_DIR>/<asset>/<partition>


def build_resources(config: FastApplyConfig, path: str, env: str | None = None) -> dict[str, object]:
    """The resources of a deployment, chosen by FASTAPPLY_ENV (or `env`); asset code is the same in both.

    local: artifacts, tables and pickled values under `storage.artifacts_dir`.
    prod: tables as parquet and small values as pickles in S3 (`storage.s3`), artifact folders published
    to S3 by their producer and fetched by their consumers; `artifacts_dir` is each machine's staging copy.
    """
    env = env or deployment()
    artifacts = config.artifacts_dir
    common = {
        "fastapply": FastApplyResource(config_path=str(config_path(path))),
        "secrets": SecretsResource(),
        # The training job's launcher, configured by fastapply.yaml's training.gpu section.
        "gpu_job": GPUJobResource(**config.training.gpu.model_dump()),
    }
    if env == "local":
        return {
            **common,
            "artifacts": ArtifactsResource(root=str(artifacts)),
            # Small Python values (e.g. a repo snapshot) are pickled; tables are parquet written by polars.
            "io_manager": PickleIOManager(base_dir=str(artifacts / OBJECTS_DIR)),
            "parquet_io_manager": ParquetIOManager(base_dir=str(artifacts / TABLES_DIR)),
        }
    s3 = config.storage.s3
    if s3 is None:
        raise ConfigError(
            "FASTAPPLY_ENV=prod stores artifacts in S3: add storage.s3 (bucket, prefix, optionally endpoint_url "
            "and region) to fastapply.yaml, or unset FASTAPPLY_ENV for local storage"
        )
    from dagster_aws.s3 import S3PickleIOManager, S3Resource

    client = {k: v for k, v in {"endpoint_url": s3.endpoint_url, "region_name": s3.region}.items() if v}
    # fsspec-shaped (s3fs writes); dagster-polars maps client_kwargs to polars' object_store keys for reads.
    storage_options: dict = {"client_kwargs": client} if client else {}
    if s3.endpoint_url and s3.endpoint_url.startswith("http://"):
        # polars' object_store refuses plain HTTP (MinIO, a moto server) unless told, and the key cannot go
        # in storage_options (s3fs rejects it): its environment variable is the one channel both accept.
        os.environ.setdefault("AWS_ALLOW_HTTP", "true")
    return {
        **common,
        "artifacts": ArtifactsResource(
            root=str(artifacts),
            bucket=s3.bucket,
            prefix=s3.prefix,
            endpoint_url=s3.endpoint_url,
            region=s3.region,
        ),
        "io_manager": S3PickleIOManager(
            s3_resource=S3Resource(**client), s3_bucket=s3.bucket, s3_prefix=f"{s3.prefix}/objects"
        ),
        "parquet_io_manager": ParquetIOManager(
            base_dir=f"s3://{s3.bucket}/{s3.prefix}/tables", storage_options=storage_options or None
        ),
    }

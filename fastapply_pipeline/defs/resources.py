"""Resources shared by every stage: the settings file and where artifacts are stored."""

import dagster as dg
import polars as pl
from dagster_polars import PolarsParquetIOManager

from fastapply_pipeline.config import FastApplyConfig, config_path, load_config
from fastapply_pipeline.defs.training.resources import GPUJobResource


class ParquetIOManager(PolarsParquetIOManager):
    """Polars DataFrames as parquet (locally or on S3 through universal-pathlib).

    dagster-polars also stores a preview of the first rows and `describe()` statistics as metadata;
    for tables of whole source files those are full file contents (min/max of a text column), which
    would bloat the event log, so only the schema, row count and size are kept.
    """

    def get_metadata(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame | None):
        metadata = super().get_metadata(context, obj)
        return {k: v for k, v in metadata.items() if k not in {"table", "stats"}}


class FastApplyResource(dg.ConfigurableResource):
    """fastapply.yaml, read afresh at each use so that edits apply without reloading the code location."""

    config_path: str

    def load(self) -> FastApplyConfig:
        return load_config(self.config_path)


def build_resources(config: FastApplyConfig, path: str) -> dict[str, object]:
    """The resources of the local (embedded) deployment: artifacts in a local folder."""
    artifacts = config.artifacts_dir
    return {
        "fastapply": FastApplyResource(config_path=str(config_path(path))),
        # Small Python values (e.g. a repo snapshot) are pickled; tables are parquet written by polars.
        "io_manager": dg.FilesystemIOManager(base_dir=str(artifacts / "objects")),
        "parquet_io_manager": ParquetIOManager(base_dir=str(artifacts / "tables")),
        # The training job's launcher, configured by fastapply.yaml's training.gpu section.
        "gpu_job": GPUJobResource(**config.training.gpu.model_dump()),
    }

"""Resources shared by every stage: the settings file and where artifacts are stored."""

import dagster as dg
from dagster_polars import PolarsParquetIOManager

from fastapply_pipeline.config import FastApplyConfig, config_path, load_config


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
        "parquet_io_manager": PolarsParquetIOManager(base_dir=str(artifacts / "tables")),
    }

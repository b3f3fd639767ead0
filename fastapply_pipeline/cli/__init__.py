"""The `fastapply` command line, by command group:

- group.py: the click group (`main`) and the error handling every command shares;
- pipeline.py: `run`, `backfill`, `sources` and `ui`, and the helpers that execute runs in the local
  Dagster instance;
- models.py: `apply`, `export` and `eval`, which run models (imported lazily: no torch on start-up).

Importing this package registers every command on `main`.
"""

from fastapply_pipeline.cli import models, pipeline
from fastapply_pipeline.cli.group import config_option, load_settings, main
from fastapply_pipeline.cli.models import EXIT_REFUSED, ModelChoice
from fastapply_pipeline.cli.pipeline import (
    CLI_JOB,
    DEFAULT_SELECTION,
    UI_STOP_SECONDS,
    apply_pools,
    concise_console_logger,
    local_instance,
    owned_runs,
    register_sources,
    root_message,
)

__all__ = [
    "CLI_JOB",
    "DEFAULT_SELECTION",
    "EXIT_REFUSED",
    "UI_STOP_SECONDS",
    "ModelChoice",
    "apply_pools",
    "concise_console_logger",
    "config_option",
    "load_settings",
    "local_instance",
    "main",
    "models",
    "owned_runs",
    "pipeline",
    "register_sources",
    "root_message",
]

"""The code location: every stage's assets, checks, sensors and jobs, with the local resources."""

import os

import dagster as dg

from fastapply_pipeline.config import config_path, load_config
from fastapply_pipeline.defs.automation import (
    automate,
    automation_sensor,
    job_schedules,
    refresh_schedule,
)
from fastapply_pipeline.defs.dataset.assets import fastapply_dataset
from fastapply_pipeline.defs.eval.assets import eval_job, eval_scores
from fastapply_pipeline.defs.partitions import PER_REPO, per_repo_job
from fastapply_pipeline.defs.resources import build_resources
from fastapply_pipeline.defs.snippets.assets import code_snippets
from fastapply_pipeline.defs.sources.assets import cloned_repo
from fastapply_pipeline.defs.sources.sensors import source_repos_sensor
from fastapply_pipeline.defs.training.assets import lora_adapter, train_job
from fastapply_pipeline.defs.triples.assets import edit_triples
from fastapply_pipeline.defs.triples.llm_assets import anthropic_triples, openai_triples

__all__ = [
    "ASSETS",
    "PER_REPO",
    "build_defs",
    "defs",
]  # PER_REPO: the per-repository selection (partitions.py)

ASSETS = [
    cloned_repo,
    code_snippets,
    anthropic_triples,
    openai_triples,
    edit_triples,
    fastapply_dataset,
    lora_adapter,
    eval_scores,
]


def build_defs(path: str | os.PathLike[str] | None = None, *, env: str | None = None) -> dg.Definitions:
    """All definitions for the settings file at `path` (default: $FASTAPPLY_CONFIG or ./), with the
    resources of the deployment `env` (default: $FASTAPPLY_ENV, else local)."""
    file = config_path(path)
    config = load_config(file)  # fail at load time with the field and the fix, not at the first run
    schedules = job_schedules(config)
    if config.automation.refresh_cron:
        schedules.append(refresh_schedule(config))
    return dg.Definitions(
        assets=automate(ASSETS, config),
        jobs=[per_repo_job, train_job, eval_job],
        schedules=schedules,
        sensors=[source_repos_sensor, automation_sensor],
        resources=build_resources(config, str(file), env),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_defs()

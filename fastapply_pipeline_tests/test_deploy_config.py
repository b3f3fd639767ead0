"""The production instance files in docker/ hold configuration Dagster accepts: the instance schema
(Postgres storage, concurrency pools, run monitoring) and each configurable class's own schema (the
Kubernetes and ECS run launchers, S3 compute logs). Nothing is started: no cluster or database runs here.

Reads the schema through Dagster's own instance loader (`dagster._core.instance.config`, a private
module: the public API only loads an instance, which would connect to Postgres)."""

import importlib
import shutil
from pathlib import Path

import pytest
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

pytestmark = pytest.mark.slow  # every test here is slow (see docs/testing.md)

DOCKER = Path(__file__).resolve().parents[1] / "docker"
ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "from-a-secret",
    "DAGSTER_K8S_NAMESPACE": "fastapply",
    "FASTAPPLY_S3_BUCKET": "team-artifacts",
}


@pytest.fixture
def env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def load(tmp_path: Path, name: str, text: str | None = None) -> dict:
    target = tmp_path / name
    if text is None:
        shutil.copyfile(DOCKER / name, target)
    else:
        target.write_text(text)
    config, _ = dagster_instance_config(str(tmp_path), name)
    return config


@pytest.mark.parametrize(
    ("name", "launcher"), [("dagster.k8s.yaml", "K8sRunLauncher"), ("dagster.ecs.yaml", "EcsRunLauncher")]
)
def test_production_instance_files_are_valid(env, tmp_path, name, launcher):
    config = load(tmp_path, name)
    assert "postgres_db" in config["storage"]["postgres"]
    assert config["run_launcher"]["class"] == launcher
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert config["concurrency"]["pools"]["default_limit"] == 1  # the gpu pool: one training at a time
    assert config["run_monitoring"]["enabled"] is True
    for section in ("run_launcher", "compute_logs"):
        part = config[section]
        cls = getattr(importlib.import_module(part["module"]), part["class"])
        result = process_config(cls.config_type(), part["config"])
        assert result.success, result.errors


def test_a_wrong_key_is_caught(env, tmp_path):
    text = (DOCKER / "dagster.k8s.yaml").read_text().replace("run_monitoring:", "run_monitorng:")
    with pytest.raises(DagsterInvalidConfigError):
        load(tmp_path, "dagster.k8s.yaml", text)
    broken = (
        (DOCKER / "dagster.ecs.yaml").read_text().replace("use_current_ecs_task_config", "use_current_task")
    )
    config = load(tmp_path, "dagster.ecs.yaml", broken)
    part = config["run_launcher"]
    cls = getattr(importlib.import_module(part["module"]), part["class"])
    assert not process_config(cls.config_type(), part["config"]).success

"""Shared fixtures: real git repositories built in a temp folder, settings files that point at them, a
Dagster instance, an isolated DAGSTER_HOME. Plain helpers and constants are in helpers.py."""

from pathlib import Path

import dagster as dg
import pytest

from fastapply_pipeline.config import FastApplyConfig, load_config

from .helpers import base_settings, build_mixed_repo, write_config


@pytest.fixture(scope="session")
def mixed_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("sources") / "mixed-repo"
    build_mixed_repo(repo)
    return repo


@pytest.fixture
def make_config(tmp_path):
    """make_config(sources, **overrides) -> (path, FastApplyConfig) for a settings file in tmp_path."""

    def make(sources: list[dict], **overrides) -> tuple[Path, FastApplyConfig]:
        path = write_config(tmp_path / "fastapply.yaml", base_settings(tmp_path, sources, **overrides))
        return path, load_config(path)

    return make


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """DAGSTER_HOME for the `fastapply` command, a fresh folder in tmp_path (not created: the command makes
    it). FASTAPPLY_CONFIG and FASTAPPLY_ENV are unset, so only the arguments a test passes choose the
    settings and the local (folder) storage applies."""
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("FASTAPPLY_CONFIG", raising=False)
    monkeypatch.delenv("FASTAPPLY_ENV", raising=False)
    return home


@pytest.fixture
def instance(tmp_path):
    """A real SQLite Dagster instance in a temp DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@pytest.fixture(autouse=True)
def _isolate_dagster_defs_state_context():
    """Each test starts without a current defs-state storage.

    A DagsterInstance publishes its defs-state storage in a context variable that later definition loads
    read; an instance a test leaves undisposed (tests here create many) leaves that variable pointing at
    a collected instance, and the next test's `get_repository_def()` fails with "undefined DagsterInstance
    weakref". Resetting the variable around each test (Dagster's own setter, a private module) keeps
    tests independent of each other's order.
    """
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield

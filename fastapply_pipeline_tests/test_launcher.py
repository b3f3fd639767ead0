"""The `fastapply` entry point: the CLI it starts runs with the garbage collector on."""

import gc
import importlib.metadata

import pytest

import fastapply_pipeline.cli
from fastapply_pipeline import launcher


def test_the_installed_command_is_the_launcher():
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="fastapply")
    assert script.value == "fastapply_pipeline.launcher:main"


def test_the_cli_runs_with_the_collector_enabled_and_its_exit_passes_through(monkeypatch):
    seen = {}

    def cli():
        seen["enabled"] = gc.isenabled()
        raise SystemExit(3)

    monkeypatch.setattr(fastapply_pipeline.cli, "main", cli)
    try:
        with pytest.raises(SystemExit) as exit_:
            launcher.main()
    finally:
        gc.unfreeze()  # the launcher froze this test process's heap: give it back to the collector
    assert seen == {"enabled": True}
    assert exit_.value.code == 3
    assert gc.isenabled()

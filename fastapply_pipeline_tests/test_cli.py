"""The `fastapply` command: runs land in the local SQLite instance; failures exit non-zero with the reason."""

import os
import subprocess
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS

from .helpers import (
    FASTAPPLY,
    MIT_TEXT,
    base_settings,
    invoke,
    make_repo,
    python_module,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_registers_partitions_and_records_runs(mixed_repo, make_config, home):
    path, _ = make_config([{"path": str(mixed_repo), "name": "mixed"}])
    result = invoke("run", "--config", str(path), "-q")
    assert result.exit_code == 0, result.output
    assert "Registered source_repo partitions: mixed" in result.output
    assert "materialized code_snippets (7 rows)" in result.output
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions(SOURCE_REPO_PARTITIONS) == ["mixed"]
        runs = instance.get_runs()  # newest first: the per-repository run, then the dataset's
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert runs[1].tags["fastapply/source"] == "mixed" and "fastapply/source" not in runs[0].tags
        assert instance.get_latest_materialization_event(dg.AssetKey("code_snippets")) is not None
        assert instance.get_latest_materialization_event(dg.AssetKey("fastapply_dataset")) is not None


@pytest.mark.slow
def test_select_limits_the_assets(mixed_repo, make_config, home):
    path, _ = make_config([{"path": str(mixed_repo), "name": "mixed"}])
    result = invoke("run", "--config", str(path), "--select", "cloned_repo", "-q")
    assert result.exit_code == 0, result.output
    assert "materialized cloned_repo" in result.output and "code_snippets" not in result.output
    bad = invoke("run", "--config", str(path), "--select", "no_such_asset")
    assert bad.exit_code != 0 and "--select 'no_such_asset'" in bad.output


@pytest.mark.slow
def test_a_failing_source_exits_non_zero_and_the_others_still_run(mixed_repo, tmp_path, make_config, home):
    path, _ = make_config(
        [
            {"path": str(tmp_path / "missing"), "name": "broken"},
            {"path": str(mixed_repo), "name": "good"},
        ]
    )
    result = invoke("run", "--config", str(path), "-q")
    assert result.exit_code == 1
    assert "broken: cloned_repo: FileNotFoundError: source 'broken'" in result.output
    assert "materialized code_snippets (7 rows)" in result.output  # the good source still ran


@pytest.mark.slow
def test_partition_option_and_unknown_partition(mixed_repo, make_config, home):
    path, _ = make_config([{"path": str(mixed_repo), "name": "mixed"}])
    assert invoke("run", "--config", str(path), "--partition", "mixed", "-q").exit_code == 0
    result = invoke("run", "--config", str(path), "--partition", "nope")
    assert result.exit_code != 0 and "--partition nope: no such source" in result.output


def test_invalid_settings_exit_with_the_field(tmp_path, home):
    bad = tmp_path / "fastapply.yaml"
    bad.write_text("sources:\n  - url: https://github.com/a/b\nsnippets:\n  tokenizer: gpt2\n")
    result = invoke("run", "--config", str(bad))
    assert result.exit_code == 1
    assert "snippets.tokenizer" in result.output and "cl100k_base" in result.output


def test_a_token_in_a_source_url_is_refused_and_never_printed(tmp_path, home):
    path = write_config(
        tmp_path / "fastapply.yaml",
        base_settings(tmp_path, [{"url": "https://ghp_s3cr3tT0k3n@github.com/o/r.git", "name": "r"}]),
    )
    result = invoke("sources", "list", "--config", path)
    assert result.exit_code == 1
    assert "sources.0" in result.output and "credential helper" in result.output
    assert "s3cr3t" not in result.output


@pytest.mark.slow
def test_sources_list_and_remove(mixed_repo, make_config, home):
    path, _ = make_config([{"path": str(mixed_repo), "name": "mixed"}])
    invoke("run", "--config", str(path), "--select", "cloned_repo", "-q")
    assert "mixed\t" in invoke("sources", "list", "--config", str(path)).output
    removed = invoke("sources", "remove", "--config", str(path), "mixed")
    assert removed.exit_code == 0 and "still in the settings file" in removed.output
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions(SOURCE_REPO_PARTITIONS) == []
    assert invoke("sources", "remove", "--config", str(path), "mixed").exit_code != 0


@pytest.mark.slow
def test_project_dagster_yaml_configures_pools_and_run_monitoring(tmp_path, home):
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 120
        assert str(instance.storage_directory()).startswith(str(home))


@pytest.mark.slow
def test_shipped_settings_run_offline_end_to_end(tmp_path):
    """`fastapply run` (the console script) with the shipped fastapply.yaml on this repository."""
    shipped = yaml.safe_load((ROOT / "fastapply.yaml").read_text())
    shipped["sources"][0]["path"] = str(ROOT)  # the file's own `path: .`, made absolute for its new folder
    shipped["storage"] = base_settings(tmp_path, [])["storage"]
    config = write_config(tmp_path / "fastapply.yaml", shipped)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [FASTAPPLY, "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "[fastapply-pipeline] anthropic_triples, cloned_repo, code_snippets, edit_triples, openai_triples"
        in proc.stdout
    )
    assert "fastapply_dataset, rejected_triples ..." in proc.stdout
    assert (tmp_path / "artifacts" / "dataset" / "README.md").is_file()
    assert "materialized code_snippets" in proc.stdout and "Done: 2 run(s)" in proc.stdout


@pytest.mark.slow
def test_an_llm_generator_without_its_key_fails_naming_the_variable(
    mixed_repo, make_config, home, monkeypatch
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path, _ = make_config(
        [{"path": str(mixed_repo), "name": "mixed"}],
        triples={
            "generators": ["structural", "openai"],
            "llm": {"openai": {"base_url": "http://127.0.0.1:9"}},
        },
    )
    result = invoke("run", "--config", str(path), "-q")
    assert result.exit_code == 1
    assert "openai_triples" in result.output and "OPENAI_API_KEY is not set" in result.output


@pytest.mark.slow
def test_backfill_rebuilds_a_torn_table_and_a_partition_whose_latest_run_failed(
    mixed_repo, tmp_path, make_config, home
):
    """Before: "Nothing to backfill" over a 0-byte table or a failed latest run, then a failing dataset."""
    path, config = make_config([{"path": str(mixed_repo), "name": "mixed"}])
    assert invoke("run", "--config", str(path), "-q").exit_code == 0
    assert "Nothing to backfill" in invoke("backfill", "--config", str(path), "-q").output

    table = config.artifacts_dir / "tables" / "edit_triples" / "mixed.parquet"
    good = table.read_bytes()
    table.write_bytes(good[: len(good) // 2])  # what a kill or a full disk left before writes were atomic
    result = invoke("backfill", "--config", str(path), "-q")
    assert result.exit_code == 0, result.output
    assert f"Rebuilding mixed: its edit_triples table {table} is unreadable" in result.output
    assert "materialized edit_triples" in result.output and "materialized fastapply_dataset" in result.output
    assert "Nothing to backfill" in invoke("backfill", "--config", str(path), "-q").output

    # The latest run of the partition failed (the source was gone at the time): backfill builds it again.
    moved = tmp_path / "moved-away"
    mixed_repo.rename(moved)
    try:
        assert invoke("run", "--config", str(path), "-q", "--partition", "mixed").exit_code == 1
    finally:
        moved.rename(mixed_repo)
    result = invoke("backfill", "--config", str(path), "-q")
    assert result.exit_code == 0, result.output
    assert "Rebuilding mixed: its latest run" in result.output and "failure" in result.output
    assert "Nothing to backfill" in invoke("backfill", "--config", str(path), "-q").output


def _other_repo(tmp_path) -> Path:
    files = {"LICENSE": MIT_TEXT, **{f"pkg/other_{i}.py": python_module(f"other{i}", 4) for i in range(3)}}
    return make_repo(tmp_path / "other-repo", files, "other")


@pytest.mark.slow
def test_a_name_that_points_elsewhere_is_rebuilt_and_remove_deletes_what_it_built(
    mixed_repo, tmp_path, make_config, home
):
    """Before: a source re-pointed (or removed and re-added) under the same name kept the old repo's rows."""
    other = _other_repo(tmp_path)
    path, config = make_config([{"path": str(mixed_repo), "name": "lib"}])
    assert invoke("run", "--config", str(path), "-q").exit_code == 0
    old_rows = pl.read_parquet(config.artifacts_dir / "tables" / "code_snippets" / "lib.parquet")

    path, config = make_config([{"path": str(other), "name": "lib"}])
    result = invoke("backfill", "--config", str(path), "-q")
    assert result.exit_code == 0, result.output
    assert f"Rebuilding lib: it was built from {mixed_repo}, the settings now say {other}" in result.output
    new_rows = pl.read_parquet(config.artifacts_dir / "tables" / "code_snippets" / "lib.parquet")
    assert set(new_rows["path"]) == {f"pkg/other_{i}.py" for i in range(3)}
    assert not set(new_rows["path"]) & set(old_rows["path"])
    assert "Nothing to backfill" in invoke("backfill", "--config", str(path), "-q").output

    removed = invoke("sources", "remove", "--config", str(path), "lib")
    assert removed.exit_code == 0, removed.output
    table = config.artifacts_dir / "tables" / "code_snippets" / "lib.parquet"
    assert f"deleted {table}" in removed.output and "kept: its runs" in removed.output
    assert not table.exists()
    # Added back (the settings still name it): its tables are gone, so backfill builds it again.
    result = invoke("backfill", "--config", str(path), "-q")
    assert result.exit_code == 0, result.output
    assert "Rebuilding lib: its" in result.output and "is missing" in result.output
    assert table.exists()

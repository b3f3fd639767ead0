"""A no-op `fastapply run` is nearly free: what was built from the same code, settings and inputs is skipped.

Real git repositories, a real SQLite instance under DAGSTER_HOME, the CLI in-process; the LLM providers are
the stand-in on 127.0.0.1 driven by the official SDKs (sync and batch), so "no request sent" is counted
on a real HTTP server.
"""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from fastapply_pipeline.core.fingerprint import code_version, digest
from fastapply_pipeline.definitions import PER_REPO, build_defs
from fastapply_pipeline_tests.helpers import (
    MIT_TEXT,
    base_settings,
    commit_all,
    invoke,
    make_repo,
    python_module,
    ts_module,
    write_config,
    write_files,
)
from fastapply_pipeline_tests.standin import StandIn


def small_repo(root: Path, name: str, modules: int = 3) -> Path:
    files = {"LICENSE": MIT_TEXT}
    files |= {f"pkg/{name}_{i}.py": python_module(f"{name}{i}", 3 + i) for i in range(modules)}
    files |= {f"web/{name}_{i}.ts": ts_module(f"{name}{i}", 3 + i) for i in range(modules)}
    return make_repo(root / name, files, "modules")


def run_count(home: Path) -> int:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return len(instance.get_runs())


def llm_triples(server, apis: dict[str, str]) -> dict:
    providers = {
        name: {
            "base_url": server.anthropic_url if name == "anthropic" else server.openai_url,
            "api": api,
            "timeout_seconds": 5.0,
            "poll_interval_seconds": 0.05,
            "requests_per_minute": 60_000,
        }
        for name, api in apis.items()
    }
    return {
        "generators": ["structural", *apis],
        "structural": {"attempts_per_file": 1},
        "llm": {"files_per_repo": None, "edits_per_file": 1, **providers},
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "apis", [{"anthropic": "sync", "openai": "batch"}, {"anthropic": "batch", "openai": "sync"}]
)
def test_a_rerun_with_nothing_changed_starts_no_run_and_sends_no_request(tmp_path, home, monkeypatch, apis):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    repo = small_repo(tmp_path, "alpha")
    with StandIn() as server:
        data = base_settings(
            tmp_path, [{"path": str(repo), "name": "alpha"}], triples=llm_triples(server, apis)
        )
        path = write_config(tmp_path / "fastapply.yaml", data)
        first = invoke("run", "--config", str(path), "-q")
        assert first.exit_code == 0, first.output
        assert (
            "materialized anthropic_triples" in first.output
            and "materialized fastapply_dataset" in first.output
        )
        sent, runs = len(server.requests), run_count(home)
        assert sent > 0 and runs == 2

        second = invoke("run", "--config", str(path), "-q")
        assert second.exit_code == 0, second.output
        assert len(server.requests) == sent  # no API call, sync or batch
        assert run_count(home) == runs  # no run launched, not even the dataset's
        assert "materialized" not in second.output
        assert "[1/2] [alpha] " in second.output and "up to date (commit " in second.output
        assert "[2/2] fastapply_dataset, rejected_triples: up to date" in second.output
        assert "Done: 0 run(s), 2 up to date (skipped; --force rebuilds)" in second.output

        forced = invoke("run", "--config", str(path), "-q", "--force")
        assert forced.exit_code == 0, forced.output
        assert (
            "materialized edit_triples" in forced.output and "materialized fastapply_dataset" in forced.output
        )
        assert run_count(home) == runs + 2
        # Forced, the LLM steps ran again; their answers come from the content-addressed cache.
        assert len(server.requests) == sent


@pytest.mark.slow
def test_a_new_commit_rebuilds_its_source_and_the_dataset_only(tmp_path, home):
    alpha, beta = small_repo(tmp_path, "alpha"), small_repo(tmp_path, "beta")
    data = base_settings(
        tmp_path, [{"path": str(alpha), "name": "alpha"}, {"path": str(beta), "name": "beta"}]
    )
    path = write_config(tmp_path / "fastapply.yaml", data)
    assert invoke("run", "--config", str(path), "-q").exit_code == 0

    write_files(beta, {"pkg/extra.py": python_module("extra", 4)})
    commit_all(beta, "one more module")
    result = invoke("run", "--config", str(path), "-q")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("[1/3] [alpha]") and "up to date" in line for line in lines)
    assert "[2/3] [beta] anthropic_triples, cloned_repo, code_snippets, edit_triples" in result.output
    assert "[3/3] fastapply_dataset, rejected_triples ..." in result.output  # it reads beta's new rows
    assert "Done: 2 run(s), 1 up to date" in result.output


@pytest.mark.slow
def test_a_changed_setting_rebuilds_from_the_first_stage_that_reads_it(tmp_path, home):
    repo = small_repo(tmp_path, "alpha")
    data = base_settings(tmp_path, [{"path": str(repo), "name": "alpha"}])
    path = write_config(tmp_path / "fastapply.yaml", data)
    assert invoke("run", "--config", str(path), "-q").exit_code == 0

    # A dataset setting: the per-repository assets are up to date, only the dataset is rebuilt.
    write_config(path, {**data, "dataset": {"split": {"test": 0.5, "validation": 0.0}}})
    result = invoke("run", "--config", str(path), "-q")
    assert result.exit_code == 0, result.output
    alpha = next(line for line in result.output.splitlines() if line.startswith("[1/2] [alpha]"))
    assert "up to date" in alpha and "skipped" in alpha
    assert "materialized fastapply_dataset" in result.output
    assert "materialized cloned_repo" not in result.output

    # A triples setting: cloned_repo and code_snippets stay, the triples and the dataset are rebuilt.
    data = {**data, "dataset": {"split": {"test": 0.5, "validation": 0.0}}}
    write_config(path, {**data, "triples": {"snippet_styles": {"anchored": 1}}})
    result = invoke("run", "--config", str(path), "-q")
    assert result.exit_code == 0, result.output
    assert "[1/2] [alpha] up to date, not rebuilt: cloned_repo, code_snippets" in result.output
    assert "materialized edit_triples" in result.output and "materialized fastapply_dataset" in result.output
    assert "materialized code_snippets" not in result.output

    # A setting no asset reads (the refresh schedule): nothing to do.
    write_config(
        path,
        {
            **data,
            "triples": {"snippet_styles": {"anchored": 1}},
            "automation": {"refresh_cron": "0 4 * * 2"},
        },
    )
    result = invoke("run", "--config", str(path), "-q")
    assert result.exit_code == 0 and "Done: 0 run(s), 2 up to date" in result.output, result.output


@pytest.mark.slow
def test_changed_code_rebuilds_everything(tmp_path, home, monkeypatch):
    repo = small_repo(tmp_path, "alpha")
    path = write_config(
        tmp_path / "fastapply.yaml", base_settings(tmp_path, [{"path": str(repo), "name": "alpha"}])
    )
    assert invoke("run", "--config", str(path), "-q").exit_code == 0
    # What a new version of the package (or of polars, a tokenizer...) gives: another code version.
    monkeypatch.setattr("fastapply_pipeline.uptodate.code_version", lambda: "another version")
    result = invoke("run", "--config", str(path), "-q")
    assert result.exit_code == 0, result.output
    assert "materialized cloned_repo" in result.output and "materialized fastapply_dataset" in result.output
    assert "up to date" not in result.output


@pytest.mark.slow
def test_a_build_that_cannot_be_reused_is_rebuilt(tmp_path, home):
    """A torn table, a deleted dataset folder, or a materialization made outside the CLI (the UI, a
    test's dg.materialize: no fingerprint) are rebuilt, even with the same code and settings."""
    repo = small_repo(tmp_path, "alpha")
    path = write_config(
        tmp_path / "fastapply.yaml", base_settings(tmp_path, [{"path": str(repo), "name": "alpha"}])
    )
    assert invoke("run", "--config", str(path), "-q").exit_code == 0

    table = tmp_path / "artifacts" / "tables" / "code_snippets" / "alpha.parquet"
    table.write_bytes(table.read_bytes()[:100])  # torn
    result = invoke("run", "--config", str(path), "-q")
    assert "Rebuilding alpha: its code_snippets table" in result.output and "unreadable" in result.output
    assert "materialized code_snippets" in result.output and result.exit_code == 0, result.output

    shutil.rmtree(tmp_path / "artifacts" / "dataset")
    result = invoke("run", "--config", str(path), "-q")
    assert result.exit_code == 0, result.output
    assert "[1/2] [alpha]" in result.output and "materialized fastapply_dataset" in result.output
    assert "materialized cloned_repo" not in result.output

    with dg.DagsterInstance.from_config(str(home)) as instance:  # the UI's way: no fingerprint tags
        defs = build_defs(path)
        assert dg.materialize(
            defs.assets,
            instance=instance,
            resources=defs.resources,
            selection=PER_REPO,
            partition_key="alpha",
        ).success
    result = invoke("run", "--config", str(path), "-q")
    assert result.exit_code == 0, result.output
    assert "materialized cloned_repo" in result.output and "materialized edit_triples" in result.output
    # Rebuilt from the same inputs, the per-repository assets get the fingerprints the dataset was
    # built from: the dataset stays up to date.
    assert "[2/2] fastapply_dataset, rejected_triples: up to date" in result.output


@pytest.mark.slow
def test_an_unreachable_source_is_built_not_skipped(tmp_path, home):
    repo = small_repo(tmp_path, "alpha")
    path = write_config(
        tmp_path / "fastapply.yaml", base_settings(tmp_path, [{"path": str(repo), "name": "alpha"}])
    )
    assert invoke("run", "--config", str(path), "-q").exit_code == 0
    shutil.rmtree(repo)
    result = invoke("run", "--config", str(path), "-q")
    assert result.exit_code == 1  # cloned_repo says why, instead of "up to date" on stale data
    assert "alpha: cloned_repo:" in result.output and "up to date" not in result.output.split("[2/2]")[0]


def test_code_version_follows_every_python_file_of_the_package(tmp_path):
    package = Path(__file__).resolve().parents[1] / "fastapply_pipeline"
    copy = tmp_path / "fastapply_pipeline"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_version.__wrapped__(copy)
    assert code_version.__wrapped__(copy) == before  # stable
    (copy / "core" / "render.py").write_text((copy / "core" / "render.py").read_text() + "\n# changed\n")
    assert code_version.__wrapped__(copy) != before
    (copy / "core" / "render.py").unlink()
    assert code_version.__wrapped__(copy) != before
    assert digest({"a": 1, "b": [2]}) == digest({"b": [2], "a": 1})  # settings order does not matter

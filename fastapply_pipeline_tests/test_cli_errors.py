"""Rough edges of the command line: each bad input or odd state is one line naming the fix, never a traceback.

Every test here failed before its fix (a traceback, a silent wrong value, a crash or a hang).
"""

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from .helpers import DAGSTER, FASTAPPLY, base_settings, init_repo, invoke, write_config


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1, result.output
    for fragment in fragments:
        assert fragment in error[0], error[0]


@pytest.mark.slow
def test_selecting_one_asset_of_a_step_selects_its_siblings(mixed_repo, make_config, home):
    path, _ = make_config([{"path": str(mixed_repo), "name": "mixed"}])
    assert invoke("run", "--config", str(path), "-q").exit_code == 0
    # --force: the dataset is up to date after the first run, and this is about what a rebuild selects
    result = invoke("run", "--config", str(path), "--select", "fastapply_dataset", "-q", "--force")
    assert result.exit_code == 0, result.output
    assert "Also selected rejected_triples: written by the same step" in result.output
    assert (
        "materialized fastapply_dataset" in result.output and "DagsterInvalidSubsetError" not in result.output
    )


@pytest.mark.slow
def test_a_selection_whose_input_was_never_built_fails_before_running(mixed_repo, make_config, home):
    path, _ = make_config([{"path": str(mixed_repo), "name": "mixed"}])
    result = invoke("run", "--config", str(path), "--select", "cloned_repo+", "-q")
    one_line_error(result, "edit_triples reads", "never materialized for mixed", "fastapply run")


@pytest.mark.slow
def test_a_failing_step_prints_its_cause_not_its_stack_trace(tmp_path, make_config, home):
    path, _ = make_config([{"path": str(tmp_path / "missing"), "name": "broken"}])
    for flags in (["-q"], []):
        result = subprocess.run(
            [FASTAPPLY, "run", "--config", str(path), *flags], capture_output=True, text=True, timeout=300
        )
        output = result.stdout + result.stderr
        assert result.returncode == 1
        assert "broken: cloned_repo: FileNotFoundError: source 'broken'" in output
        assert "Stack Trace" not in output and "Traceback" not in output and 'File "' not in output
        assert len(output.splitlines()) < 50, output  # (Dagster's first-run telemetry banner is ~20 of them)


def test_settings_that_are_not_utf8_or_repeat_a_key_are_one_line_errors(tmp_path, home):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("sources:\n  - path: .  # café\n".encode("latin-1"))
    one_line_error(invoke("run", "--config", str(latin1)), "not UTF-8", "save the file as UTF-8")

    twice = tmp_path / "twice.yaml"
    twice.write_text("sources:\n  - path: .\nseed: 1\nseed: 2\n")
    one_line_error(invoke("run", "--config", str(twice)), "'seed' is set twice", "line 3")


@pytest.mark.slow
def test_a_wrong_deployment_or_prod_without_s3_is_one_line(tmp_path, make_config, home, monkeypatch):
    path, _ = make_config([{"path": ".", "name": "here"}])
    monkeypatch.setenv("FASTAPPLY_ENV", "staging")
    one_line_error(invoke("run", "--config", str(path)), "FASTAPPLY_ENV='staging'", "use local")
    monkeypatch.setenv("FASTAPPLY_ENV", "prod")
    one_line_error(invoke("run", "--config", str(path)), "add storage.s3")


def test_apply_into_a_missing_folder_and_eval_of_a_torn_file_are_one_line(tmp_path, home):
    original, snippet = tmp_path / "a.py", tmp_path / "s.py"
    original.write_text("def f():\n    return 1\n")
    snippet.write_text("def f():\n    return 2\n")
    result = invoke("apply", str(original), str(snippet), "-o", str(tmp_path / "missing" / "dir" / "x.py"))
    one_line_error(result, "missing/dir does not exist")

    torn = tmp_path / "rows.parquet"
    torn.write_bytes(b"PAR1 half a file")
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"original_code": "a", "update_snippet": \n')
    for data in (torn, jsonl):
        result = invoke("eval", "--data", str(data))
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert f"{data} is not a readable" in result.output


@pytest.mark.slow
def test_an_empty_repository_says_it_has_no_commits(tmp_path, make_config, home):
    empty = tmp_path / "empty"
    init_repo(empty)
    path, _ = make_config([{"path": str(empty), "name": "empty"}])
    result = invoke("run", "--config", str(path), "--select", "cloned_repo", "-q")
    assert result.exit_code == 1
    assert "the repository has no commits yet" in result.output
    assert "couldn't find remote ref" not in result.output


@pytest.mark.slow
def test_two_first_runs_at_once_on_a_fresh_home_both_succeed(mixed_repo, tmp_path):
    path = write_config(tmp_path / "fastapply.yaml", base_settings(tmp_path, [{"path": str(mixed_repo)}]))
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "fresh-home")}
    command = [FASTAPPLY, "run", "--config", str(path), "--select", "cloned_repo", "-q"]
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert not any("already exists" in output for output in outputs)


@pytest.mark.slow
def test_ui_stops_promptly_on_sigterm(tmp_path):
    config = tmp_path / "fastapply.yaml"
    config.write_text(yaml.safe_dump(base_settings(tmp_path, [{"path": "."}])))
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "FASTAPPLY_CONFIG": str(config)}
    port = 3000 + os.getpid() % 2000
    proc = subprocess.Popen(
        [FASTAPPLY, "ui", "--config", str(config), "-m", "fastapply_pipeline.definitions", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the UI never came up"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_full_disk_under_dagster_home_is_one_line(mixed_repo, tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("needs a small tmpfs (mount as root) to fill")
    try:
        filler = disk / "filler"
        with filler.open("wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError:
                pass
        path = write_config(tmp_path / "fastapply.yaml", base_settings(tmp_path, [{"path": str(mixed_repo)}]))
        result = subprocess.run(
            [FASTAPPLY, "run", "--config", str(path), "-q"],
            env={**os.environ, "DAGSTER_HOME": str(disk / "home")},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 1
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        assert "no space left on the device" in result.stderr
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.slow
def test_dagster_definitions_validate_works_in_the_project_root_without_dagster_home():
    """Before: the project's dagster.yaml read the unset DAGSTER_HOME and the command failed."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    result = subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "fastapply_pipeline.definitions"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr

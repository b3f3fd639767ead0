"""anthropic_triples, openai_triples and edit_triples materialized through Dagster against the stand-in.

The official SDKs talk HTTP to `standin.StandIn` on 127.0.0.1, which injects faults into about 30% of
the requests. Nothing is mocked.
"""

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fastapply_pipeline.definitions import PER_REPO, build_defs
from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS
from fastapply_pipeline_tests.helpers import (
    FAKE_AWS,
    FASTAPPLY,
    MIT_TEXT,
    base_settings,
    commit_all,
    init_repo,
    python_module,
    ts_module,
    write_config,
    write_files,
)
from fastapply_pipeline_tests.standin import StandIn

pytestmark = pytest.mark.slow  # every test here is slow (see docs/testing.md)

SECRETS = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG")
# About 30% of requests get a fault: transient ones (sync: retried by the SDK) or ones in the answer.
FAULTS = {
    "rate_limit": 0.06,
    "server_error": 0.04,
    "overloaded": 0.04,
    "slow": 0.02,
    "truncated": 0.04,
    "malformed": 0.04,
    "disagree": 0.06,
    "errored": 0.06,
    "expired": 0.04,
    "missing": 0.04,
}
REJECTIONS = {
    "truncated": "truncated",
    "malformed": "malformed_missing_update_snippet",
    "errored": "batch_errored",  # then the provider's error code
    "expired": "batch_expired",
    "missing": "batch_missing_result",
}
FILES = 50  # x 2 languages x 3 edits = 300 requests


@pytest.fixture(scope="module")
def llm_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("sources") / "llm-repo"
    init_repo(repo)
    files = {"LICENSE": MIT_TEXT, "config/settings.py": "import os\n\n" + FAKE_AWS}
    files |= {f"pkg/mod_{i}.py": python_module(f"mod{i}", 3 + i % 4) for i in range(FILES)}
    files |= {f"web/view_{i}.ts": ts_module(f"view{i}", 3 + i % 3) for i in range(FILES)}
    write_files(repo, files)
    commit_all(repo, "modules")
    return repo


def settings(tmp_path, repo, server, apis, **llm):
    providers = {
        name: {
            "base_url": server.anthropic_url if name == "anthropic" else server.openai_url,
            "api": api,
            "timeout_seconds": 1.0,
            "max_retries": 6,
            "poll_interval_seconds": 0.05,
            "concurrency": 8,
            "requests_per_minute": 60_000,
        }
        for name, api in apis.items()
    }
    triples = {
        "generators": ["structural", *apis],
        "structural": {"attempts_per_file": 1},
        "llm": {"files_per_repo": None, "edits_per_file": 3, **providers, **llm},
    }
    data = base_settings(tmp_path, [{"path": str(repo), "name": "llm"}], triples=triples)
    return write_config(tmp_path / "fastapply.yaml", data)


def materialize(path, instance):
    defs = build_defs(path)
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["llm"])
    result = dg.materialize(
        defs.assets, instance=instance, resources=defs.resources, selection=PER_REPO, partition_key="llm"
    )
    assert result.success
    metadata = {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    return metadata, checks


def tables(tmp_path):
    root = tmp_path / "artifacts" / "tables"
    return {
        name: pl.read_parquet(root / name / "llm.parquet")
        for name in ("anthropic_triples", "openai_triples", "edit_triples")
    }


@pytest.mark.parametrize(
    "apis", [{"anthropic": "sync", "openai": "batch"}, {"anthropic": "batch", "openai": "sync"}]
)
def test_llm_generators_end_to_end_with_faults(tmp_path, llm_repo, instance, monkeypatch, apis):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-e2e")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-e2e")
    with StandIn(faults=FAULTS, slow_seconds=1.5, seed=len(apis["anthropic"])) as server:
        path = settings(tmp_path, llm_repo, server, apis)
        metadata, checks = materialize(path, instance)
        assert all(checks.values()), checks
        first = tables(tmp_path)
        llm_rows = pl.concat([first["anthropic_triples"], first["openai_triples"]])

        # Every planned request ends as exactly one row: 100 eligible files x 3 goals (the secret file is out).
        assert llm_rows.height == 300 and llm_rows["request_key"].n_unique() == 300
        assert 0.6 < first["anthropic_triples"].height / 300 < 0.8  # the 70/30 mix
        assert set(llm_rows["generator"]) == {"anthropic", "openai"}
        assert set(llm_rows["api"]) == {"sync", "batch"}

        # Each injected answer fault is accounted for under its own reason; the rest are ok.
        faults = server.answer_faults()
        reasons = Counter(r.split(":")[0] for r in llm_rows.filter(pl.col("status") != "ok")["reason"])
        expected = Counter({REJECTIONS[f]: n for f, n in faults.items() if f in REJECTIONS})
        expected["applier_disagrees"] = faults["disagree"]
        assert reasons == +expected
        assert 0.2 < (sum(faults.values()) + sum(server.injected.values())) / 300 < 0.4  # about 30% faults
        # faults are drawn per request (4 % `missing` each): one batch fault of some kind, not each kind, is sure
        # (a run with no `missing` result among ~90 batch requests failed once in the suite)
        assert server.injected["rate_limit"] and faults["disagree"]
        assert faults["missing"] + faults["errored"] + faults["expired"]
        ok = llm_rows.filter(pl.col("status") == "ok")
        assert ok.height == 300 - sum(faults.values())
        assert ok["update_snippet"].is_not_null().all() and ok["final_code"].is_not_null().all()

        # edit_triples holds the ok and flagged LLM rows next to the structural ones.
        triples = first["edit_triples"]
        llm_kept = triples.filter(pl.col("generator").is_in(["anthropic", "openai"]))
        assert llm_kept.height == ok.height + faults["disagree"]
        assert set(llm_kept["flag"].drop_nulls()) == {"applier_disagrees"}
        assert set(llm_kept["model"]) == {"claude-sonnet-4-6", "gpt-4.1"}
        assert (triples["generator"] == "structural").any()
        rejected = metadata["edit_triples"]["rejected"]
        assert sum(n for k, n in rejected.items() if k.startswith(("anthropic:", "openai:"))) == sum(
            n for f, n in faults.items() if f in REJECTIONS
        )

        # Usage and cost are reported per provider; a planted secret never left the machine.
        for name in apis:
            meta = metadata[f"{name}_triples"]
            assert (
                meta["requests_sent"] == first[f"{name}_triples"].height and meta["requests_from_cache"] == 0
            )
            assert meta["cost_usd_this_run"] > 0 and meta["input_tokens"] > 0
            assert meta["api"] == apis[name] and "est. cost (USD)" in meta["usage"]
        # code_snippets already dropped the secret file; the planner's own guard is tested in test_llm_core.
        assert all(metadata[f"{n}_triples"]["skipped_files"] == "none" for n in apis)
        bodies = b"".join(r.body for r in server.requests) + b"".join(server.files.values())
        assert b"pkg/mod_1.py" in bodies and not any(secret.encode() in bodies for secret in SECRETS)
        assert b"sk-ant-e2e" not in bodies and b"sk-openai-e2e" not in bodies

        # A second materialization makes no request at all (keys removed to prove it) and changes nothing.
        seen = len(server.requests)
        monkeypatch.delenv("ANTHROPIC_API_KEY")
        monkeypatch.delenv("OPENAI_API_KEY")
        again, checks = materialize(path, instance)
        assert all(checks.values())
        assert len(server.requests) == seen
        for name in apis:
            assert again[f"{name}_triples"]["requests_sent"] == 0
            assert again[f"{name}_triples"]["cost_usd_this_run"] == 0
        second = tables(tmp_path)
        for name, table in first.items():  # the same rows, now answered from the cache
            columns = [c for c in table.columns if c != "cached"]
            assert second[name].select(columns).equals(table.select(columns))
        assert all(second[f"{n}_triples"]["cached"].all() for n in apis)


def test_a_killed_run_resumes_its_batch_instead_of_paying_again(tmp_path, llm_repo, instance, monkeypatch):
    """`fastapply run` is killed (SIGKILL) while its batch is processing; the next run polls that batch."""
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-e2e", "DAGSTER_HOME": str(tmp_path / "home")}
    with StandIn() as server:
        server.hold_batches.set()
        path = settings(tmp_path, llm_repo, server, {"anthropic": "batch"}, edits_per_file=1)
        proc = subprocess.Popen(
            [FASTAPPLY, "run", "--config", str(path), "-q"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not server.calls("GET", r"/v1/messages/batches/[\w-]+"):  # created, and being polled
                assert proc.poll() is None and time.monotonic() < deadline, "the run ended before polling"
                time.sleep(0.1)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        (created,) = server.calls("POST", "/v1/messages/batches")
        (batch_id,) = server.batches

        server.hold_batches.clear()
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-e2e")
        metadata, checks = materialize(path, instance)
        assert all(checks.values())
        assert server.calls("POST", "/v1/messages/batches") == [created]  # no second batch
        assert metadata["anthropic_triples"]["batches_resumed"] == batch_id
        assert metadata["anthropic_triples"]["batches_created"] == "none"
        table = tables(tmp_path)["anthropic_triples"]
        assert table.height > 0 and set(table["status"]) == {"ok"}


def test_a_run_killed_in_an_llm_step_never_blocks_the_next_on_the_same_instance(tmp_path, llm_repo):
    """kill -9 while `anthropic_triples` holds the `anthropic` pool slot; `fastapply run` again, same home.

    The dead run stays STARTED in the instance and keeps its pool slot (limit 1): before the fix the second
    run's step waited for it forever. Now the second run marks it failed, frees the slot and finishes.
    """
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-e2e", "DAGSTER_HOME": str(tmp_path / "home")}
    command = [FASTAPPLY, "run", "-q"]
    with StandIn(latency=0.3) as server:
        path = settings(tmp_path, llm_repo, server, {"anthropic": "sync"}, edits_per_file=1)
        command += ["--config", str(path)]
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 120
            while len(server.calls("POST", "/v1/messages")) < 3:  # inside the step, holding the slot
                assert proc.poll() is None and time.monotonic() < deadline, "ended before the LLM step"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

        server.latency = 0.0
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "Marked run" in second.stdout and "the process running it is gone" in second.stdout
        table = tables(tmp_path)["anthropic_triples"]
        assert table.height == 2 * FILES  # every planned request has its row
        assert set(table["status"]) == {"ok"}


@pytest.mark.parametrize(
    ("provider", "create_path"), [("anthropic", "/v1/messages/batches"), ("openai", "/v1/batches")]
)
def test_a_run_killed_during_the_batch_create_call_never_creates_a_second_batch(
    tmp_path, llm_repo, provider, create_path
):
    """kill -9 after the provider created the batch but before its id reached the run; run again.

    The id was never saved: before the fix the re-run created (and paid for) a second batch. Now the intent
    saved before the call makes the re-run look for the batch on the provider and adopt it.
    """
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": "sk-ant-e2e",
        "OPENAI_API_KEY": "sk-openai-e2e",
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    with StandIn() as server:
        server.hold_creates.set()
        path = settings(tmp_path, llm_repo, server, {provider: "batch"}, edits_per_file=1)
        command = [FASTAPPLY, "run", "-q", "--config", str(path)]
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 120
            while not server.calls("POST", create_path):  # the provider has the batch; the run waits
                assert proc.poll() is None and time.monotonic() < deadline, "ended before creating"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        server.hold_creates.clear()
        (batch_id,) = server.batches

        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        assert len(server.calls("POST", create_path)) == 1  # no second batch
        assert list(server.batches) == [batch_id]
        table = tables(tmp_path)[f"{provider}_triples"]
        assert table.height == 2 * FILES and set(table["status"]) == {"ok"}  # every planned row

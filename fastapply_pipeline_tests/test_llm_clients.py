"""The official anthropic and openai SDKs, driven by complete_all, against the local stand-in server.

Nothing here is mocked: the SDK clients make real HTTP requests to 127.0.0.1, where `standin.StandIn`
speaks the providers' APIs and injects faults.
"""

import json
import os
import socket

import pytest

from fastapply_pipeline.config import parse_config
from fastapply_pipeline.core.llm.cache import BatchStore, ResponseCache
from fastapply_pipeline.core.llm.clients import (
    LLMConfigurationError,
    LLMError,
    complete_all,
    error_class,
    reason_class,
)
from fastapply_pipeline.core.synth.llm import plan_jobs
from fastapply_pipeline_tests.helpers import python_module, ts_module
from fastapply_pipeline_tests.standin import StandIn

PROVIDERS = ("anthropic", "openai")
FILES = [("repo", "c0", f"src/m{i}.py", "python", python_module(f"m{i}", 4)) for i in range(12)] + [
    ("repo", "c0", f"web/t{i}.ts", "typescript", ts_module(f"t{i}", 4)) for i in range(12)
]


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-test-key")


def provider_settings(server, **overrides):
    settings = {
        "base_url": server.anthropic_url,
        "timeout_seconds": 1.0,
        "max_retries": 4,
        "poll_interval_seconds": 0.05,
        "concurrency": 4,
    }
    return settings | overrides


def setup(tmp_path, server, provider, *, api="sync", **overrides):
    base_url = overrides.pop(
        "base_url", server.anthropic_url if provider == "anthropic" else server.openai_url
    )
    llm = {
        "mix": {provider: 1},
        provider: provider_settings(server, base_url=base_url, api=api, **overrides),
    }
    config = parse_config(
        {"sources": [{"path": "."}], "triples": {"generators": [provider], "llm": llm}}, base_dir=tmp_path
    )
    jobs, _ = plan_jobs(
        FILES, provider=provider, enabled=[provider], llm=config.triples.llm, seed=5, scanner=None
    )
    return config.triples.llm, jobs


def run(tmp_path, provider, llm, jobs, **kwargs):
    return complete_all(
        provider,
        llm.provider(provider),
        [j.request for j in jobs],
        cache=ResponseCache(tmp_path / "responses"),
        batches=BatchStore(tmp_path / "batches"),
        **{"keys": os.environ.get, **kwargs},
    )


def model_calls(server, provider):
    return server.calls("POST", "/v1/messages" if provider == "anthropic" else "/v1/chat/completions")


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_sync_answers_every_request_and_a_second_run_is_free(tmp_path, provider):
    with StandIn() as server:
        llm, jobs = setup(tmp_path, server, provider)
        results, run_log = run(tmp_path, provider, llm, jobs)
        assert set(results) == {j.request.key for j in jobs} and len(jobs) == 24
        assert all(
            c.status == "completed" and c.stop_reason == "end" and not c.cached for c in results.values()
        )
        assert run_log.sent == 24 and len(model_calls(server, provider)) == 24
        # The request bodies are exactly the planned, content-addressed ones; keys travel in headers only.
        sent = sorted(json.loads(r.body)["messages"][-1]["content"] for r in model_calls(server, provider))
        assert sent == sorted(j.request.body["messages"][-1]["content"] for j in jobs)
        recorded = model_calls(server, provider)[0]
        assert "sk-" not in recorded.body.decode()
        assert any("test-key" in value for value in recorded.headers.values())

        again, second = run(tmp_path, provider, llm, jobs)
        assert second.sent == 0 and second.cached == 24 and len(model_calls(server, provider)) == 24
        assert all(c.cached for c in again.values())
        assert {k: c.text for k, c in again.items()} == {k: c.text for k, c in results.items()}


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_rate_limited_requests_wait_for_retry_after(tmp_path, provider):
    """A 429 with Retry-After: 1 is retried after about a second (the SDK's own first backoff is <= 0.5 s)."""
    with StandIn(faults={"rate_limit": 1.0}, retry_after="1") as server:
        llm, jobs = setup(tmp_path, server, provider)
        results, _ = run(tmp_path, provider, llm, jobs[:1])
        assert results[jobs[0].request.key].status == "completed"
        first, retry = model_calls(server, provider)
        assert first.body == retry.body
        assert 0.95 <= retry.at - first.at < 3


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_server_errors_and_slow_answers_are_retried(tmp_path, provider):
    faults = {"server_error": 0.3, "overloaded": 0.3, "slow": 0.2}
    with StandIn(faults=faults, slow_seconds=1.5) as server:
        llm, jobs = setup(tmp_path, server, provider, timeout_seconds=0.5)
        results, _ = run(tmp_path, provider, llm, jobs)
        assert all(c.status == "completed" for c in results.values())
        injected = sum(server.injected.values())
        assert injected >= 10  # about 80% of 24 first attempts failed...
        assert len(model_calls(server, provider)) == 24 + injected  # ...and each was retried once


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_retries_are_bounded_and_transient_failures_are_not_cached(tmp_path, provider):
    with StandIn(faults={"server_error": 0.5}) as server:
        llm, jobs = setup(tmp_path, server, provider, max_retries=0)
        results, _ = run(tmp_path, provider, llm, jobs)
        failed = {k for k, c in results.items() if c.status == "failed"}
        assert failed and all(results[k].error.startswith("http_5") and not results[k].final for k in failed)
        assert len(model_calls(server, provider)) == 24
        again, second = run(tmp_path, provider, llm, jobs)  # only the failed ones are sent again
        assert second.sent == len(failed) and all(c.status == "completed" for c in again.values())


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_truncated_and_malformed_answers_come_back_as_such(tmp_path, provider):
    with StandIn(faults={"truncated": 0.5, "malformed": 0.5}) as server:
        llm, jobs = setup(tmp_path, server, provider)
        results, _ = run(tmp_path, provider, llm, jobs)
        truncated = [c for c in results.values() if c.truncated]
        malformed = [c for c in results.values() if "<update-snippet>" not in c.text]
        assert truncated and malformed
        assert len(truncated) + len(malformed) == 24 == server.answer_faults().total()


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_batch_results_pair_by_custom_id_and_failures_are_named(tmp_path, provider):
    # The draws vary from run to run (the requests' ids do): at 0.15 each, 24 requests drew no "missing" or
    # no "expired" in ~4 % of runs; at 0.25, in ~0.2 %.
    faults = {"errored": 0.15, "expired": 0.25, "missing": 0.25}
    with StandIn(faults=faults) as server:
        llm, jobs = setup(tmp_path, server, provider, api="batch", max_batch_requests=10)
        results, run_log = run(tmp_path, provider, llm, jobs)
        assert len(run_log.batches_created) == 3  # 24 requests, 10 per batch
        assert set(results) == {j.request.key for j in jobs}
        reasons = {c.error for c in results.values() if c.status == "failed"}
        assert reasons <= {
            "batch_errored:invalid_request_error",  # Anthropic's error type
            "batch_errored:invalid_request",  # OpenAI's error code
            "batch_expired",
            "batch_missing_result",
        }
        assert "batch_missing_result" in reasons and "batch_expired" in reasons
        assert sum(c.status == "failed" for c in results.values()) == server.answer_faults().total()
        # The stand-in shuffles results; each answer still edits its own request's file and names its id.
        for job in jobs:
            completion = results[job.request.key]
            if completion.status == "completed":
                assert f"reviewed in change {job.request.key[:8]}" in completion.text
                assert job.original.splitlines()[0] in completion.text
        # Final failures are remembered: a re-run sends nothing, unless told to retry them.
        _, second = run(tmp_path, provider, llm, jobs)
        assert second.sent == 0 and second.batches_created == []
        failed = sum(c.status == "failed" for c in results.values())
        server.faults.clear()
        retried, third = run(tmp_path, provider, llm, jobs, retry_failed=True)
        assert third.sent == failed and len(third.batches_created) == -(-failed // 10)
        assert all(c.status == "completed" for c in retried.values())


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_batch_still_running_is_resumed_not_paid_twice(tmp_path, provider):
    with StandIn() as server:
        server.hold_batches.set()
        llm, jobs = setup(tmp_path, server, provider, api="batch", max_wait_hours=0.5 / 3600)
        with pytest.raises(LLMError, match=r"still processing.*materialize again to resume"):
            run(tmp_path, provider, llm, jobs)
        creates = server.calls("POST", "/v1/messages/batches" if provider == "anthropic" else "/v1/batches")
        assert len(creates) == 1
        server.hold_batches.clear()
        results, run_log = run(tmp_path, provider, llm, jobs)
        assert run_log.batches_created == [] and len(run_log.batches_resumed) == 1
        assert len(server.calls("POST", creates[0].path)) == 1
        assert all(c.status == "completed" and c.api == "batch" for c in results.values())
        assert list((tmp_path / "batches" / provider / "collected").glob("*.json"))


@pytest.mark.slow
def test_missing_key_is_named_and_not_needed_when_everything_is_cached(tmp_path, monkeypatch):
    with StandIn() as server:
        llm, jobs = setup(tmp_path, server, "openai")
        run(tmp_path, "openai", llm, jobs)
        monkeypatch.delenv("OPENAI_API_KEY")
        results, run_log = run(tmp_path, "openai", llm, jobs)  # all cached: no key needed
        assert run_log.sent == 0 and len(results) == 24
        with pytest.raises(LLMError, match="OPENAI_API_KEY is not set, and 1 openai request"):
            run(tmp_path / "other", "openai", llm, jobs[:1])


@pytest.mark.slow
def test_an_unreachable_provider_fails_the_run_instead_of_rejecting_every_row(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    llm, jobs = setup(tmp_path, StandInAddress(f"http://127.0.0.1:{port}"), "anthropic", max_retries=0)
    with pytest.raises(
        LLMError, match="every one of the 24 anthropic requests failed \\(connection_error\\)"
    ):
        run(tmp_path, "anthropic", llm, jobs)
    assert not list((tmp_path / "responses").rglob("*.json"))


class StandInAddress:
    """Just an address (for a provider that is down)."""

    def __init__(self, url):
        self.anthropic_url = self.url = url
        self.openai_url = url + "/v1"


@pytest.mark.slow
@pytest.mark.parametrize("api", ["sync", "batch"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_wrong_base_url_fails_the_step_with_the_fix_and_poisons_no_cache(tmp_path, provider, api):
    """Every request 404s at a wrong endpoint: that is a setting to fix, not an answer to remember."""
    with StandIn() as server:
        wrong = server.url + "/not-the-api"
        llm, jobs = setup(tmp_path, server, provider, api=api, base_url=wrong)
        with pytest.raises(LLMConfigurationError, match=r"http_404.*check base_url and model") as caught:
            run(tmp_path, provider, llm, jobs)
        assert wrong in str(caught.value)
        assert not list((tmp_path / "responses").rglob("*.json"))  # nothing cached
        assert not server.batches
        # Fixed: every request is sent (none answered from a poisoned cache), and all are answered.
        llm, jobs = setup(tmp_path, server, provider, api=api)
        results, run_log = run(tmp_path, provider, llm, jobs)
        assert run_log.sent == 24 and all(c.status == "completed" for c in results.values())


@pytest.mark.slow
def test_the_cache_key_holds_the_endpoint_model_prompt_and_parameters(tmp_path):
    with StandIn() as first, StandIn() as second:
        llm, jobs = setup(tmp_path, first, "openai")
        run(tmp_path, "openai", llm, jobs)
        _, again = run(tmp_path, "openai", llm, jobs)
        assert again.sent == 0
        keys = {j.request.key for j in jobs}
        for change in ({"base_url": second.openai_url}, {"model": "gpt-other"}, {"max_tokens": 999}):
            _, jobs2 = setup(tmp_path, first, "openai", **change)
            assert not keys & {j.request.key for j in jobs2}, change  # another answer: another key


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("http_401:authentication_error", "configuration"),
        ("http_403:permission_error", "configuration"),
        ("http_404:not_found_error", "configuration"),
        ("batch_http_404:model_not_found", "configuration"),
        ("batch_errored:not_found_error", "configuration"),
        # The provider's own trouble is transient for both providers, sync or batch.
        ("batch_errored:api_error", "transient"),
        ("batch_errored:overloaded_error", "transient"),
        ("batch_errored:server_error", "transient"),  # an OpenAI batch line with no status
        ("batch_http_500:server_error", "transient"),
        ("http_529:overloaded_error", "transient"),
        ("http_429:rate_limit_error", "transient"),
        # A verdict on this request is final (cached).
        ("batch_errored:invalid_request_error", "final"),
        ("batch_errored:invalid_request", "final"),
        ("http_400:invalid_request_error", "final"),
        ("http_413:request_too_large", "final"),
        ("batch_expired", "final"),
    ],
)
def test_one_rule_classifies_every_error_answer(reason, expected):
    assert reason_class(reason) == expected
    status = int(reason.split("http_")[1][:3]) if "http_" in reason else None
    assert error_class(status, reason.partition(":")[2]) == expected


@pytest.mark.slow
@pytest.mark.parametrize("lists", [True, False])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_intent_without_a_batch_adopts_the_providers_batch_or_creates_one(tmp_path, provider, lists):
    """A run died during the create call. With a batch list, the re-run adopts the batch the provider made
    (no second create); a server without the list endpoint still gets its requests answered (one create)."""
    from fastapply_pipeline.core.llm.cache import batch_id_for

    with StandIn(lists_batches=lists) as server:
        llm, jobs = setup(tmp_path, server, provider, api="batch")
        create = "/v1/messages/batches" if provider == "anthropic" else "/v1/batches"
        store = BatchStore(tmp_path / "batches")
        content_id = batch_id_for(j.request.key for j in jobs)
        if lists:  # the killed run's batch exists on the provider; only its intent was saved here
            results, _ = run(tmp_path / "killed", provider, llm, jobs)
            (path,) = (tmp_path / "killed" / "batches" / provider / "collected").glob("*.json")
            state = json.loads(path.read_text())
            state.pop("batch_id")
            store.put(provider, content_id, state)
            server.batches[next(iter(server.batches))].polls = 0
        else:
            store.put(provider, content_id, {"requests": len(jobs), "intent_at": "2026-11-29T00:00:00+00:00"})
        creates_before = len(server.calls("POST", create))
        results, run_log = run(tmp_path, provider, llm, jobs)
        assert all(c.status == "completed" for c in results.values())
        if lists:
            assert len(server.calls("POST", create)) == creates_before  # adopted, not created again
            assert run_log.batches_created == [] and len(run_log.batches_resumed) == 1
        else:
            assert len(server.calls("POST", create)) == creates_before + 1

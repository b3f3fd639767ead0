"""Calling the providers through their official SDKs: per-request (sync) or through the Batch APIs.

`complete_all` takes requests (content-addressed bodies), answers what it can from the cache, sends the
rest, and returns one `Completion` per request key:

- sync: `AsyncAnthropic.messages.create` / `AsyncOpenAI.chat.completions.create`, `concurrency` at a
  time, behind the client-side rate limiter. The SDKs retry 408/409/429/5xx and timeouts with
  exponential backoff and honour `retry-after`/`retry-after-ms` (we set `max_retries` and `timeout`).
- batch: Anthropic Message Batches (`requests=[{custom_id, params}]`, results as JSONL) and the OpenAI
  Batch API (a JSONL file uploaded with purpose=batch, a batch on /v1/chat/completions, the output and
  error files downloaded). The batch id is stored the moment the batch exists; a re-run resumes it.

Results pair with requests by custom_id (= request key). A request the provider did not answer, or
answered with an error, becomes a failed Completion with the reason; nothing is dropped. Final failures
(the provider's verdict on that request) are cached like answers, so a re-run costs nothing; transient
ones (connection, authentication, retries exhausted) are not, so a re-run tries them again.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fastapply_pipeline.core.llm.cache import BatchStore, ResponseCache, batch_id_for
from fastapply_pipeline.core.llm.ratelimit import RateLimiter

if TYPE_CHECKING:
    from fastapply_pipeline.core.endpoints import KeySource
    from fastapply_pipeline.core.settings import ProviderSettings

API_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
OPENAI_BATCH_ENDPOINT = "/v1/chat/completions"
REQUEST_SET_METADATA = (
    "fastapply_request_set"  # an OpenAI batch's metadata key: the content id of its requests
)
MAX_LISTED_BATCHES = 500  # how far back a re-run looks for a batch that a killed run created


class LLMError(RuntimeError):
    """A provider cannot be used at all (no key, unreachable, every request refused)."""


@dataclass(frozen=True)
class LLMRequest:
    key: str
    body: dict
    estimated_tokens: int  # prompt + max output, for the tokens-per-minute limit


@dataclass(frozen=True)
class Completion:
    status: str  # "completed" | "failed"
    api: str  # "sync" | "batch"
    text: str = ""
    stop_reason: str = ""  # normalized: "end" | "max_tokens" | the provider's own word
    input_tokens: int = 0
    output_tokens: int = 0
    error: str = ""  # for failures: a short reason, e.g. "batch_expired", "http_400:invalid_request_error"
    final: bool = True  # False: transient (not cached; a re-run tries again)
    cached: bool = False

    @property
    def truncated(self) -> bool:
        return self.status == "completed" and self.stop_reason == "max_tokens"

    def record(self) -> dict:
        data = asdict(self)
        data.pop("cached")
        return data

    @classmethod
    def from_record(cls, record: dict) -> Completion:
        fields = {k: v for k, v in record.items() if k in cls.__dataclass_fields__ and k != "cached"}
        return cls(**fields, cached=True)


def _failure(api: str, error: str, *, final: bool) -> Completion:
    return Completion(status="failed", api=api, error=error, final=final)


# One rule for every answer that is an error, sync or batch, Anthropic or OpenAI:
# - configuration: the key, the endpoint or the model is wrong, so every request will fail alike. The
#   step fails with the fix; nothing is cached (after the fix, everything is sent again).
# - transient: the provider could not answer now (rate limits, overload, its own errors, timeouts).
#   Not cached: the next run sends the request again.
# - final: the provider's verdict on this request (a 400 for this prompt, an expired batch entry).
#   Cached, so reruns are free and reproducible (`retry_failed: true` sends them again).
CONFIG_STATUSES = {401, 403, 404}
CONFIG_KINDS = {
    "authentication_error",
    "permission_error",
    "not_found_error",
    "model_not_found",
    "invalid_api_key",
}
TRANSIENT_STATUSES = {408, 409, 429}
TRANSIENT_KINDS = {
    "api_error",
    "overloaded_error",
    "rate_limit_error",
    "rate_limit_exceeded",
    "server_error",
    "timeout",
}


def error_class(status: int | None, kind: str) -> str:
    """ "configuration", "transient" or "final" for an error answer (HTTP status, the error's type/code)."""
    if status in CONFIG_STATUSES or kind in CONFIG_KINDS:
        return "configuration"
    if status in TRANSIENT_STATUSES or (status or 0) >= 500 or kind in TRANSIENT_KINDS:
        return "transient"
    return "final"


def reason_class(reason: str) -> str:
    """error_class of a failure's reason string (`http_404:not_found_error`, `batch_errored:api_error`, ...)."""
    status = re.search(r"http_(\d+)", reason)
    kind = reason.partition(":")[2]
    return error_class(int(status.group(1)) if status else None, kind)


class LLMConfigurationError(LLMError):
    """The key, the endpoint or the model is wrong: no request can succeed until the settings change."""


def configuration_error(
    provider: str, settings: ProviderSettings, reason: str, detail: str = ""
) -> LLMConfigurationError:
    env = API_KEY_ENV[provider]
    where = settings.base_url or f"the {provider} API"
    status = reason.split(":")[0]
    hint = {
        "http_401": f"the key in {env} was refused: check it (it is read only from the environment)",
        "http_403": f"the key in {env} has no access to model {settings.model!r}",
        "http_404": f"{where} has no such endpoint or model: check base_url and model in fastapply.yaml",
    }.get(status, f"check {env}, base_url and model in fastapply.yaml")
    return LLMConfigurationError(
        f"{provider} answered {reason} at {where} (model {settings.model!r}): {hint}. "
        f"{detail}Nothing was cached for these requests: run again after the fix.".rstrip()
    )


def _sdk_failure(err: Exception, api: str) -> Completion:
    """Classify an SDK exception (after the SDK's own retries) by the one rule above."""
    status = getattr(err, "status_code", None)
    body = getattr(err, "body", None)
    kind = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            kind = str(inner.get("type") or inner.get("code") or "")
    if status is None:
        name = type(err).__name__
        reason = "timeout" if "Timeout" in name else "connection_error" if "Connection" in name else name
        return _failure(api, reason, final=False)
    reason = f"http_{status}" + (f":{kind}" if kind else "")
    return _failure(api, reason, final=error_class(status, kind) == "final")


# ---------------------------------------------------------------------------------------------------
# Providers


def sdk_client(provider, settings: ProviderSettings, api_key: str, *, asynchronous: bool):
    """The provider's official client (imported here: the SDKs take seconds to import)."""
    module, sync_class, async_class = provider.sdk
    sdk = importlib.import_module(module)
    return getattr(sdk, async_class if asynchronous else sync_class)(
        api_key=api_key,
        base_url=settings.base_url,
        timeout=settings.timeout_seconds,
        max_retries=settings.max_retries,
    )


@dataclass(frozen=True)
class BatchStatus:
    ended: bool
    state: str
    counts: str


class Anthropic:
    name = "anthropic"

    @staticmethod
    def body(model: str, system: str, user: str, *, max_tokens: int, **_: object) -> dict:
        # No sampling parameters: API version 2026-10-21 (the SDK 2.x default) rejects them.
        return {
            "model": model,
            "max_tokens": max_tokens,
            "system": system,
            "messages": [{"role": "user", "content": user}],
        }

    sdk = ("anthropic", "Anthropic", "AsyncAnthropic")

    @staticmethod
    def _completion(message, api: str) -> Completion:
        text = "".join(block.text for block in message.content if getattr(block, "type", "") == "text")
        stop = message.stop_reason or ""
        return Completion(
            status="completed",
            api=api,
            text=text,
            stop_reason="end" if stop in {"end_turn", "stop_sequence"} else stop,
            input_tokens=message.usage.input_tokens,
            output_tokens=message.usage.output_tokens,
        )

    async def complete(self, client, body: dict) -> Completion:
        return self._completion(await client.messages.create(**body), "sync")

    def submit(self, client, requests: list[LLMRequest], description: str, content_id: str, save) -> str:
        batch = client.messages.batches.create(
            requests=[{"custom_id": r.key, "params": r.body} for r in requests]
        )
        return batch.id

    def find(self, client, requests: list[LLMRequest], content_id: str, state: dict, known: set[str]):
        """A batch of these requests that a killed run created (Message Batches carry no metadata).

        The provider lists batches newest first; one of ours has the same number of requests and, once
        ended, exactly our custom_ids. An in-progress candidate cannot show its custom_ids yet: it is
        adopted, and checked when its results come (a stranger's batch is then dropped, not trusted).
        """
        wanted = {r.key for r in requests}
        for index, batch in enumerate(client.messages.batches.list(limit=100)):
            if index >= MAX_LISTED_BATCHES:
                break
            counts = batch.request_counts
            total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
            if batch.id in known or total != len(wanted):
                continue
            if batch.processing_status != "ended":
                return batch.id
            if {entry.custom_id for entry in client.messages.batches.results(batch.id)} == wanted:
                return batch.id
        return None

    def status(self, client, batch_id: str) -> BatchStatus:
        batch = client.messages.batches.retrieve(batch_id)
        counts = batch.request_counts
        return BatchStatus(
            batch.processing_status == "ended",
            batch.processing_status,
            f"{counts.succeeded} succeeded, {counts.errored} errored, {counts.processing} processing",
        )

    def results(self, client, batch_id: str) -> tuple[dict[str, Completion], str]:
        found: dict[str, Completion] = {}
        for entry in client.messages.batches.results(batch_id):
            result = entry.result
            if result.type == "succeeded":
                found[entry.custom_id] = self._completion(result.message, "batch")
            elif result.type == "errored":
                error = getattr(result.error, "error", None)
                kind = getattr(error, "type", "") or "error"
                final = error_class(None, kind) == "final"
                found[entry.custom_id] = _failure("batch", f"batch_errored:{kind}", final=final)
            else:  # canceled, expired
                found[entry.custom_id] = _failure("batch", f"batch_{result.type}", final=True)
        return found, "batch_missing_result"


class OpenAI:
    name = "openai"

    @staticmethod
    def body(
        model: str,
        system: str,
        user: str,
        *,
        temperature: float | None,
        max_tokens: int,
        max_tokens_param: str,
    ) -> dict:
        body = {
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            max_tokens_param: max_tokens,
        }
        if temperature is not None:
            body["temperature"] = temperature
        return body

    sdk = ("openai", "OpenAI", "AsyncOpenAI")

    @staticmethod
    def _completion(payload: dict, api: str) -> Completion:
        """From a chat.completion (as a dict: batch output lines are plain JSON)."""
        choices = payload.get("choices") or []
        if not choices:
            return _failure(api, "no_choices", final=True)
        choice = choices[0]
        finish = choice.get("finish_reason") or ""
        usage = payload.get("usage") or {}
        return Completion(
            status="completed",
            api=api,
            text=(choice.get("message") or {}).get("content") or "",
            stop_reason={"stop": "end", "length": "max_tokens"}.get(finish, finish),
            input_tokens=usage.get("prompt_tokens", 0),
            output_tokens=usage.get("completion_tokens", 0),
        )

    async def complete(self, client, body: dict) -> Completion:
        response = await client.chat.completions.create(**body)
        return self._completion(response.model_dump(), "sync")

    def submit(self, client, requests: list[LLMRequest], description: str, content_id: str, save) -> str:
        lines = [
            json.dumps({"custom_id": r.key, "method": "POST", "url": OPENAI_BATCH_ENDPOINT, "body": r.body})
            for r in requests
        ]
        upload = client.files.create(
            file=("requests.jsonl", io.BytesIO(("\n".join(lines) + "\n").encode()), "application/jsonl"),
            purpose="batch",
        )
        save({"input_file_id": upload.id})  # a killed run's batch is then found by its input file too
        batch = client.batches.create(
            input_file_id=upload.id,
            endpoint=OPENAI_BATCH_ENDPOINT,
            completion_window="24h",
            metadata={"description": description[:512], REQUEST_SET_METADATA: content_id},
        )
        return batch.id

    def find(self, client, requests: list[LLMRequest], content_id: str, state: dict, known: set[str]):
        """A batch of these requests that a killed run created: by our metadata, or by its input file."""
        input_file = state.get("input_file_id")
        for index, batch in enumerate(client.batches.list(limit=100)):
            if index >= MAX_LISTED_BATCHES:
                break
            if batch.id in known:
                continue
            metadata = batch.metadata or {}
            if metadata.get(REQUEST_SET_METADATA) == content_id or (
                input_file and batch.input_file_id == input_file
            ):
                return batch.id
        return None

    def status(self, client, batch_id: str) -> BatchStatus:
        batch = client.batches.retrieve(batch_id)
        counts = batch.request_counts
        summary = f"{counts.completed} completed, {counts.failed} failed of {counts.total}" if counts else ""
        return BatchStatus(
            batch.status in {"completed", "failed", "expired", "cancelled"}, batch.status, summary
        )

    def results(self, client, batch_id: str) -> tuple[dict[str, Completion], str]:
        batch = client.batches.retrieve(batch_id)
        found: dict[str, Completion] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for line in client.files.content(file_id).text.splitlines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                custom_id = entry.get("custom_id")
                if not custom_id:
                    continue
                response = entry.get("response") or {}
                error = entry.get("error")
                if response.get("status_code") == 200 and not error:
                    found[custom_id] = self._completion(response.get("body") or {}, "batch")
                else:
                    body_error = ((response.get("body") or {}).get("error") or {}) if response else {}
                    code = (error or {}).get("code") or body_error.get("type") or body_error.get("code")
                    status = response.get("status_code")
                    if code == "batch_expired":
                        reason = "batch_expired"
                    else:
                        reason = (
                            f"batch_http_{status}" if status else "batch_errored"
                        ) + f":{code or 'error'}"
                    final = error_class(status, code or "") == "final"
                    found[custom_id] = _failure("batch", reason, final=final)
        # Requests missing from both files: the batch's own fate says why.
        default = {"completed": "batch_missing_result"}.get(batch.status, f"batch_{batch.status}")
        return found, default


PROVIDERS = {"anthropic": Anthropic(), "openai": OpenAI()}


# ---------------------------------------------------------------------------------------------------
# Running requests


@dataclass
class RunLog:
    """What happened to a provider's requests in this materialization."""

    cached: int = 0
    sent: int = 0
    batches_created: list[str] = field(default_factory=list)
    batches_resumed: list[str] = field(default_factory=list)
    rate_limit_wait_seconds: float = 0.0
    unexpected_results: int = 0


def complete_all(
    provider: str,
    settings: ProviderSettings,
    requests: Iterable[LLMRequest],
    *,
    cache: ResponseCache,
    batches: BatchStore,
    keys: KeySource,
    retry_failed: bool = False,
    log: Callable[[str], None] = lambda message: None,
    description: str = "fastapply-pipeline",
) -> tuple[dict[str, Completion], RunLog]:
    """One Completion per request key: from the cache, or from the provider (`settings.api`); the key
    (API_KEY_ENV[provider]) is taken from `keys` only when a request is not in the cache."""
    adapter = PROVIDERS[provider]
    unique = {r.key: r for r in requests}
    results: dict[str, Completion] = {}
    todo: list[LLMRequest] = []
    for key, request in sorted(unique.items()):
        record = cache.get(provider, key)
        if record is not None and (record.get("status") == "completed" or not retry_failed):
            results[key] = Completion.from_record(record)
        else:
            todo.append(request)
    run = RunLog(cached=len(results))
    if not todo:
        return results, run

    env = API_KEY_ENV[provider]
    api_key = (keys(env) or "").strip()
    if not api_key:
        raise LLMError(
            f"{env} is not set, and {len(todo)} {provider} request(s) are not in the response cache. "
            f"Export {env} (it is read only from the environment), or remove {provider!r} from "
            "triples.generators in fastapply.yaml."
        )
    run.sent = len(todo)
    if settings.api == "sync":
        fresh = asyncio.run(_run_sync(adapter, settings, todo, api_key, cache, run, log))
    else:
        try:
            fresh = _run_batches(adapter, settings, todo, api_key, cache, batches, run, log, description)
        except Exception as err:
            if not _is_sdk_error(err):
                raise
            failure = _sdk_failure(err, "batch")
            if reason_class(failure.error) == "configuration":
                raise configuration_error(provider, settings, failure.error) from None
            raise LLMError(
                f"{provider} Batch API call failed ({failure.error}); the batches created so far are saved: "
                "materialize again to resume them (nothing is created twice)."
            ) from err
    failed = [c for c in fresh.values() if c.status == "failed" and not c.final]
    if failed and len(failed) == len(todo):
        raise LLMError(
            f"every one of the {len(todo)} {provider} requests failed ({failed[0].error}); check {env}, "
            f"base_url ({settings.base_url or 'the default'}) and the provider's status. Nothing was cached."
        )
    results.update(fresh)
    return results, run


async def _run_sync(
    adapter, settings: ProviderSettings, todo, api_key, cache, run, log
) -> dict[str, Completion]:
    client = sdk_client(adapter, settings, api_key, asynchronous=True)
    limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)
    gate = asyncio.Semaphore(settings.concurrency)
    done = 0
    step = max(1, len(todo) // 10)

    async def one(request: LLMRequest) -> tuple[str, Completion]:
        nonlocal done
        async with gate:
            await limiter.acquire(request.estimated_tokens)
            try:
                completion = await adapter.complete(client, request.body)
            except Exception as err:  # the SDK's errors, after its own retries
                if not _is_sdk_error(err):
                    raise
                completion = _sdk_failure(err, "sync")
                status = getattr(err, "status_code", None)
                if error_class(status, completion.error.partition(":")[2]) == "configuration":
                    raise configuration_error(adapter.name, settings, completion.error) from None
        if completion.final:
            cache.put(adapter.name, request.key, completion.record())
        done += 1
        if done % step == 0 or done == len(todo):
            log(f"{adapter.name}: {done}/{len(todo)} requests answered")
        return request.key, completion

    try:
        pairs = await asyncio.gather(*(one(r) for r in todo))
    finally:
        await client.close()
    run.rate_limit_wait_seconds = limiter.waited_seconds
    return dict(pairs)


def _is_sdk_error(err: Exception) -> bool:
    module = type(err).__module__
    return module.startswith(("anthropic", "openai"))


def _run_batches(adapter, settings: ProviderSettings, todo, api_key, cache, store, run, log, description):
    client = sdk_client(adapter, settings, api_key, asynchronous=False)
    size = settings.max_batch_requests
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    pending = []
    for chunk in chunks:
        content_id = batch_id_for(r.key for r in chunk)
        state = store.get(adapter.name, content_id)
        if state is not None and state.get("batch_id"):
            run.batches_resumed.append(state["batch_id"])
            log(f"{adapter.name}: resuming batch {state['batch_id']} ({len(chunk)} requests)")
        else:
            state = _create_once(adapter, client, chunk, content_id, state, store, run, log, description)
        pending.append((content_id, state["batch_id"], chunk))

    results: dict[str, Completion] = {}
    deadline = time.monotonic() + settings.max_wait_hours * 3600
    while pending:
        for item in list(pending):
            content_id, batch_id, chunk = item
            status = adapter.status(client, batch_id)
            if not status.ended:
                continue
            found, missing_reason = adapter.results(client, batch_id)
            wanted = {r.key for r in chunk}
            if found and not set(found) & wanted:
                # An adopted batch (see _create_once) that was someone else's: trust none of it.
                log(
                    f"{adapter.name}: batch {batch_id} holds none of these requests; the next run creates one"
                )
                store.forget(adapter.name, content_id)
                pending.remove(item)
                results.update({r.key: _failure("batch", "batch_not_ours", final=False) for r in chunk})
                continue
            run.unexpected_results += len(set(found) - wanted)
            misconfigured = []
            for request in chunk:
                completion = found.get(request.key) or _failure("batch", missing_reason, final=True)
                if completion.final:
                    cache.put(adapter.name, request.key, completion.record())
                elif completion.status == "failed" and reason_class(completion.error) == "configuration":
                    misconfigured.append(completion.error)
                results[request.key] = completion
            store.done(adapter.name, content_id)
            pending.remove(item)
            log(f"{adapter.name}: batch {batch_id} {status.state} ({status.counts})")
            if misconfigured:
                raise configuration_error(
                    adapter.name,
                    settings,
                    misconfigured[0],
                    f"{len(misconfigured)} of the {len(chunk)} requests of batch {batch_id} were refused so. ",
                )
        if pending:
            if time.monotonic() > deadline:
                ids = ", ".join(batch_id for _, batch_id, _ in pending)
                raise LLMError(
                    f"{adapter.name} batch(es) {ids} still processing after {settings.max_wait_hours} h; "
                    "their ids are saved: materialize again to resume waiting (nothing is sent twice)."
                )
            time.sleep(settings.poll_interval_seconds)
    return results


def _create_once(adapter, client, chunk, content_id, state, store, run, log, description) -> dict:
    """Create the batch of `chunk`, or adopt the one a killed run created: never pay for it twice.

    The intent is saved before the create call. Finding an intent without a batch id means a run died
    during (or right before) that call: the provider may hold the batch, so look for it first.
    """
    if state is not None:  # an intent, no id
        try:
            found = adapter.find(client, chunk, content_id, state, store.known_batch_ids(adapter.name))
        except Exception as err:  # a server that cannot list batches: nothing to adopt
            if not _is_sdk_error(err):
                raise
            log(f"{adapter.name}: cannot list batches ({_sdk_failure(err, 'batch').error}); creating one")
            found = None
        if found is not None:
            state = {**state, "batch_id": found}
            store.put(adapter.name, content_id, state)
            run.batches_resumed.append(found)
            log(f"{adapter.name}: found batch {found}, created by an interrupted run ({len(chunk)} requests)")
            return state
    state = {
        **(state or {}),
        "requests": len(chunk),
        "model": chunk[0].body.get("model"),
        "intent_at": datetime.now(UTC).isoformat(),
    }
    store.put(adapter.name, content_id, state)  # the intent, before the call that spends

    def save(extra: dict) -> None:
        state.update(extra)
        store.put(adapter.name, content_id, state)

    batch_id = adapter.submit(client, chunk, description, content_id, save)
    save({"batch_id": batch_id, "created_at": datetime.now(UTC).isoformat()})  # before anything can fail
    run.batches_created.append(batch_id)
    log(f"{adapter.name}: created batch {batch_id} ({len(chunk)} requests)")
    return state


def estimate_cost(
    usage: Iterable[tuple[str, str, int, int]], prices: dict, batch_discount: float
) -> tuple[float, list[str]]:
    """USD for (model, api, input tokens, output tokens) rows, and the models without a price."""
    total, unpriced = 0.0, set()
    for model, api, tokens_in, tokens_out in usage:
        price = prices.get(model)
        if price is None:
            unpriced.add(model)
            continue
        factor = batch_discount if api == "batch" else 1.0
        total += factor * (tokens_in * price.input + tokens_out * price.output) / 1e6
    return total, sorted(unpriced)

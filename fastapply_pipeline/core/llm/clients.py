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
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from fastapply_pipeline.core.llm.cache import BatchStore, ResponseCache, batch_id_for
from fastapply_pipeline.core.llm.ratelimit import RateLimiter

API_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
OPENAI_BATCH_ENDPOINT = "/v1/chat/completions"


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


def _sdk_failure(err: Exception, api: str) -> Completion:
    """Classify an SDK exception: the provider's verdict on this request (final) or a passing condition."""
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
    # 400/404/413/422: this request is wrong for this model, and will stay so. 401/403 (keys), 408/409/
    # 429/5xx (retried by the SDK until max_retries) may pass.
    return _failure(api, reason, final=status in {400, 404, 413, 422})


# ---------------------------------------------------------------------------------------------------
# Providers


def sdk_client(provider, settings, api_key: str, *, asynchronous: bool):
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

    def submit(self, client, requests: list[LLMRequest], description: str) -> str:
        batch = client.messages.batches.create(
            requests=[{"custom_id": r.key, "params": r.body} for r in requests]
        )
        return batch.id

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
                final = kind not in {"api_error", "overloaded_error", "rate_limit_error"}
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

    def submit(self, client, requests: list[LLMRequest], description: str) -> str:
        lines = [
            json.dumps({"custom_id": r.key, "method": "POST", "url": OPENAI_BATCH_ENDPOINT, "body": r.body})
            for r in requests
        ]
        upload = client.files.create(
            file=("requests.jsonl", io.BytesIO(("\n".join(lines) + "\n").encode()), "application/jsonl"),
            purpose="batch",
        )
        batch = client.batches.create(
            input_file_id=upload.id,
            endpoint=OPENAI_BATCH_ENDPOINT,
            completion_window="24h",
            metadata={"description": description[:512]},
        )
        return batch.id

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
                    transient = status in {408, 409, 429} or (status or 0) >= 500
                    found[custom_id] = _failure("batch", reason, final=not transient)
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
    settings,
    requests: Iterable[LLMRequest],
    *,
    cache: ResponseCache,
    batches: BatchStore,
    retry_failed: bool = False,
    log: Callable[[str], None] = lambda message: None,
    description: str = "fastapply-pipeline",
) -> tuple[dict[str, Completion], RunLog]:
    """One Completion per request key: from the cache, or from the provider (`settings.api`)."""
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
    api_key = os.environ.get(env, "").strip()
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
        fresh = _run_batches(adapter, settings, todo, api_key, cache, batches, run, log, description)
    failed = [c for c in fresh.values() if c.status == "failed" and not c.final]
    if failed and len(failed) == len(todo):
        raise LLMError(
            f"every one of the {len(todo)} {provider} requests failed ({failed[0].error}); check {env}, "
            f"base_url ({settings.base_url or 'the default'}) and the provider's status. Nothing was cached."
        )
    results.update(fresh)
    return results, run


async def _run_sync(adapter, settings, todo, api_key, cache, run, log) -> dict[str, Completion]:
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


def _run_batches(adapter, settings, todo, api_key, cache, store, run, log, description):
    client = sdk_client(adapter, settings, api_key, asynchronous=False)
    size = settings.max_batch_requests
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    pending = []
    for chunk in chunks:
        content_id = batch_id_for(r.key for r in chunk)
        state = store.get(adapter.name, content_id)
        if state is not None:
            run.batches_resumed.append(state["batch_id"])
            log(f"{adapter.name}: resuming batch {state['batch_id']} ({len(chunk)} requests)")
        else:
            batch_id = adapter.submit(client, chunk, description)
            state = {
                "batch_id": batch_id,
                "requests": len(chunk),
                "model": chunk[0].body.get("model"),
                "created_at": datetime.now(UTC).isoformat(),
            }
            store.put(adapter.name, content_id, state)  # before anything else can fail
            run.batches_created.append(batch_id)
            log(f"{adapter.name}: created batch {batch_id} ({len(chunk)} requests)")
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
            run.unexpected_results += len(set(found) - wanted)
            for request in chunk:
                completion = found.get(request.key) or _failure("batch", missing_reason, final=True)
                if completion.final:
                    cache.put(adapter.name, request.key, completion.record())
                results[request.key] = completion
            store.done(adapter.name, content_id)
            pending.remove(item)
            log(f"{adapter.name}: batch {batch_id} {status.state} ({status.counts})")
        if pending:
            if time.monotonic() > deadline:
                ids = ", ".join(batch_id for _, batch_id, _ in pending)
                raise LLMError(
                    f"{adapter.name} batch(es) {ids} still processing after {settings.max_wait_hours} h; "
                    "their ids are saved: materialize again to resume waiting (nothing is sent twice)."
                )
            time.sleep(settings.poll_interval_seconds)
    return results


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

"""OpenAI-compatible chat endpoints (a served Fast Apply model, vLLM, Fireworks, OpenAI) through the SDK.

`chat_all` sends many chat requests, `concurrency` at a time, with `AsyncOpenAI(base_url=...)`, and
returns one `ChatReply` per request key with the measured latency and the output tokens the server
reports. The SDK retries 408/409/429/5xx and timeouts; a request that still fails becomes a reply with
its error (nothing is dropped). Nothing is cached: evaluation measures the endpoint as it is now. The
latency is the whole call, retries and their back-off included (set max_retries: 0 for pure timings).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapply_pipeline.core.settings import EndpointSettings

# Where keys come from: an environment variable name -> its value, or None where it is not set. Core
# never reads the environment itself; the caller passes the source (the secrets resource, the CLI).
KeySource = Callable[[str], "str | None"]

NO_KEY = "unused"  # what the SDK is given for a server that asks for no key (it requires a string)


class EndpointError(RuntimeError):
    """The endpoint cannot be used at all (no key, unreachable, every request refused)."""


@dataclass(frozen=True)
class ChatReply:
    text: str = ""
    output_tokens: int | None = None
    seconds: float = 0.0
    finish_reason: str = ""
    error: str | None = None  # e.g. "http_404", "APIConnectionError"; None for an answer

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def api_key(env: str | None, what: str, keys: KeySource) -> str:
    """The key named `env`, from `keys` (None: the server needs none)."""
    if env is None:
        return NO_KEY
    key = (keys(env) or "").strip()
    if not key:
        raise EndpointError(
            f"{what}: {env} is not set. Export it (keys are read only from the environment), or set "
            "api_key_env: null for a server that needs no key."
        )
    return key


def chat_all(
    settings: EndpointSettings,
    requests: Mapping[str, list[dict[str, str]]],
    *,
    max_tokens: Mapping[str, int],
    what: str,
    keys: KeySource,
    on_reply: Callable[[str, ChatReply], None] = lambda key, reply: None,
) -> dict[str, ChatReply]:
    """One reply per request key (`max_tokens`: the budget per key)."""
    if not requests:
        return {}
    key = api_key(settings.api_key_env, what, keys)
    replies = asyncio.run(_chat_all(settings, key, requests, max_tokens, on_reply))
    unreachable = [r for r in replies.values() if r.error in ("APIConnectionError", "APITimeoutError")]
    if len(unreachable) == len(replies):
        raise EndpointError(
            f"{what}: every one of the {len(replies)} requests to {settings.base_url} failed "
            f"({unreachable[0].error}); is the server running, and is base_url right?"
        )
    auth = [r for r in replies.values() if r.error in ("http_401", "http_403")]
    if len(auth) == len(replies):
        raise EndpointError(
            f"{what}: {settings.base_url} refused the key ({auth[0].error}); check {settings.api_key_env}"
        )
    return replies


async def _chat_all(
    settings: EndpointSettings, key: str, requests, max_tokens, on_reply
) -> dict[str, ChatReply]:
    import openai

    client = openai.AsyncOpenAI(
        api_key=key,
        base_url=settings.base_url,
        timeout=settings.timeout_seconds,
        max_retries=settings.max_retries,
    )
    gate = asyncio.Semaphore(settings.concurrency)

    async def one(request_key: str, messages: list[dict[str, str]]) -> tuple[str, ChatReply]:
        body = {"model": settings.model, "messages": messages}
        if max_tokens.get(request_key) is not None:
            body[settings.max_tokens_param] = max_tokens[request_key]
        if settings.temperature is not None:
            body["temperature"] = settings.temperature
        async with gate:
            started = time.perf_counter()
            try:
                response = await client.chat.completions.create(**body)
            except openai.APIStatusError as err:
                reply = ChatReply(seconds=time.perf_counter() - started, error=f"http_{err.status_code}")
            except openai.APIError as err:  # connection failures and timeouts, after the SDK's retries
                reply = ChatReply(seconds=time.perf_counter() - started, error=type(err).__name__)
            else:
                seconds = time.perf_counter() - started
                choice = response.choices[0] if response.choices else None
                reply = ChatReply(
                    text=(choice.message.content or "") if choice else "",
                    output_tokens=response.usage.completion_tokens if response.usage else None,
                    seconds=seconds,
                    finish_reason=(choice.finish_reason or "") if choice else "",
                    error=None if choice else "no_choices",
                )
        on_reply(request_key, reply)
        return request_key, reply

    try:
        pairs = await asyncio.gather(*(one(k, m) for k, m in requests.items()))
    finally:
        await client.close()
    return dict(pairs)

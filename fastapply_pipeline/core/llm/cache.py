"""Content-addressed storage of LLM answers, and of the batches in flight.

A request's key is the sha256 of (provider, endpoint, the exact request body: model, messages,
temperature, max tokens, ...). The key doubles as the batch `custom_id`, so results pair with requests by content, never by
position. An answer is written as soon as it arrives (a killed run keeps what it paid for); a batch's id
is written as soon as the batch exists, so a re-run polls it instead of paying for a second one; and the
intent to create one is written before the create call, so a run killed during that call lets the next
run find the batch on the provider (by its metadata, its input file or its custom_ids) instead of
creating a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def request_key(provider: str, body: dict, endpoint: str | None = None) -> str:
    """The content address of a request (64 hex characters; valid as an Anthropic/OpenAI custom_id).

    Everything that changes the answer is in it: the endpoint (a proxy or another server may answer
    differently; None = the provider's own API, which keeps keys of the default endpoint stable), and
    the body (model, messages, sampling and length parameters).
    """
    identity: dict = {"provider": provider, "body": body}
    if endpoint:
        identity["endpoint"] = endpoint.rstrip("/")
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _write_json(path: Path, payload: dict) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, sort_keys=True)
    os.replace(tmp, path)


class ResponseCache:
    """Answers by request key under `root/<provider>/<key[:2]>/<key>.json`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, provider: str, key: str) -> Path:
        return self.root / provider / key[:2] / f"{key}.json"

    def get(self, provider: str, key: str) -> dict | None:
        path = self._path(provider, key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            return None  # a torn write from another tool: treat as absent, it will be rewritten

    def put(self, provider: str, key: str, record: dict) -> None:
        _write_json(self._path(provider, key), record)


def batch_id_for(keys: Iterable[str]) -> str:
    """The identity of a batch's content: the sorted request keys."""
    digest = hashlib.sha256()
    for key in sorted(keys):
        digest.update(key.encode())
    return digest.hexdigest()[:32]


class BatchStore:
    """Batches created and not yet collected, by content: `root/<provider>/<batch content id>.json`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, provider: str, content_id: str) -> Path:
        return self.root / provider / f"{content_id}.json"

    def get(self, provider: str, content_id: str) -> dict | None:
        try:
            return json.loads(self._path(provider, content_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def put(self, provider: str, content_id: str, state: dict) -> None:
        _write_json(self._path(provider, content_id), state)

    def known_batch_ids(self, provider: str) -> set[str]:
        """Every batch id this store has recorded, in flight or collected."""
        ids = set()
        for path in (self.root / provider).glob("**/*.json"):
            try:
                batch_id = json.loads(path.read_text(encoding="utf-8")).get("batch_id")
            except (OSError, json.JSONDecodeError):
                continue
            if batch_id:
                ids.add(batch_id)
        return ids

    def forget(self, provider: str, content_id: str) -> None:
        """The batch recorded for this content was not ours after all: the next run creates one."""
        self._path(provider, content_id).unlink(missing_ok=True)

    def done(self, provider: str, content_id: str) -> None:
        """Results collected (and cached): the state moves to `collected/` as an audit trail."""
        path = self._path(provider, content_id)
        if path.exists():
            target = self.root / provider / "collected" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)

"""A local stand-in for the Anthropic and OpenAI HTTP APIs, for tests and benchmarks.

It listens on 127.0.0.1 (ephemeral port) and speaks the subset of both APIs that the official SDKs use
here: Anthropic `POST /v1/messages`, message batches (create, retrieve, JSONL results at `results_url`);
OpenAI `POST /v1/chat/completions`, files (multipart upload, content) and batches (create, retrieve).
The real `anthropic` and `openai` clients are pointed at it with `base_url`.

Its "model" reads the original file and the marker line from our generation prompt and makes a small,
real edit: a comment line inserted after a unique line near the middle, with a lazy snippet anchored
around it. Given THE inference prompt it answers as a served Fast Apply model (the deterministic
applier's merge, in tags); given the evaluation judge's prompt it grades each OUTPUT against its
reference and answers the verdicts out of order, plus one for an id it was never shown. It records every request, and injects faults chosen by a seeded hash of the request body:
- transient, first attempt only (the SDK's retry then succeeds): 429 with Retry-After, 500, 529
  (Anthropic) / 503 (OpenAI), and slow responses that outlast the client's timeout;
- in the answer: truncated (stop reason max_tokens / finish_reason length), malformed (no tags), and
  disagreeing (the final holds a change the snippet does not show);
- in batches: results always out of order, and per request errored, expired or missing.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import json
import random
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRANSIENT = ("rate_limit", "server_error", "overloaded", "slow")
CONTENT = ("truncated", "malformed", "disagree")
BATCH_ONLY = ("errored", "expired", "missing")


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Batch:
    provider: str
    id: str
    requests: list[tuple[str, dict]]  # (custom_id, request body)
    polls: int = 0
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    results: list[str] | None = None  # JSONL lines, computed once when the batch ends
    metadata: dict | None = None


@dataclass
class StandIn:
    """`with StandIn(faults={"rate_limit": 0.05, ...}) as server:` then use server.anthropic_url etc."""

    faults: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    latency: float = 0.0  # seconds added to every answer
    slow_seconds: float = 2.0  # how long a "slow" fault stalls (make it longer than the client timeout)
    retry_after: str = "0.2"  # the Retry-After header of a 429 (seconds)
    batch_polls: int = 1  # retrieves that still say "in progress" before a batch ends
    hold_batches: threading.Event = field(default_factory=threading.Event)  # set: batches never end
    # set: a batch create is carried out, then its answer is held back (a client killed during the call)
    hold_creates: threading.Event = field(default_factory=threading.Event)
    lists_batches: bool = True  # False: GET of the batch lists is a 404 (a server without that endpoint)

    def __post_init__(self):
        unknown = set(self.faults) - set(TRANSIENT + CONTENT + BATCH_ONLY)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}")
        self.requests: list[Recorded] = []
        self.injected: Counter[str] = Counter()  # transient faults, one per failed attempt
        self.content_faults: dict[str, str] = {}  # answer faults by request identity (body hash or custom_id)
        self.batches: dict[str, Batch] = {}
        self.files: dict[str, bytes] = {}
        self._attempts: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._ids = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> StandIn:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # serve_forever checks for shutdown every poll_interval (0.5 s by default): every `with StandIn()`
        # would wait that long on exit. Requests are answered as they arrive whatever the interval.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def anthropic_url(self) -> str:
        return self.url

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    # -- what happened ---------------------------------------------------------------------------
    def answer_faults(self) -> Counter[str]:
        """How many requests got each answer fault (truncated, malformed, disagree, errored, ...)."""
        return Counter(self.content_faults.values())

    def calls(self, method: str, path: str) -> list[Recorded]:
        """Recorded requests with this method whose path matches `path` (a regex, whole path)."""
        return [r for r in self.requests if r.method == method and re.fullmatch(path, r.path)]

    def new_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}_{self._ids:06d}"

    # -- faults and answers ----------------------------------------------------------------------
    def _pick(self, kinds: tuple[str, ...], *key: object) -> str | None:
        point = _unit(self.seed, *key)
        for kind in kinds:
            point -= self.faults.get(kind, 0.0)
            if point < 0:
                return kind
        return None

    def transient_fault(self, body: bytes) -> str | None:
        digest = hashlib.sha256(body).hexdigest()
        with self._lock:
            attempt = self._attempts[digest]
            self._attempts[digest] += 1
        fault = self._pick(TRANSIENT, "transient", digest) if attempt == 0 else None
        if fault:
            self.injected[fault] += 1
        return fault

    def answer(self, prompt: str, identity: str, *, batch: bool = False) -> tuple[str, bool] | str:
        """(text, truncated), or a batch-only fault name."""
        fault = self._pick(CONTENT + (BATCH_ONLY if batch else ()), "content", identity)
        if fault:
            self.content_faults[identity] = fault
        if fault in BATCH_ONLY:
            return fault
        if fault == "malformed":
            return "Sure! I changed the file as asked; let me know if you need anything else.", False
        if prompt.startswith(MERGE_PROMPT_START):
            text = merge_answer(prompt)
        elif prompt.startswith(JUDGE_PROMPT_START):
            text = judge_answer(prompt)
        else:
            text = edit_answer(prompt, tag=identity[:8], disagree=fault == "disagree")
        if fault == "truncated":
            return text[: len(text) // 2], True
        return text, False


MERGE_PROMPT_START = "Merge all changes from the <update> snippet"  # THE inference prompt (a served model)
JUDGE_PROMPT_START = "Grade these"  # the evaluation judge


def merge_answer(prompt: str) -> str:
    """What the stand-in Fast Apply model answers: the deterministic applier's merge (the original where
    the applier refuses), in the contract's tags."""
    from fastapply_pipeline.core.apply import apply_snippet

    original = prompt.split("\n<code>", 1)[1].split("</code>\n\n<update>", 1)[0]
    snippet = prompt.split("</code>\n\n<update>", 1)[1].rsplit("</update>\n\nProvide", 1)[0]
    result = apply_snippet(original, snippet)
    return "<updated-code>" + (result.merged if result.ok else original) + "</updated-code>"


_JUDGE_EXAMPLE = re.compile(
    r'<example id="([^"]+)">.*?<reference>\n(.*?)\n</reference>\n<output>\n(.*?)\n</output>\n</example>',
    re.DOTALL,
)


def judge_answer(prompt: str) -> str:
    """What the stand-in judge answers: "correct" when the OUTPUT equals the reference up to whitespace,
    as a JSON array in reverse order of the examples, with one verdict for an id it was never shown."""
    verdicts = [
        {
            "id": key,
            "verdict": "correct" if output.split() == reference.split() else "incorrect",
            "reason": "same code up to whitespace" if output.split() == reference.split() else "differs",
        }
        for key, reference, output in _JUDGE_EXAMPLE.findall(prompt)
    ]
    verdicts.reverse()
    verdicts.append({"id": "x-invented", "verdict": "correct", "reason": "an id the judge made up"})
    return "Here are my verdicts:\n```json\n" + json.dumps(verdicts, indent=1) + "\n```"


def edit_answer(prompt: str, *, tag: str, disagree: bool = False) -> str:
    """What the stand-in model writes: a real, small edit of the file in the prompt, in our tags."""
    original = prompt.split("<original-code>\n", 1)[1].split("\n</original-code>", 1)[0]
    marker = re.search(r"^((#|//) \.\.\. existing code \.\.\.)$", prompt, re.MULTILINE)
    marker_line, comment = (
        (marker.group(1), marker.group(2)) if marker else ("// ... existing code ...", "//")
    )
    lines = original.split("\n")
    counts = Counter(line.strip() for line in lines)
    unique = [i for i in range(len(lines) - 1) if lines[i].strip() and counts[lines[i].strip()] == 1]
    middle = len(lines) // 2
    i = min(unique, key=lambda j: (abs(j - middle), j)) if unique else len(lines) - 1
    following = lines[i + 1] if i + 1 < len(lines) else lines[i]
    indent = re.match(r"\s*", following if following.strip() else lines[i]).group(0)
    new_line = f"{indent}{comment} reviewed in change {tag}"
    final_lines = [*lines[: i + 1], new_line, *lines[i + 1 :]]
    low, high = max(0, i - 1), min(len(final_lines), i + 3)
    snippet = ([marker_line] if low > 0 else []) + final_lines[low:high]
    snippet += [marker_line] if high < len(final_lines) else []
    if disagree:  # an extra change at the top that the snippet does not show
        final_lines.insert(0, f"{comment} unrequested change {tag}")
    parts = ["<update-snippet>", *snippet, "</update-snippet>"]
    if "<final-code>" in prompt.split("</original-code>", 1)[1]:
        parts += ["<final-code>", *final_lines, "</final-code>"]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart (delayed ACK)
    standin: StandIn

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        content_type = "application/json" if not isinstance(payload, bytes) else "application/octet-stream"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that gave up ("slow")
            self.wfile.write(data)

    def _record(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.standin._lock:
            self.standin.requests.append(
                Recorded(self.command, self.path.split("?")[0], dict(self.headers), body, time.monotonic())
            )
        return body

    def do_GET(self) -> None:
        self._record()
        self._route("GET")

    def do_POST(self) -> None:
        self._body = self._record()
        self._route("POST")

    def _route(self, method: str) -> None:
        path = self.path.split("?")[0]
        routes = [
            ("POST", r"/v1/messages", self._messages),
            ("POST", r"/v1/messages/batches", self._anthropic_batch_create),
            ("GET", r"/v1/messages/batches", self._anthropic_batch_list),
            ("GET", r"/v1/messages/batches/([\w-]+)", self._anthropic_batch_get),
            ("GET", r"/v1/messages/batches/([\w-]+)/results", self._anthropic_batch_results),
            ("POST", r"/v1/chat/completions", self._chat),
            ("POST", r"/v1/files", self._file_upload),
            ("GET", r"/v1/files/([\w-]+)/content", self._file_content),
            ("POST", r"/v1/batches", self._openai_batch_create),
            ("GET", r"/v1/batches", self._openai_batch_list),
            ("GET", r"/v1/batches/([\w-]+)", self._openai_batch_get),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return handler(*match.groups())
        self._send(404, {"error": {"type": "not_found_error", "message": f"no route {method} {path}"}})

    # -- shared sync behaviour -------------------------------------------------------------------
    def _transient(self, provider: str) -> bool:
        """Inject a transient fault; True when the request has been answered with it."""
        fault = self.standin.transient_fault(self._body)
        if self.standin.latency:
            time.sleep(self.standin.latency)
        if fault == "slow":
            time.sleep(self.standin.slow_seconds)
            return False  # answers normally, after the client has given up
        if fault is None:
            return False
        status = {
            "rate_limit": 429,
            "server_error": 500,
            "overloaded": 529 if provider == "anthropic" else 503,
        }
        kind = {
            "rate_limit": "rate_limit_error",
            "server_error": "api_error",
            "overloaded": "overloaded_error",
        }
        headers = {"retry-after": self.standin.retry_after} if fault == "rate_limit" else {}
        if provider == "anthropic":
            payload = {"type": "error", "error": {"type": kind[fault], "message": f"injected {fault}"}}
        else:
            payload = {
                "error": {"message": f"injected {fault}", "type": kind[fault], "param": None, "code": None}
            }
        self._send(status[fault], payload, headers)
        return True

    # -- Anthropic -------------------------------------------------------------------------------
    def _anthropic_message(self, params: dict, identity: str, *, batch: bool = False) -> dict | str:
        prompt = params["messages"][-1]["content"]
        answer = self.standin.answer(prompt, identity, batch=batch)
        if isinstance(answer, str):
            return answer
        text, truncated = answer
        return {
            "id": self.standin.new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": params["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "max_tokens" if truncated else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": len(prompt) // 4, "output_tokens": len(text) // 4},
        }

    def _messages(self) -> None:
        if self._transient("anthropic"):
            return
        params = json.loads(self._body)
        self._send(200, self._anthropic_message(params, hashlib.sha256(self._body).hexdigest()))

    def _anthropic_batch_create(self) -> None:
        payload = json.loads(self._body)
        batch = Batch(
            "anthropic",
            self.standin.new_id("msgbatch"),
            [(r["custom_id"], r["params"]) for r in payload["requests"]],
        )
        self.standin.batches[batch.id] = batch
        self._hold_create()
        self._send(200, self._anthropic_batch_json(batch))

    def _hold_create(self) -> None:
        while self.standin.hold_creates.is_set():
            time.sleep(0.05)

    def _newest_first(self, provider: str) -> list[Batch]:
        return [b for b in reversed(self.standin.batches.values()) if b.provider == provider]

    def _anthropic_batch_list(self) -> None:
        if not self.standin.lists_batches:
            return self._send(
                404, {"type": "error", "error": {"type": "not_found_error", "message": "no list"}}
            )
        data = [self._anthropic_batch_json(b) for b in self._newest_first("anthropic")]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        self._send(200, {"data": data, "has_more": False, "first_id": first, "last_id": last})

    def _anthropic_batch_json(self, batch: Batch) -> dict:
        ended = self._ended(batch)
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {
                "processing": 0 if ended else len(batch.requests),
                "succeeded": len(batch.requests) if ended else 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": "2026-11-22T00:00:00Z",
            "expires_at": "2026-11-23T00:00:00Z",
            "ended_at": "2026-11-22T00:01:00Z" if ended else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.standin.url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def _ended(self, batch: Batch) -> bool:
        if self.standin.hold_batches.is_set():
            return False
        return batch.polls > self.standin.batch_polls

    def _anthropic_batch_get(self, batch_id: str) -> None:
        batch = self.standin.batches.get(batch_id)
        if batch is None:
            return self._send(
                404, {"type": "error", "error": {"type": "not_found_error", "message": batch_id}}
            )
        batch.polls += 1
        self._send(200, self._anthropic_batch_json(batch))

    def _anthropic_batch_results(self, batch_id: str) -> None:
        batch = self.standin.batches[batch_id]
        if batch.results is None:
            lines = []
            for custom_id, params in batch.requests:
                message = self._anthropic_message(params, custom_id, batch=True)
                if message == "missing":
                    continue
                if message == "errored":
                    error = {
                        "type": "error",
                        "error": {"type": "invalid_request_error", "message": "injected"},
                    }
                    result = {"type": "errored", "error": error}
                elif message == "expired":
                    result = {"type": "expired"}
                else:
                    result = {"type": "succeeded", "message": message}
                lines.append(json.dumps({"custom_id": custom_id, "result": result}))
            random.Random(batch_id).shuffle(lines)  # results come in any order
            batch.results = lines
        self._send(200, ("\n".join(batch.results) + "\n").encode())

    # -- OpenAI ----------------------------------------------------------------------------------
    def _chat_completion(self, body: dict, identity: str, *, batch: bool = False) -> dict | str:
        prompt = body["messages"][-1]["content"]
        answer = self.standin.answer(prompt, identity, batch=batch)
        if isinstance(answer, str):
            return answer
        text, truncated = answer
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {
            "id": self.standin.new_id("chatcmpl"),
            "object": "chat.completion",
            "created": 1795000000,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": "length" if truncated else "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }

    def _chat(self) -> None:
        if self._transient("openai"):
            return
        body = json.loads(self._body)
        self._send(200, self._chat_completion(body, hashlib.sha256(self._body).hexdigest()))

    def _file_json(self, file_id: str, purpose: str, size: int) -> dict:
        return {
            "id": file_id,
            "object": "file",
            "bytes": size,
            "created_at": 1795000000,
            "filename": f"{file_id}.jsonl",
            "purpose": purpose,
            "status": "processed",
        }

    def _file_upload(self) -> None:
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + self._body)
        fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        content = fields["file"].get_payload(decode=True)
        purpose = fields["purpose"].get_payload(decode=True).decode()
        file_id = self.standin.new_id("file")
        self.standin.files[file_id] = content
        self._send(200, self._file_json(file_id, purpose, len(content)))

    def _file_content(self, file_id: str) -> None:
        if file_id not in self.standin.files:
            return self._send(404, {"error": {"message": file_id, "type": "invalid_request_error"}})
        self._send(200, self.standin.files[file_id])

    def _openai_batch_create(self) -> None:
        payload = json.loads(self._body)
        lines = self.standin.files[payload["input_file_id"]].decode().splitlines()
        requests = [(entry["custom_id"], entry["body"]) for entry in map(json.loads, filter(None, lines))]
        batch = Batch(
            "openai",
            self.standin.new_id("batch"),
            requests,
            input_file_id=payload["input_file_id"],
            metadata=payload.get("metadata"),
        )
        self.standin.batches[batch.id] = batch
        self._hold_create()
        self._send(200, self._openai_batch_json(batch))

    def _openai_batch_list(self) -> None:
        if not self.standin.lists_batches:
            return self._send(404, {"error": {"message": "no list", "type": "invalid_request_error"}})
        data = [self._openai_batch_json(b) for b in self._newest_first("openai")]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        self._send(
            200, {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": False}
        )

    def _openai_batch_json(self, batch: Batch) -> dict:
        ended = self._ended(batch)
        if ended and batch.results is None:
            self._finish_openai_batch(batch)
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": "completed" if ended else "in_progress",
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": 1795000000,
            "request_counts": {"total": len(batch.requests), "completed": 0, "failed": 0},
            "metadata": batch.metadata,
        }

    def _finish_openai_batch(self, batch: Batch) -> None:
        output, errors = [], []
        for custom_id, body in batch.requests:
            completion = self._chat_completion(body, custom_id, batch=True)
            line_id = self.standin.new_id("batch_req")
            if completion == "missing":
                continue
            if completion in ("errored", "expired"):
                code = "invalid_request" if completion == "errored" else "batch_expired"
                errors.append(
                    {
                        "id": line_id,
                        "custom_id": custom_id,
                        "response": None,
                        "error": {"code": code, "message": "injected"},
                    }
                )
            else:
                response = {"status_code": 200, "request_id": line_id, "body": completion}
                output.append({"id": line_id, "custom_id": custom_id, "response": response, "error": None})
        rng = random.Random(batch.id)
        rng.shuffle(output)  # results come in any order
        batch.results = [json.dumps(x) for x in output + errors]
        batch.output_file_id = self.standin.new_id("file")
        self.standin.files[batch.output_file_id] = "\n".join(json.dumps(x) for x in output).encode() + b"\n"
        if errors:
            batch.error_file_id = self.standin.new_id("file")
            self.standin.files[batch.error_file_id] = (
                "\n".join(json.dumps(x) for x in errors).encode() + b"\n"
            )

    def _openai_batch_get(self, batch_id: str) -> None:
        batch = self.standin.batches.get(batch_id)
        if batch is None:
            return self._send(404, {"error": {"message": batch_id, "type": "invalid_request_error"}})
        batch.polls += 1
        self._send(200, self._openai_batch_json(batch))

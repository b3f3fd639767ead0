"""An LLM judge for outputs that are not exact matches (OpenAI-compatible endpoint).

The judge is shown, for each example, the original file, the update snippet, the reference merge and
the candidate's OUTPUT (the reference pipeline's judge was shown the reference instead, so it graded the
dataset, not the model). Examples go several to a request, each under an opaque id (a hash of candidate
and example: the judge does not learn which candidate wrote what), shuffled across candidates; the
judge answers a JSON array of {id, verdict, reason} in any order, and verdicts are paired back by id.
Nothing is matched by position. Ids the judge invents are counted and ignored; an example it skips, or
one whose request failed, gets no verdict (None) and is counted.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapply_pipeline.core.endpoints import KeySource
    from fastapply_pipeline.core.settings import JudgeSettings

JUDGE_SYSTEM = (
    "You grade code merges. Each example has an original file, an update snippet (lazy: a comment such as "
    "`... existing code ...` stands for unchanged code), the reference merge, and a candidate OUTPUT. "
    "The output is correct when it makes the changes the snippet asks for and keeps the rest of the original: "
    "equivalent to the reference, up to whitespace that does not change meaning. It is incorrect when it drops "
    "code, makes changes the snippet does not ask for, keeps an elision comment, or stops early.\n"
    'Answer with a JSON array only, one object per example, in any order: {"id": "<the example id>", '
    '"verdict": "correct" or "incorrect", "reason": "<one short sentence>"}.'
)


@dataclass(frozen=True)
class JudgeItem:
    id: str
    language: str
    original: str
    snippet: str
    reference: str
    output: str


@dataclass(frozen=True)
class Verdict:
    correct: bool | None  # None: no verdict (the judge skipped it, or its request failed)
    reason: str


def item_id(candidate: str, triple_id: str) -> str:
    """Opaque and stable: the judge cannot tell candidates apart by their ids."""
    return "x" + hashlib.sha256(f"{candidate}\0{triple_id}".encode()).hexdigest()[:10]


def judge_prompt(items: Sequence[JudgeItem]) -> str:
    parts = [f"Grade these {len(items)} examples."]
    for item in items:
        parts.append(
            f'<example id="{item.id}">\n<language>{item.language}</language>\n'
            f"<original>\n{item.original}\n</original>\n<update>\n{item.snippet}\n</update>\n"
            f"<reference>\n{item.reference}\n</reference>\n<output>\n{item.output}\n</output>\n</example>"
        )
    return "\n\n".join(parts)


def _first_json_array(text: str) -> list | None:
    """The first JSON array in the text (prose or a code fence around it, brackets in the prose)."""
    decoder = json.JSONDecoder()
    for start in (i for i, char in enumerate(text) if char == "["):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, list) and (not value or any(isinstance(v, dict) for v in value)):
            return value
    return None


def parse_verdicts(text: str, expected: Sequence[str]) -> tuple[dict[str, Verdict], Counter[str]]:
    """Verdicts for the expected ids found in a reply, and counts of what was wrong with the reply."""
    problems: Counter[str] = Counter()
    entries = _first_json_array(text)
    if entries is None:
        problems["unparseable_reply"] += 1
        return {}, problems
    wanted = set(expected)
    verdicts: dict[str, Verdict] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            problems["malformed_entry"] += 1
            continue
        key, verdict = str(entry.get("id", "")), str(entry.get("verdict", "")).strip().lower()
        if key not in wanted:
            problems["unknown_id"] += 1
        elif key in verdicts:
            problems["repeated_id"] += 1
        elif verdict not in ("correct", "incorrect"):
            problems["unknown_verdict"] += 1
        else:
            verdicts[key] = Verdict(verdict == "correct", str(entry.get("reason", ""))[:500])
    return verdicts, problems


def judge_outputs(
    settings: JudgeSettings,
    items: Sequence[JudgeItem],
    *,
    keys: KeySource,
    seed: int = 0,
    on_reply: Callable[[str, object], None] = lambda key, reply: None,
) -> tuple[dict[str, Verdict], Counter[str]]:
    """A verdict per item id (None where none came back), and counts: asked, requests, and problems."""
    from fastapply_pipeline.core.endpoints import chat_all

    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    size = settings.batch_size
    batches = {f"judge-{i // size:05d}": shuffled[i : i + size] for i in range(0, len(shuffled), size)}
    requests = {
        key: [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": judge_prompt(batch)}]
        for key, batch in batches.items()
    }
    replies = chat_all(
        settings,
        requests,
        max_tokens={key: settings.max_tokens for key in requests},
        what="eval.judge",
        keys=keys,
        on_reply=on_reply,
    )
    stats: Counter[str] = Counter(asked=len(items), requests=len(requests))
    verdicts: dict[str, Verdict] = {}
    for key, batch in batches.items():
        reply = replies[key]
        ids = [item.id for item in batch]
        if reply.error is not None:
            stats["failed_requests"] += 1
            found: dict[str, Verdict] = {}
            reason = f"judge request failed: {reply.error}"
        else:
            found, problems = parse_verdicts(reply.text, ids)
            stats.update(problems)
            if reply.truncated:
                stats["truncated_replies"] += 1
            reason = "the judge gave no verdict"
        for item_key in ids:
            verdicts[item_key] = found.get(item_key, Verdict(None, reason))
            if item_key not in found:
                stats["no_verdict"] += 1
    return verdicts, stats

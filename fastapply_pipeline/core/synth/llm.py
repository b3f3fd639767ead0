"""LLM generators: plan the requests for a repository's files, and judge every answer.

Planning is seeded and order-independent: each file's rank, provider (the configured mix, e.g. 70/30)
and edit goals (weighted, without repeats per file) come from hashes of (seed, repo, path), so adding a
file never reshuffles the others and the anthropic and openai assets agree on who takes which file.
Files the secret scan flags, or that already contain marker-like comments, never go into a request.

Every answer ends as one row: `ok` (the deterministic applier turns the LLM's snippet into exactly its
final), `flagged` (kept, with the reason the applier disagrees, for the dataset stage to judge), or
`rejected` with its reason (failed/missing/expired request, truncated, malformed, no change, marker in
the final, final does not parse).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import polars as pl

from fastapply_pipeline.core.apply import apply_snippet
from fastapply_pipeline.core.llm.cache import request_key
from fastapply_pipeline.core.llm.clients import PROVIDERS, Completion, LLMRequest
from fastapply_pipeline.core.llm.prompts import SYSTEM_PROMPT, Generation, generation_prompt, parse_generation
from fastapply_pipeline.core.markers import contains_marker, is_marker_line
from fastapply_pipeline.core.parsing import parses
from fastapply_pipeline.core.secrets import SecretScanner
from fastapply_pipeline.core.triples import TRIPLE_SCHEMA, Provenance, triple_id

_SHARED = ("triple_id", "repo", "commit", "path", "language", "generator", "edit_kind", "model")
LLM_ROW_SCHEMA = {
    **{name: TRIPLE_SCHEMA[name] for name in _SHARED},
    "api": pl.String,
    "status": pl.String,  # ok | flagged | rejected
    "reason": pl.String,  # why flagged or rejected; null when ok
    "original_code": pl.String,
    "update_snippet": pl.String,
    "final_code": pl.String,
    "hunks": pl.Int64,
    "request_key": pl.String,
    "input_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "cached": pl.Boolean,
    "response_text": pl.String,  # the raw answer of a rejected or flagged row, to inspect
}


def _unit(*parts: object) -> float:
    """A uniform number in [0, 1) from the parts (stable across runs and machines)."""
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_provider(seed: int, repo: str, path: str, mix: dict[str, float], enabled: Sequence[str]) -> str:
    """The provider that takes this file, with probability proportional to its share of the mix."""
    shares = [(name, mix.get(name, 0.0)) for name in enabled if mix.get(name, 0.0) > 0]
    total = sum(share for _, share in shares)
    point = _unit(seed, "provider", repo, path) * total
    for name, share in shares:
        point -= share
        if point < 0:
            return name
    return shares[-1][0]


def edit_goals(seed: int, repo: str, path: str, weights: dict[str, float], count: int) -> list[str]:
    """`count` distinct edit kinds for a file, drawn by weight without replacement (Efraimidis-Spirakis)."""
    keyed = [
        (_unit(seed, "goal", repo, path, kind) ** (1.0 / weight), kind)
        for kind, weight in sorted(weights.items())
        if weight > 0
    ]
    return [kind for _, kind in sorted(keyed, reverse=True)[:count]]


@dataclass(frozen=True)
class LLMJob:
    provenance: Provenance
    original: str
    request: LLMRequest


def plan_jobs(
    files: Iterable[tuple[str, str, str, str, str]],
    *,
    provider: str,
    enabled: Sequence[str],
    llm,
    seed: int,
    scanner: SecretScanner | None,
    count_tokens: Callable[[str], int] = lambda text: len(text) // 3,
) -> tuple[list[LLMJob], Counter[str]]:
    """The requests `provider` makes for (repo, commit, path, language, content) rows, and the skips."""
    settings = llm.provider(provider)
    adapter = PROVIDERS[provider]
    skipped: Counter[str] = Counter()
    ranked = sorted(files, key=lambda f: _unit(seed, "rank", f[0], f[2]))
    jobs: list[LLMJob] = []
    chosen = 0
    for repo, commit, path, language, content in ranked:
        if llm.files_per_repo is not None and chosen >= llm.files_per_repo:
            break
        mine = assign_provider(seed, repo, path, llm.mix, enabled) == provider
        # Eligibility is judged before the provider split, the same way in every provider's asset, so
        # that all of them agree on which files fill the per-repository cap.
        if scanner is not None and scanner.secret_types(path, content):
            skipped["secret_flagged"] += mine
            continue
        if contains_marker(content):
            skipped["marker_like_comment_in_file"] += mine
            continue
        chosen += 1
        if not mine:
            continue  # another provider's asset takes it
        for kind in edit_goals(seed, repo, path, dict(llm.edit_kinds), llm.edits_per_file):
            user = generation_prompt(
                path=path, language=language, original=content, edit_kind=kind, mode=llm.mode
            )
            body = adapter.body(
                settings.model,
                SYSTEM_PROMPT,
                user,
                temperature=settings.temperature,
                max_tokens=settings.max_tokens,
                max_tokens_param=settings.max_tokens_param,
            )
            key = request_key(provider, body, settings.base_url)
            request = LLMRequest(key, body, count_tokens(SYSTEM_PROMPT + user) + settings.max_tokens)
            provenance = Provenance(repo, commit, path, language, provider, kind)
            jobs.append(LLMJob(provenance, content, request))
    return jobs, +skipped


def judge(
    original: str, generation: Generation, language: str, mode: str
) -> tuple[str, str | None, str | None]:
    """(status, reason, final) for a well-formed answer."""
    result = apply_snippet(original, generation.snippet, language=language)
    if mode == "snippet_only":
        if not result.ok:
            return "rejected", f"applier_{result.reason}", None
        final = result.merged
    else:
        final = generation.final
    if final == original:
        return "rejected", "no_change", final
    if contains_marker(final):
        return "rejected", "marker_in_final", final
    if parses(original, language) and not parses(final, language):
        return "rejected", "final_does_not_parse", final
    if mode == "snippet_only":
        return "ok", None, final
    if not result.ok:
        return "flagged", f"applier_refused_{result.reason}", final
    if result.merged != final:
        return "flagged", "applier_disagrees", final
    return "ok", None, final


def hunk_count(snippet: str) -> int:
    """Runs of non-marker lines: the edited regions a snippet shows."""
    runs, inside = 0, False
    for line in snippet.splitlines():
        marker = is_marker_line(line)
        if not marker and not inside:
            runs += 1
        inside = not marker
    return runs


def llm_rows(jobs: Sequence[LLMJob], completions: dict[str, Completion], *, mode: str) -> pl.DataFrame:
    """One row per job (LLM_ROW_SCHEMA)."""
    rows = []
    for job in jobs:
        p = job.provenance
        completion = completions[job.request.key]
        snippet = final = None
        status, reason = "rejected", None
        if completion.status == "failed":
            reason = completion.error
        elif completion.truncated:
            reason = "truncated"
        else:
            parsed = parse_generation(completion.text, mode=mode, original=job.original)
            if isinstance(parsed, str):
                reason = parsed
            else:
                snippet = parsed.snippet
                status, reason, final = judge(job.original, parsed, p.language, mode)
        ok = status != "rejected"
        rows.append(
            {
                **asdict(p),
                "triple_id": triple_id(p.repo, p.path, job.original, final) if ok else job.request.key[:24],
                "model": job.request.body.get("model"),
                "api": completion.api,
                "status": status,
                "reason": reason,
                "original_code": job.original,
                "update_snippet": snippet,
                "final_code": final,
                "hunks": hunk_count(snippet) if snippet else None,
                "request_key": job.request.key,
                "input_tokens": completion.input_tokens,
                "output_tokens": completion.output_tokens,
                "cached": completion.cached,
                "response_text": completion.text if status != "ok" else None,
            }
        )
    return pl.DataFrame(rows, schema=LLM_ROW_SCHEMA)

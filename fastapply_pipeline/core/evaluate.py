"""Candidates on test rows: each candidate merges (original, snippet); every output is scored.

Candidates so far: `applier` (the deterministic applier: a refusal is an example it fails), `identity`
(output = original: the floor every candidate must beat), and a local model (with or without an
adapter) through `merge_with_model`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import polars as pl

from fastapply_pipeline.core.apply import apply_snippet
from fastapply_pipeline.core.metrics import score_example

# A candidate: (original, snippet) -> (merged file or None, missing tags?, output tokens or None)
Candidate = Callable[[str, str], tuple[str | None, bool, int | None]]


def applier_candidate(original: str, snippet: str) -> tuple[str | None, bool, int | None]:
    result = apply_snippet(original, snippet)
    return (result.merged if result.ok else None), False, None


def identity_candidate(original: str, snippet: str) -> tuple[str | None, bool, int | None]:
    return original, False, None


def model_candidate(model, tokenizer, *, prompt_lookup: int | None = 10) -> Candidate:
    from fastapply_pipeline.core.inference import merge_with_model

    def merge(original: str, snippet: str) -> tuple[str | None, bool, int | None]:
        result = merge_with_model(model, tokenizer, original, snippet, prompt_lookup=prompt_lookup)
        return result.merged, result.merged is None, result.new_tokens

    return merge


def evaluate(candidates: dict[str, Candidate], rows: Iterable[dict]) -> pl.DataFrame:
    """One row per (candidate, example): provenance, the metrics, latency and output tokens."""
    rows = list(rows)
    records = []
    for name, candidate in candidates.items():
        for row in rows:
            started = time.perf_counter()
            merged, missing_tags, tokens = candidate(row["original_code"], row["update_snippet"])
            seconds = time.perf_counter() - started
            scores = score_example(
                merged,
                reference=row["final_code"],
                original=row["original_code"],
                language=row["language"],
                missing_tags=missing_tags,
            )
            records.append(
                {
                    "candidate": name,
                    "triple_id": row["triple_id"],
                    "language": row["language"],
                    "generator": row["generator"],
                    "edit_kind": row["edit_kind"],
                    **scores.as_dict(),
                    "latency_seconds": seconds,
                    "output_tokens": tokens,
                    "output_tokens_per_second": (tokens / seconds) if tokens and seconds else None,
                    "output": merged,
                }
            )
    return pl.DataFrame(records)

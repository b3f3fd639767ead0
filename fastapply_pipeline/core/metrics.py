"""Evaluation metrics of a merged file against the reference final, one example at a time.

Each names a failure users of apply tools meet: exact and whitespace-normalized match; sorted-line match
(for parity with the reference pipeline's published numbers); chrF (sacrebleu); the line difference
split into dropped reference lines (lost code) and extra lines (unrequested changes); an elision marker
leaked into the output; a model answer without its closing tag (truncated or malformed); and whether
the output still parses (tree-sitter) where the original did.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import polars as pl

from fastapply_pipeline.core.markers import contains_marker
from fastapply_pipeline.core.parsing import parses

METRIC_COLUMNS = [
    "exact",
    "normalized",
    "sorted_lines",
    "chrf",
    "dropped_lines",
    "extra_lines",
    "marker_leak",
    "missing_tags",
    "parses",
]


@dataclass(frozen=True)
class ExampleScore:
    exact: bool
    normalized: bool
    sorted_lines: bool
    chrf: float  # 0-100
    dropped_lines: int  # reference lines missing from the output: lost code
    extra_lines: int  # output lines the reference does not have: unrequested changes
    marker_leak: bool
    missing_tags: bool  # no <updated-code>...</updated-code> in a model's answer: truncated or malformed
    parses: bool | None  # None where the original itself does not parse

    def as_dict(self) -> dict:
        return asdict(self)


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def line_differences(output: str, reference: str) -> tuple[int, int]:
    """(dropped, extra): reference lines the output lacks, output lines the reference lacks (multisets)."""
    out, ref = Counter(_lines(output)), Counter(_lines(reference))
    return sum((ref - out).values()), sum((out - ref).values())


def chrf(output: str, reference: str) -> float:
    from sacrebleu.metrics import CHRF

    return float(CHRF().sentence_score(output, [reference]).score)


def _parses(text: str, language: str) -> bool | None:
    """Whether the text parses; None for a language without a grammar here (no parse check)."""
    try:
        return parses(text, language)
    except ValueError:
        return None


def score_example(
    output: str | None, *, reference: str, original: str, language: str, missing_tags: bool = False
) -> ExampleScore:
    """Scores of one output (None: the candidate produced no file, e.g. the applier refused)."""
    original_parses = _parses(original, language)
    if output is None:
        dropped, _ = line_differences("", reference)
        return ExampleScore(
            False, False, False, 0.0, dropped, 0, False, missing_tags, False if original_parses else None
        )
    dropped, extra = line_differences(output, reference)
    return ExampleScore(
        exact=output == reference,
        normalized=" ".join(output.split()) == " ".join(reference.split()),
        sorted_lines=sorted(line.strip() for line in output.strip().splitlines())
        == sorted(line.strip() for line in reference.strip().splitlines()),
        chrf=chrf(output, reference),
        dropped_lines=dropped,
        extra_lines=extra,
        marker_leak=contains_marker(output),
        missing_tags=missing_tags,
        parses=_parses(output, language) if original_parses else None,
    )


def aggregate(scores: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Per group (in order of first appearance): examples, the share of exact / normalized / sorted-line
    matches, marker leaks, missing tags and parsing outputs (and of judged-correct ones, where judged),
    mean chrF, mean dropped / extra lines, median latency and output tokens per second (all tokens over
    all seconds, where the candidate reports tokens)."""
    flags = ["exact", "normalized", "sorted_lines", "marker_leak", "missing_tags", "parses"]
    rates = [pl.col(name).cast(pl.Float64).mean().alias(name) for name in flags]
    if "judge_correct" in scores.columns:  # over all examples: one without a verdict is not a success
        rates.append(pl.col("judge_correct").fill_null(False).cast(pl.Float64).mean().alias("judge_correct"))
        rates.append(pl.col("judge_correct").is_null().sum().alias("no_verdict"))
    means = [pl.col(name).mean().alias(name) for name in ("chrf", "dropped_lines", "extra_lines")]
    if "latency_seconds" not in scores.columns:  # scores alone, not candidate runs
        return scores.group_by(by, maintain_order=True).agg(pl.len().alias("examples"), *rates, *means)
    timed = pl.col("output_tokens").is_not_null() & pl.col("latency_seconds").is_not_null()
    speed = [
        pl.col("latency_seconds").median().alias("latency_s"),
        pl.when(timed.any())
        .then(pl.col("output_tokens").filter(timed).sum() / pl.col("latency_seconds").filter(timed).sum())
        .otherwise(None)
        .alias("tokens_per_s"),
    ]
    return scores.group_by(by, maintain_order=True).agg(pl.len().alias("examples"), *rates, *means, *speed)

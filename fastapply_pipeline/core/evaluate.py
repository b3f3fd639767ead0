"""Candidates on test rows: each candidate merges (original, snippet); every output is scored.

Candidates: `applier` (the deterministic applier: a refusal is an example it fails), `identity` (output =
original: the floor every candidate must beat), a local model (with or without an adapter) through
`merge_with_model`, and any OpenAI-compatible endpoint (THE inference prompt, greedy). A candidate is a
runner: rows in, one `Merge` per row out, in order, calling `tick()` as each example finishes (progress).
`judge` adds an LLM judge's verdicts on the outputs that are not exact matches.

`prepare_evaluation` is the evaluation that eval_scores and `fastapply eval` both run, from the eval
settings (EvalSettings): the rows (a seeded sample, and eval.extra_data) and the candidates' runners
(local models through a loader the caller passes: core knows nothing of Dagster or the command line);
then `Evaluation.score` (`evaluate`), `.judge` (eval.judge) and `.speed` (the prompt-lookup speedup).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import polars as pl

from fastapply_pipeline.core.apply import apply_snippet
from fastapply_pipeline.core.artifacts import DATASET_HF
from fastapply_pipeline.core.metrics import METRIC_COLUMNS, aggregate, score_example

if TYPE_CHECKING:
    from pathlib import Path

    from fastapply_pipeline.core.endpoints import KeySource
    from fastapply_pipeline.core.inference import SpeedReport
    from fastapply_pipeline.core.settings import EndpointSettings, EvalSettings, JudgeSettings


@dataclass(frozen=True)
class Merge:
    output: str | None  # the merged file; None: no file (refused, tags missing, request failed)
    missing_tags: bool = False  # a model answered without a closed <updated-code> tag
    output_tokens: int | None = None
    seconds: float | None = None  # None: timed around the call by `per_example`
    error: str | None = None  # why there is no output, where a reason is known
    merged_by: str | None = None  # hybrid candidates: "applier" or "model"


Runner = Callable[[Sequence[dict], Callable[[], None]], list[Merge]]


def per_example(merge: Callable[..., Merge]) -> Runner:
    """A runner from a function of one (original, snippet[, language]), timing each call."""

    def run(rows: Sequence[dict], tick: Callable[[], None]) -> list[Merge]:
        merges = []
        for row in rows:
            started = time.perf_counter()
            result = merge(row["original_code"], row["update_snippet"], language=row.get("language"))
            if result.seconds is None:
                result = replace(result, seconds=time.perf_counter() - started)
            merges.append(result)
            tick()
        return merges

    return run


def _applier(original: str, snippet: str, language: str | None = None) -> Merge:
    # ("unknown", load_rows' filler, is a language without grammar or sections: plain line alignment)
    result = apply_snippet(original, snippet, language=language)
    return Merge(result.merged) if result.ok else Merge(None, error=f"applier_refused:{result.reason}")


applier_candidate = per_example(_applier)
identity_candidate = per_example(lambda original, snippet, language=None: Merge(original))


def hybrid_candidate(model: Runner) -> Runner:
    """The deterministic applier first; the rows it refuses go to `model` (how an editor would use an
    adapter: exact and instant where the snippet is unambiguous, learned where it is not). Each merge
    says which of the two wrote it (`merged_by`)."""

    def run(rows: Sequence[dict], tick: Callable[[], None]) -> list[Merge]:
        merges: list[Merge | None] = []
        refused: list[int] = []
        for row in rows:
            started = time.perf_counter()
            merge = _applier(row["original_code"], row["update_snippet"], row.get("language"))
            if merge.output is not None:
                merges.append(replace(merge, seconds=time.perf_counter() - started, merged_by="applier"))
                tick()
            else:
                merges.append(None)
                refused.append(len(merges) - 1)
        for at, merge in zip(refused, model([rows[i] for i in refused], tick), strict=True):
            merges[at] = replace(merge, merged_by="model")
        return merges

    return run


def model_candidate(model, tokenizer, *, prompt_lookup: int | None) -> Runner:
    """A local model (`prompt_lookup`: EvalSettings.prompt_lookup, the draft length; None: plain greedy)."""
    from fastapply_pipeline.core.inference import merge_with_model

    def merge(original: str, snippet: str, language: str | None = None) -> Merge:
        result = merge_with_model(model, tokenizer, original, snippet, prompt_lookup=prompt_lookup)
        return Merge(result.merged, result.merged is None, result.new_tokens, result.seconds)

    return per_example(merge)


def endpoint_budget(original: str, snippet: str) -> int:
    """Output tokens to allow when none is configured: a generous count of the file, plus room."""
    return (len(original) + len(snippet)) // 3 + 256


def endpoint_candidate(settings: EndpointSettings, name: str, *, keys: KeySource) -> Runner:
    """An OpenAI-compatible endpoint, `settings.concurrency` at a time (`name`: eval.endpoints' key;
    its key, where `api_key_env` names one, from `keys`)."""
    from fastapply_pipeline.core.endpoints import chat_all
    from fastapply_pipeline.core.prompt import inference_messages, parse_answer

    def run(rows: Sequence[dict], tick: Callable[[], None]) -> list[Merge]:
        ids = [f"{i:06d}" for i in range(len(rows))]
        requests = {
            k: inference_messages(r["original_code"], r["update_snippet"])
            for k, r in zip(ids, rows, strict=True)
        }
        budget = {
            k: settings.max_tokens or endpoint_budget(r["original_code"], r["update_snippet"])
            for k, r in zip(ids, rows, strict=True)
        }
        replies = chat_all(
            settings,
            requests,
            max_tokens=budget,
            what=f"eval.endpoints.{name}",
            keys=keys,
            on_reply=lambda k, r: tick(),
        )
        merges = []
        for k in ids:
            reply = replies[k]
            if reply.error is not None:
                merges.append(Merge(None, False, None, reply.seconds, error=reply.error))
                continue
            merged = parse_answer(reply.text)
            error = None if merged is not None else ("truncated" if reply.truncated else "missing_tags")
            merges.append(Merge(merged, merged is None, reply.output_tokens, reply.seconds, error))
        return merges

    return run


RESULT_SCHEMA = {
    "candidate": pl.String,
    "triple_id": pl.String,
    "language": pl.String,
    "generator": pl.String,
    "edit_kind": pl.String,
    "exact": pl.Boolean,
    "normalized": pl.Boolean,
    "sorted_lines": pl.Boolean,
    "chrf": pl.Float64,
    "dropped_lines": pl.Int64,
    "extra_lines": pl.Int64,
    "marker_leak": pl.Boolean,
    "missing_tags": pl.Boolean,
    "parses": pl.Boolean,
    "latency_seconds": pl.Float64,
    "output_tokens": pl.Int64,
    "output_tokens_per_second": pl.Float64,
    "error": pl.String,
    "merged_by": pl.String,  # hybrid candidates: applier or model
    "output": pl.String,
}


def evaluate(
    candidates: dict[str, Runner],
    rows: Iterable[dict],
    *,
    progress: Callable[[str], None] = lambda candidate: None,
) -> pl.DataFrame:
    """One row per (candidate, example): provenance, the metrics, latency, output tokens and the output."""
    rows = list(rows)
    records = []
    for name, runner in candidates.items():
        merges = runner(rows, lambda name=name: progress(name))
        if len(merges) != len(rows):
            raise RuntimeError(f"candidate {name!r} returned {len(merges)} merges for {len(rows)} rows")
        for row, merge in zip(rows, merges, strict=True):
            scores = score_example(
                merge.output,
                reference=row["final_code"],
                original=row["original_code"],
                language=row["language"],
                missing_tags=merge.missing_tags,
            )
            tokens, seconds = merge.output_tokens, merge.seconds
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
                    "error": merge.error,
                    "merged_by": merge.merged_by,
                    "output": merge.output,
                }
            )
    # Every column typed up front: a column can be all-null for many rows (an untrained model's outputs)
    # and only then hold values; inference from the first rows would fail on them.
    return pl.DataFrame(records, schema=RESULT_SCHEMA)


def judge(
    results: pl.DataFrame, rows: Iterable[dict], settings: JudgeSettings, *, keys: KeySource, seed: int = 0
) -> tuple[pl.DataFrame, dict[str, int]]:
    """`results` with `judge_correct` and `judge_reason`, and the judge's counts.

    Exact matches are correct without asking; an example with no output is incorrect without asking;
    every other output is shown to the judge next to original, snippet and reference, and its verdict is
    paired back by the example's id.
    """
    from fastapply_pipeline.core.judge import JudgeItem, item_id, judge_outputs

    by_id = {row["triple_id"]: row for row in rows}
    items = []
    for record in results.iter_rows(named=True):
        if record["exact"] or record["output"] is None:
            continue
        row = by_id[record["triple_id"]]
        items.append(
            JudgeItem(
                id=item_id(record["candidate"], record["triple_id"]),
                language=row["language"],
                original=row["original_code"],
                snippet=row["update_snippet"],
                reference=row["final_code"],
                output=record["output"],
            )
        )
    verdicts, stats = judge_outputs(settings, items, keys=keys, seed=seed) if items else ({}, {})
    correct, reasons = [], []
    for record in results.iter_rows(named=True):
        if record["exact"]:
            correct.append(True)
            reasons.append("exact match")
        elif record["output"] is None:
            correct.append(False)
            reasons.append(f"no output ({record['error'] or 'missing tags'})")
        else:
            verdict = verdicts[item_id(record["candidate"], record["triple_id"])]
            correct.append(verdict.correct)
            reasons.append(verdict.reason)
    judged = results.with_columns(
        pl.Series("judge_correct", correct, dtype=pl.Boolean),
        pl.Series("judge_reason", reasons, dtype=pl.String),
    )
    return judged, dict(stats)


def summary_table(results: pl.DataFrame, by: Sequence[str] = ("candidate",)) -> tuple[list[str], list[list]]:
    """(headers, rows) of the metrics per group, numbers rounded: the table the asset and the CLI show."""
    summary = aggregate(results, list(by))
    metrics = [
        *METRIC_COLUMNS,
        *(["judge_correct", "no_verdict"] if "judge_correct" in summary.columns else []),
    ]
    columns = [*by, "examples", *metrics, "latency_s", "tokens_per_s"]

    def cell(value):
        if value is None:
            return "-"
        return round(value, 3) if isinstance(value, float) else value

    return columns, [[cell(row[c]) for c in columns] for row in summary.iter_rows(named=True)]


REQUIRED_COLUMNS = ("original_code", "update_snippet", "final_code")


class NoRows(ValueError):
    """The dataset, split or file holds no rows (`load_rows`)."""


class EvalDataError(ValueError):
    """An eval.extra_data set cannot be read (`evaluation_rows`)."""


def load_rows(path: str, split: str = "test") -> list[dict]:
    """Evaluation rows from a dataset: a `save_to_disk` folder (its `split`; the pipeline's dataset folder,
    holding hf/, works too), a folder of hand-written `.case` files (core.cases), a .parquet file, or a
    .jsonl file. Needs original_code, update_snippet and
    final_code; triple_id, language, generator and edit_kind are filled in where missing."""
    from pathlib import Path

    from fastapply_pipeline.core.cases import is_case_folder, load_cases

    source = Path(path).expanduser()
    if is_case_folder(source):  # hand-written .case files: the merge cases (a model cannot "refuse")
        rows = [case.as_row() for case in load_cases(source) if case.expect == "merge"]
    elif source.is_dir():
        from datasets import DatasetDict, load_from_disk

        if (source / DATASET_HF).is_dir():
            source = source / DATASET_HF
        try:
            data = load_from_disk(str(source))
        except FileNotFoundError as err:
            raise ValueError(f"{path} is not a dataset folder written by save_to_disk ({err})") from None
        if isinstance(data, DatasetDict):
            if split not in data:
                raise ValueError(f"{path} has no {split!r} split (it has {', '.join(data)}); pass --split")
            data = data[split]
        rows = data.to_list()
    elif source.suffix in (".parquet", ".jsonl", ".ndjson"):
        read = pl.read_parquet if source.suffix == ".parquet" else pl.read_ndjson
        try:
            rows = read(source).to_dicts()
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except (pl.exceptions.PolarsError, OSError) as err:  # torn, empty or not that format
            kind = "parquet" if source.suffix == ".parquet" else "JSON lines"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(
                f"{path} is not a readable {kind} file ({first}); rebuild or replace it"
            ) from None
    else:
        raise ValueError(f"{path}: expected a dataset folder, a .parquet file or a .jsonl file")
    if not rows:
        raise NoRows(f"{path} holds no rows")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(
            f"{path} lacks the column(s) {', '.join(missing)} (a row needs {', '.join(REQUIRED_COLUMNS)})"
        )
    defaults = {"language": "unknown", "generator": "unknown", "edit_kind": "unknown"}
    return [
        {
            **defaults,
            **{k: v for k, v in row.items() if v is not None},
            "triple_id": str(row.get("triple_id") or i),
        }
        for i, row in enumerate(rows)
    ]


# ---------------------------------------------------------------------------------------------------
# The evaluation of eval_scores and `fastapply eval`, from the eval settings

BASELINES = ("applier", "identity")
HYBRID = "hybrid"  # the applier, then the adapter where it refuses: it runs on the local model "adapter"
ModelLoader = Callable[[str], tuple[Any, Any]]  # a local candidate's name -> (model, tokenizer)


def sample_rows(rows: Iterable[dict], max_examples: int | None, seed: int) -> list[dict]:
    """A seeded sample of `max_examples` rows; all of them when there are no more (or no limit)."""
    rows = list(rows)
    if max_examples is not None and len(rows) > max_examples:
        return random.Random(seed).sample(rows, max_examples)
    return rows


def evaluation_rows(
    test: Iterable[dict], settings: EvalSettings, *, seed: int, resolve: Callable[[str], Path]
) -> list[dict]:
    """The test rows and each eval.extra_data set (read by `load_rows`; its path through `resolve`, e.g.
    FastApplyConfig.resolve), each sampled to max_examples; extra rows' ids are prefixed "<extra>:"."""
    rows = sample_rows(test, settings.max_examples, seed)
    for extra in settings.extra_data:  # e.g. the hand-written realistic set: scored beside the test split
        try:
            found = load_rows(str(resolve(extra)))
        except (ValueError, FileNotFoundError) as err:
            raise EvalDataError(f"eval.extra_data {extra!r}: {err}") from None
        sampled = sample_rows(found, settings.max_examples, seed)
        rows += [row | {"triple_id": f"{extra}:{row['triple_id']}"} for row in sampled]
    return rows


def local_models_needed(candidates: Iterable[str], settings: EvalSettings) -> list[str]:
    """The local models the candidates run on, sorted: every candidate that is not a baseline or an
    endpoint (adapter, base; the CLI's model), and the adapter for hybrid."""
    others = {*BASELINES, *settings.endpoints}
    return sorted({"adapter" if name == HYBRID else name for name in candidates if name not in others})


def candidate_runners(
    candidates: Iterable[str],
    settings: EvalSettings,
    models: Mapping[str, tuple[Any, Any]],
    *,
    keys: KeySource,
) -> dict[str, Runner]:
    """A runner per candidate, in order: the baselines, hybrid, eval.endpoints, and local models (from
    `models`: (model, tokenizer) by name) decoding with eval.prompt_lookup."""
    runners: dict[str, Runner] = {}
    for name in candidates:
        if name == "applier":
            runners[name] = applier_candidate
        elif name == "identity":
            runners[name] = identity_candidate
        elif name == HYBRID:
            runners[name] = hybrid_candidate(
                model_candidate(*models["adapter"], prompt_lookup=settings.prompt_lookup)
            )
        elif name in settings.endpoints:
            runners[name] = endpoint_candidate(settings.endpoints[name], name, keys=keys)
        else:
            runners[name] = model_candidate(*models[name], prompt_lookup=settings.prompt_lookup)
    return runners


@dataclass(frozen=True)
class Evaluation:
    """The rows and the candidates of one evaluation (`prepare_evaluation`), ready to score and time."""

    settings: EvalSettings
    seed: int
    rows: list[dict]
    runners: dict[str, Runner]
    models: dict[str, tuple[Any, Any]]  # the local models loaded, (model, tokenizer) by name
    keys: KeySource  # where the endpoints' and the judge's keys come from

    def score(self, progress: Callable[[str], None] = lambda candidate: None) -> pl.DataFrame:
        """`evaluate` every candidate on the rows (`progress(candidate)` after each example)."""
        return evaluate(self.runners, self.rows, progress=progress)

    def judge(self, results: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int] | None]:
        """`results` graded by eval.judge, and its counts; unchanged, and None, without a judge."""
        if self.settings.judge is None:
            return results, None
        return judge(results, self.rows, self.settings.judge, keys=self.keys, seed=self.seed)

    def speed(self) -> list[tuple[str, SpeedReport]]:
        """Plain greedy vs prompt lookup for each local model, on the first eval.speed_examples rows
        (none when prompt_lookup is off, speed_examples is 0, or no local model runs)."""
        from fastapply_pipeline.core.inference import measure_speedup

        lookup, count = self.settings.prompt_lookup, self.settings.speed_examples
        if not lookup or not count or not self.models:
            return []
        pairs = [(row["original_code"], row["update_snippet"]) for row in self.rows[:count]]
        return [
            (name, measure_speedup(model, tokenizer, pairs, prompt_lookup=lookup))
            for name, (model, tokenizer) in self.models.items()
        ]


def prepare_evaluation(
    test: Iterable[dict],
    settings: EvalSettings,
    *,
    seed: int,
    load_model: ModelLoader,
    resolve: Callable[[str], Path],
    keys: KeySource,
    candidates: Sequence[str] | None = None,
) -> Evaluation:
    """The rows (`evaluation_rows`: `resolve` finds eval.extra_data) and the runners of `candidates`
    (default: eval.candidates; the CLI names its own, e.g. "model"), the local ones loaded by
    `load_model(name)`, each once; the endpoints' and the judge's keys from `keys`."""
    rows = evaluation_rows(test, settings, seed=seed, resolve=resolve)
    names = list(settings.candidates if candidates is None else candidates)
    models = {name: load_model(name) for name in local_models_needed(names, settings)}
    runners = candidate_runners(names, settings, models, keys=keys)
    return Evaluation(settings, seed, rows, runners, models, keys)


SPEED_COLUMNS = [
    "candidate",
    "examples",
    "output tokens",
    "plain tok/s",
    "lookup tok/s",
    "speedup",
    "identical",
]


def speed_table(reports: Iterable[tuple[str, SpeedReport]]) -> tuple[list[str], list[list]]:
    """(headers, rows) of `Evaluation.speed`'s reports, numbers rounded: the table eval_scores shows."""
    rows = [
        [
            name,
            report.examples,
            report.tokens,
            round(report.plain_tokens_per_second, 1),
            round(report.lookup_tokens_per_second, 1),
            round(report.speedup, 2),
            f"{report.identical}/{report.examples}",
        ]
        for name, report in reports
    ]
    return SPEED_COLUMNS, rows

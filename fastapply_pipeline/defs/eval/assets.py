"""eval_scores: every candidate on the dataset's test split, scored, judged (optionally) and timed."""

import base64
import difflib
import json
import random
from collections import defaultdict

import dagster as dg
import polars as pl

from fastapply_pipeline.core.evaluate import (
    applier_candidate,
    endpoint_candidate,
    evaluate,
    hybrid_candidate,
    identity_candidate,
    judge,
    load_rows,
    model_candidate,
    summary_table,
)
from fastapply_pipeline.core.metrics import aggregate
from fastapply_pipeline.defs.reporting import count_table, markdown_table
from fastapply_pipeline.defs.resources import ArtifactsResource, FastApplyResource

LOCAL_MODELS = ("adapter", "base")


@dg.asset(
    group_name="eval",
    kinds={"polars", "parquet", "pytorch"},
    deps=["lora_adapter", "fastapply_dataset"],
    pool="gpu",
    io_manager_key="parquet_io_manager",
    check_specs=[
        dg.AssetCheckSpec(
            "adapter_beats_base",
            asset="eval_scores",
            description="The adapter's exact match is above its base model's, and it does not parse less often.",
        )
    ],
    description=(
        "Every candidate (the trained adapter, its base model, the deterministic applier, the identity "
        "baseline, and any OpenAI-compatible endpoint in eval.endpoints) merges the test split's (original, "
        "snippet) pairs with THE inference prompt (greedy; local models with prompt-lookup drafts); each "
        "output is scored: exact, whitespace-normalized and sorted-line match, chrF, dropped and extra lines, "
        "marker leak, missing tags, parse validity, latency, tokens/s; optionally graded by an LLM judge. "
        "Metadata: tables by candidate, language, generator and edit kind, a chart, the prompt-lookup "
        "speedup, the worst diffs. One row per (candidate, example)."
    ),
)
def eval_scores(
    context: dg.AssetExecutionContext, fastapply: FastApplyResource, artifacts: ArtifactsResource
):
    config = fastapply.load()
    settings = config.eval
    from datasets import load_from_disk

    store = artifacts.store()
    test = load_from_disk(str(store.fetch("dataset") / "hf"))["test"].to_list()
    if not test:
        raise dg.Failure(
            "the dataset's test split is empty: nothing to evaluate (see fastapply_dataset's split)"
        )
    if settings.max_examples is not None and len(test) > settings.max_examples:
        test = random.Random(config.seed).sample(test, settings.max_examples)
    for extra in settings.extra_data:  # e.g. the hand-written realistic set: scored beside the test split
        try:
            rows = load_rows(str(config.resolve(extra)))
        except (ValueError, FileNotFoundError) as err:
            raise dg.Failure(f"eval.extra_data {extra!r}: {err}") from None
        if settings.max_examples is not None and len(rows) > settings.max_examples:
            rows = random.Random(config.seed).sample(rows, settings.max_examples)
        test += [row | {"triple_id": f"{extra}:{row['triple_id']}"} for row in rows]
    wanted = list(settings.candidates)
    # hybrid = the applier, then the adapter where it refuses: it needs the adapter loaded too
    needed = sorted(
        {"adapter" if name == "hybrid" else name for name in wanted if name in (*LOCAL_MODELS, "hybrid")}
    )
    if needed:
        store.fetch("adapters/lora_adapter")
    local = _local_models(config, needed)
    runners = {}
    for name in wanted:
        if name == "hybrid":
            model, tokenizer = local["adapter"]
            runners[name] = hybrid_candidate(
                model_candidate(model, tokenizer, prompt_lookup=settings.prompt_lookup)
            )
        elif name in local:
            model, tokenizer = local[name]
            runners[name] = model_candidate(model, tokenizer, prompt_lookup=settings.prompt_lookup)
        elif name == "applier":
            runners[name] = applier_candidate
        elif name == "identity":
            runners[name] = identity_candidate
        else:
            runners[name] = endpoint_candidate(settings.endpoints[name], name)
    context.log.info(f"{len(runners)} candidate(s) on {len(test)} test example(s): {', '.join(runners)}")
    done: dict[str, int] = defaultdict(int)
    step = max(1, len(test) // 5)

    def progress(candidate: str) -> None:
        done[candidate] += 1
        if done[candidate] % step == 0 or done[candidate] == len(test):
            context.log.info(f"{candidate}: {done[candidate]}/{len(test)} examples")

    results = evaluate(runners, test, progress=progress)
    metadata = {"examples": len(test), "candidates": ", ".join(runners)}
    if settings.judge is not None:
        results, judge_counts = judge(results, test, settings.judge, seed=config.seed)
        metadata["judge"] = markdown_table(["judge", "count"], sorted(judge_counts.items()))
        metadata["judge_model"] = settings.judge.model

    columns, rows = summary_table(results)
    metadata["scores"] = markdown_table(columns, rows)
    for group in ("language", "generator", "edit_kind"):
        group_columns, group_rows = summary_table(results, ("candidate", group))
        keep = [group_columns.index(c) for c in _GROUP_COLUMNS if c in group_columns]
        metadata[f"scores_by_{group}"] = markdown_table(
            [group_columns[i] for i in keep], [[row[i] for i in keep] for row in group_rows]
        )
    summary = aggregate(results, ["candidate"])
    chart = _chart(summary, config.artifacts_dir / "eval" / "scores.png")
    metadata["chart"] = dg.MetadataValue.md(
        f"![exact match and tokens/s per candidate](data:image/png;base64,{chart})"
    )
    metadata["chart_path"] = dg.MetadataValue.path(store.publish("eval"))
    for row in summary.iter_rows(named=True):  # numbers Dagster plots across materializations
        metadata[f"exact/{row['candidate']}"] = float(row["exact"])
    speed = _speed(context, local, test, settings)
    if speed:
        metadata["prompt_lookup_speedup"] = markdown_table(
            ["candidate", "examples", "output tokens", "plain tok/s", "lookup tok/s", "speedup", "identical"],
            speed,
        )
    errors = results.filter(pl.col("error").is_not_null()).group_by("candidate", "error").len()
    if errors.height:
        metadata["no_output"] = count_table(
            "candidate: reason",
            {f"{r['candidate']}: {r['error']}": r["len"] for r in errors.iter_rows(named=True)},
        )
    metadata["worst_examples"] = dg.MetadataValue.md(_worst(results, test))
    yield dg.Output(results, metadata=metadata)
    yield _adapter_check(summary)


_GROUP_COLUMNS = (
    "candidate",
    "language",
    "generator",
    "edit_kind",
    "examples",
    "exact",
    "judge_correct",
    "chrf",
    "parses",
)


def _local_models(config, wanted: list[str]) -> dict:
    """The adapter and/or its base model (the one named by the adapter's config), each (model, tokenizer)."""
    if not wanted:
        return {}
    from fastapply_pipeline.core.inference import load_model

    adapter_dir = config.artifacts_dir / "adapters" / "lora_adapter" / "adapter"
    if not (adapter_dir / "adapter_config.json").is_file():
        raise dg.Failure(
            f"no adapter at {adapter_dir}: materialize lora_adapter first, or leave adapter and base out of "
            "eval.candidates"
        )
    base = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    download = config.training.allow_download
    models = {}
    for name in wanted:  # loaded apart: peft adds its layers to the model it is given
        adapter = str(adapter_dir) if name == "adapter" else None
        models[name] = load_model(base, adapter=adapter, allow_download=download)
    return models


def _speed(context, local: dict, test: list[dict], settings) -> list[list]:
    """Plain greedy vs prompt lookup for each local model, on the first `speed_examples` examples."""
    from fastapply_pipeline.core.inference import measure_speedup

    if not settings.prompt_lookup or not settings.speed_examples:
        return []
    pairs = [(row["original_code"], row["update_snippet"]) for row in test[: settings.speed_examples]]
    table = []
    for name, (model, tokenizer) in local.items():
        report = measure_speedup(model, tokenizer, pairs, prompt_lookup=settings.prompt_lookup)
        if report.identical < report.examples:
            context.log.warning(
                f"{name}: {report.examples - report.identical} answer(s) differ with prompt lookup"
            )
        context.log.info(
            f"{name}: prompt lookup speedup {report.speedup:.2f}x over {report.examples} example(s)"
        )
        table.append(
            [
                name,
                report.examples,
                report.tokens,
                round(report.plain_tokens_per_second, 1),
                round(report.lookup_tokens_per_second, 1),
                round(report.speedup, 2),
                f"{report.identical}/{report.examples}",
            ]
        )
    return table


def _chart(summary: pl.DataFrame, path) -> str:
    """The chart written beside the other eval artifacts; returned base64-encoded for the metadata."""
    from fastapply_pipeline.core.plots import candidate_chart

    png = candidate_chart(summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return base64.b64encode(png).decode()


def _adapter_check(summary: pl.DataFrame) -> dg.AssetCheckResult:
    rates = {row["candidate"]: row for row in summary.iter_rows(named=True)}
    if "adapter" not in rates or "base" not in rates:
        return dg.AssetCheckResult(
            check_name="adapter_beats_base",
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"skipped": "adapter and base are not both candidates"},
        )
    adapter, base = rates["adapter"], rates["base"]
    passed = adapter["exact"] > base["exact"] and (adapter["parses"] or 0) >= (base["parses"] or 0)
    return dg.AssetCheckResult(
        check_name="adapter_beats_base",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "adapter_exact": adapter["exact"],
            "base_exact": base["exact"],
            "adapter_parses": adapter["parses"] or 0.0,
            "base_parses": base["parses"] or 0.0,
        },
    )


def _worst(results: pl.DataFrame, test: list[dict], count: int = 3) -> str:
    """The lowest-chrF examples of the first candidate, as diffs of its output against the reference."""
    by_id = {row["triple_id"]: row for row in test}
    pick = results.filter(pl.col("candidate") == results["candidate"][0]).sort("chrf").head(count)
    parts = []
    for row in pick.iter_rows(named=True):
        reference = by_id[row["triple_id"]]["final_code"]
        output = row["output"] if row["output"] is not None else ""
        diff = "\n".join(
            difflib.unified_diff(
                reference.splitlines(), output.splitlines(), "reference", "output", lineterm="", n=1
            )
        )
        diff = diff[:1500] + ("\n..." if len(diff) > 1500 else "")
        label = "no file (refused, or tags missing)" if row["output"] is None else f"chrF {row['chrf']:.1f}"
        parts.append(f"**{row['candidate']}** `{row['triple_id']}`: {label}\n\n```diff\n{diff}\n```")
    return "\n\n".join(parts) or "(none)"

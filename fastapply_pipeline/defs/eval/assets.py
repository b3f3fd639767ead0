"""eval_scores: every candidate on the dataset's test split, scored, judged (optionally) and timed."""

import base64
import difflib
import json
from collections import defaultdict

import dagster as dg
import polars as pl

from fastapply_pipeline.core.artifacts import ADAPTER, ADAPTER_WEIGHTS, DATASET, EVAL
from fastapply_pipeline.core.evaluate import (
    EvalDataError,
    NoRows,
    load_rows,
    prepare_evaluation,
    speed_table,
    summary_table,
)
from fastapply_pipeline.core.metrics import aggregate
from fastapply_pipeline.defs.dataset.assets import DATASET_KEY
from fastapply_pipeline.defs.reporting import count_table, markdown_table
from fastapply_pipeline.defs.resources import ArtifactsResource, FastApplyResource, SecretsResource
from fastapply_pipeline.defs.training.assets import lora_adapter


@dg.asset(
    group_name="eval",
    kinds={"polars", "parquet", "pytorch"},
    deps=[lora_adapter, DATASET_KEY],
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
    context: dg.AssetExecutionContext,
    fastapply: FastApplyResource,
    artifacts: ArtifactsResource,
    secrets: SecretsResource,
):
    config = fastapply.load()
    settings = config.eval
    store = artifacts.store()
    try:
        test = load_rows(str(store.fetch(DATASET)), "test")
    except NoRows:
        raise dg.Failure(
            "the dataset's test split is empty: nothing to evaluate (see fastapply_dataset's split)"
        ) from None
    except ValueError as err:
        raise dg.Failure(f"the dataset's test split: {err}") from None
    try:
        evaluation = prepare_evaluation(
            test,
            settings,
            seed=config.seed,
            load_model=_model_loader(config, artifacts),
            resolve=config.resolve,
            keys=secrets.key,
        )
    except EvalDataError as err:  # an eval.extra_data set that cannot be read
        raise dg.Failure(str(err)) from None
    test, runners = evaluation.rows, evaluation.runners
    context.log.info(f"{len(runners)} candidate(s) on {len(test)} test example(s): {', '.join(runners)}")
    done: dict[str, int] = defaultdict(int)
    step = max(1, len(test) // 5)

    def progress(candidate: str) -> None:
        done[candidate] += 1
        if done[candidate] % step == 0 or done[candidate] == len(test):
            context.log.info(f"{candidate}: {done[candidate]}/{len(test)} examples")

    results, judge_counts = evaluation.judge(evaluation.score(progress))
    metadata = {"examples": len(test), "candidates": ", ".join(runners)}
    if judge_counts is not None:
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
    chart = _chart(summary, artifacts.path(EVAL) / "scores.png")
    metadata["chart"] = dg.MetadataValue.md(
        f"![exact match and tokens/s per candidate](data:image/png;base64,{chart})"
    )
    metadata["chart_path"] = dg.MetadataValue.path(store.publish(EVAL))
    for row in summary.iter_rows(named=True):  # numbers Dagster plots across materializations
        metadata[f"exact/{row['candidate']}"] = float(row["exact"])
    speed = evaluation.speed()
    for name, report in speed:
        if report.identical < report.examples:
            context.log.warning(
                f"{name}: {report.examples - report.identical} answer(s) differ with prompt lookup"
            )
        context.log.info(
            f"{name}: prompt lookup speedup {report.speedup:.2f}x over {report.examples} example(s)"
        )
    if speed:
        metadata["prompt_lookup_speedup"] = markdown_table(*speed_table(speed))
    errors = results.filter(pl.col("error").is_not_null()).group_by("candidate", "error").len()
    if errors.height:
        metadata["no_output"] = count_table(
            "candidate: reason",
            {f"{r['candidate']}: {r['error']}": r["len"] for r in errors.iter_rows(named=True)},
        )
    metadata["worst_examples"] = dg.MetadataValue.md(_worst(results, test))
    yield dg.Output(results, metadata=metadata)
    yield _adapter_check(summary)


eval_job = dg.define_asset_job(
    "eval_job",
    selection=dg.AssetSelection.assets(eval_scores),
    description="Scores the current adapter, its base and the baselines on the test split (pool gpu).",
)

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


def _model_loader(config, artifacts: ArtifactsResource):
    """Loads the adapter, or its base model (the one named by the adapter's config), as (model, tokenizer);
    the adapter is fetched from the artifact store before the first."""
    adapter_dir = artifacts.path(ADAPTER) / ADAPTER_WEIGHTS
    store = artifacts.store()
    fetched = []

    def load(name: str):
        from fastapply_pipeline.core.inference import load_model

        if not fetched:
            fetched.append(store.fetch(ADAPTER))
        if not (adapter_dir / "adapter_config.json").is_file():
            raise dg.Failure(
                f"no adapter at {adapter_dir}: materialize lora_adapter first, or leave adapter and base out "
                "of eval.candidates"
            )
        base = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
        # each loaded apart: peft adds its layers to the model it is given
        adapter = str(adapter_dir) if name == "adapter" else None
        return load_model(base, adapter=adapter, allow_download=config.training.allow_download)

    return load


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

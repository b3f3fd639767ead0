"""eval_scores: candidates x metrics on the dataset's test split (the start of the evaluation stage)."""

import difflib
import json
import random
from pathlib import Path

import dagster as dg
import polars as pl

from fastapply_pipeline.core.evaluate import applier_candidate, evaluate, identity_candidate, model_candidate
from fastapply_pipeline.core.metrics import METRIC_COLUMNS, aggregate
from fastapply_pipeline.defs.reporting import markdown_table
from fastapply_pipeline.defs.resources import FastApplyResource


def _local_models(adapter_dir: Path, wanted: list[str]) -> dict:
    """The base model named by the adapter's config, and the adapter on it (only those wanted)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_path = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir), local_files_only=True)
    models = {}
    if "base" in wanted:
        models["base"] = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=True).eval()
    if "adapter" in wanted:
        base = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=True)
        models["adapter"] = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    return {name: (model, tokenizer) for name, model in models.items()}


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
        "baseline) merges the test split's (original, snippet) pairs with THE inference prompt (local models: "
        "greedy, prompt-lookup drafts); each output is scored: exact, whitespace-normalized and sorted-line "
        "match, chrF, dropped and extra lines, marker leak, missing tags, parse validity, latency, tokens/s. "
        "One row per (candidate, example)."
    ),
)
def eval_scores(context: dg.AssetExecutionContext, fastapply: FastApplyResource):
    config = fastapply.load()
    settings = config.eval
    from datasets import load_from_disk

    test = load_from_disk(str(config.artifacts_dir / "dataset" / "hf"))["test"].to_list()
    if settings.max_examples is not None and len(test) > settings.max_examples:
        test = random.Random(config.seed).sample(test, settings.max_examples)
    candidates = {}
    wanted = list(settings.candidates)
    adapter_dir = config.artifacts_dir / "adapters" / "lora_adapter" / "adapter"
    if {"adapter", "base"} & set(wanted):
        if not (adapter_dir / "adapter_config.json").is_file():
            raise dg.Failure(f"no adapter at {adapter_dir}: materialize lora_adapter first")
        for name, (model, tokenizer) in _local_models(adapter_dir, wanted).items():
            candidates[name] = model_candidate(model, tokenizer, prompt_lookup=settings.prompt_lookup)
    if "applier" in wanted:
        candidates["applier"] = applier_candidate
    if "identity" in wanted:
        candidates["identity"] = identity_candidate
    context.log.info(f"{len(candidates)} candidate(s) on {len(test)} test example(s)")
    results = evaluate({name: candidates[name] for name in wanted}, test)

    summary = aggregate(results, ["candidate"])
    columns = ["candidate", "examples", *METRIC_COLUMNS]
    table_rows = [
        [row[c] if not isinstance(row[c], float) else round(row[c], 3) for c in columns]
        for row in summary.select(columns).iter_rows(named=True)
    ]
    by_language = aggregate(results, ["candidate", "language"])
    rates = {row["candidate"]: row for row in summary.iter_rows(named=True)}
    check = None
    if "adapter" in rates and "base" in rates:
        adapter, base = rates["adapter"], rates["base"]
        passed = adapter["exact"] > base["exact"] and (adapter["parses"] or 0) >= (base["parses"] or 0)
        check = dg.AssetCheckResult(
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
    yield dg.Output(
        results,
        metadata={
            "examples": len(test),
            "scores": markdown_table(columns, table_rows),
            "scores_by_language": markdown_table(
                ["candidate", "language", "examples", "exact", "chrf"],
                [
                    (r["candidate"], r["language"], r["examples"], round(r["exact"], 3), round(r["chrf"], 1))
                    for r in by_language.iter_rows(named=True)
                ],
            ),
            "worst_examples": dg.MetadataValue.md(_worst(results, test)),
        },
    )
    if check is not None:
        yield check
    else:
        yield dg.AssetCheckResult(
            check_name="adapter_beats_base",
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"skipped": "adapter and base are not both candidates"},
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

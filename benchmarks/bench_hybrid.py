"""Benchmark: the hybrid (the applier, then the model where it refuses) on the realistic set's merge cases,
against the applier alone in the same run.

    python benchmarks/bench_hybrid.py [--model PATH] [--adapter PATH] [--cases DIR] [--out FILE.parquet]

The model decodes only the cases the applier refuses, so this costs a minute or so per refusal on a 2-core
CPU (greedy decoding with prompt-lookup drafts: the same answers as plain greedy). Prints the exact merges
by who wrote them, the applier alone, and the hybrid's gain over it.
"""

import argparse
import os
import time
from pathlib import Path

import polars as pl
from bench_eval import DEFAULT_MODEL  # the provisioned Qwen2.5-Coder-0.5B-Instruct, one definition

from fastapply_pipeline.config import load_config
from fastapply_pipeline.core.artifacts import ADAPTER, ADAPTER_WEIGHTS
from fastapply_pipeline.core.evaluate import evaluate, hybrid_candidate, load_rows, model_candidate
from fastapply_pipeline.core.inference import load_model

ROOT = Path(__file__).resolve().parents[1]
# the adapter that `fastapply run --config benchmarks/corpus.yaml --select lora_adapter` trains
ADAPTER_DIR = load_config(ROOT / "benchmarks" / "corpus.yaml").artifacts_dir / ADAPTER / ADAPTER_WEIGHTS


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument(
        "--adapter", default=str(ADAPTER_DIR), help="a LoRA adapter folder; '' for the base model"
    )
    parser.add_argument("--cases", default=str(ROOT / "fastapply_pipeline_tests" / "data" / "realistic"))
    parser.add_argument("--prompt-lookup", type=int, default=10, help="draft length (speed only)")
    parser.add_argument("--out", help="write every row's result here (.parquet)")
    args = parser.parse_args()
    started = time.perf_counter()
    model, tokenizer = load_model(os.path.expanduser(args.model), adapter=args.adapter or None)
    rows = load_rows(args.cases)
    runner = hybrid_candidate(model_candidate(model, tokenizer, prompt_lookup=args.prompt_lookup))
    result = evaluate({"hybrid": runner}, rows)
    if args.out:
        result.write_parquet(args.out)
    by = result.group_by("merged_by").agg(pl.len().alias("rows"), pl.col("exact").sum()).sort("merged_by")
    print(by)
    applier = int(by.filter(pl.col("merged_by") == "applier")["exact"].sum())
    hybrid = int(result["exact"].sum())
    n = result.height
    print(
        f"{n} merge cases: applier alone {applier} exact ({applier / n:.1%}); hybrid {hybrid} exact "
        f"({hybrid / n:.1%}), {hybrid - applier} more; {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()

"""Benchmark: code_snippets' core on a large real tree vs raw tiktoken over the same files.

    python benchmarks/bench_snippets.py [--source DIR] [--repeat 3] [--tokenizer cl100k_base]

The tree (default: the installed sources of dagster, its webserver (with its JavaScript bundles),
dagster-graphql, pydantic, hypothesis, polars and sqlalchemy: about 2,500 real files) is committed into a
temp git repository; then, in the same run,
  - pipeline: build_snippets() reads every tracked file from git, filters it, scans it for secrets,
    counts tokens, buckets and samples (keep-all buckets, so every kept file is tokenized), and
  - baseline: tiktoken's encode_ordinary_batch over the texts of exactly the files the pipeline kept.
It prints files/s of each and ratio = baseline time / pipeline time (1.0 = the pipeline costs nothing
beyond tokenizing). Goal: ratio >= 0.7.
"""

import argparse
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastapply_pipeline.config import DEFAULT_SECRET_PLUGINS
from fastapply_pipeline.core.buckets import BucketSpec
from fastapply_pipeline.core.files import FileRules
from fastapply_pipeline.core.git import sync_mirror
from fastapply_pipeline.core.secrets import SecretScanner
from fastapply_pipeline.core.snippets import build_snippets
from fastapply_pipeline.core.tokens import get_token_counter

GOAL = 0.7


DEFAULT_PACKAGES = [
    "dagster",
    "dagster_webserver",
    "dagster_graphql",
    "pydantic",
    "hypothesis",
    "polars",
    "sqlalchemy",
]


def package_sources(names: list[str]) -> list[Path]:
    folders = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            folders.append(Path(next(iter(spec.submodule_search_locations))))
    return folders


def make_repo(sources: list[Path], dest: Path) -> tuple[Path, str]:
    repo = dest / "repo"
    for source in sources:
        shutil.copytree(source, repo / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A", "-f"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], check=True)
    mirror = dest / "mirror.git"
    commit = sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=600, what="bench").commit
    return mirror, commit


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, action="append", help="folder to benchmark (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokenizer", default="cl100k_base")
    args = parser.parse_args()
    sources = args.source or package_sources(DEFAULT_PACKAGES)

    counter = get_token_counter(args.tokenizer)  # loaded once, outside both timings
    scanner = SecretScanner(DEFAULT_SECRET_PLUGINS)
    rules = FileRules.build(["python", "typescript", "tsx", "javascript", "jsx"], 500_000)
    buckets = BucketSpec(uppers=(None,), samples=(None,))

    with tempfile.TemporaryDirectory(prefix="fastapply-bench-") as tmp:
        mirror, commit = make_repo(sources, Path(tmp))
        pipeline_times, baseline_times = [], []
        result = None
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = build_snippets(
                mirror,
                commit,
                repo="bench",
                rules=rules,
                counter=counter,
                buckets=buckets,
                seed=0,
                scanner=scanner,
            )
            pipeline_times.append(time.perf_counter() - start)
            texts = result.table["content"].to_list()
            start = time.perf_counter()
            counter.encoding.encode_ordinary_batch(texts)
            baseline_times.append(time.perf_counter() - start)

    assert result is not None
    kept = result.table.height
    megabytes = sum(result.table["size_bytes"]) / 1e6
    pipeline, baseline = statistics.median(pipeline_times), statistics.median(baseline_times)
    ratio = baseline / pipeline
    print(
        f"tree: {', '.join(s.name for s in sources)} ({result.files_total} tracked files, {kept} kept, {megabytes:.1f} MB kept)"
    )
    print(f"exclusions: { {str(k): v for k, v in result.exclusions.items()} }")
    print(
        f"pipeline (build_snippets): {pipeline:.2f} s  {kept / pipeline:,.0f} kept files/s  "
        f"{result.files_total / pipeline:,.0f} tracked files/s"
    )
    print(
        f"baseline (tiktoken encode_ordinary_batch, same {kept} files): {baseline:.2f} s  "
        f"{kept / baseline:,.0f} files/s"
    )
    print(
        f"ratio (baseline time / pipeline time, median of {args.repeat}): {ratio:.2f}  goal >= {GOAL}  "
        f"{'OK' if ratio >= GOAL else 'BELOW GOAL'}"
    )
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())

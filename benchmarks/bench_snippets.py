"""Benchmark: code_snippets on a large real tree vs the raw tokenizer over the same files.

    python benchmarks/bench_snippets.py [--source DIR] [--repeat 3] [--tokenizer cl100k_base] [--process]

The tree (default: the installed sources of dagster, its webserver (with its JavaScript bundles),
dagster-graphql, pydantic, hypothesis, polars and sqlalchemy: about 2,500 real files) is committed into a
temp git repository. The baseline is always the raw tokenizer (tiktoken's encode_ordinary_batch) over the
texts of every file that passes the filters: what the snippet stage has to look at. In one run:
  - keep-all buckets: build_snippets() reads every tracked file from git, filters it, scans it for
    secrets, counts tokens, buckets and samples, keeping (so tokenizing) every file; goal ratio >= 0.7;
  - default buckets (config.DEFAULT_BUCKETS: 100-2999 tokens kept), before and after: "before" tokenizes
    every file (skip_by_bounds=False), "after" skips the files whose size bounds put them in sample-0
    buckets only. Both must give the same rows (checked);
  - with --process: the whole `fastapply run --select code_snippets` process (a temp fastapply.yaml
    with the tree as a `path:` source and the default buckets, a temp DAGSTER_HOME where cloned_repo was
    built beforehand, no snippet cache), start-up included, before (every file tokenized, the CLI
    started without fastapply_pipeline/launcher.py) and after (the installed `fastapply`); goal ratio
    >= 0.8; and the same command on a one-file repository (its fixed start-up), with and without the
    launcher.
ratio = baseline time / pipeline time (1.0 = as fast as tokenizing every file once, nothing else).
"""

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import yaml

from fastapply_pipeline.config import DEFAULT_BUCKETS, DEFAULT_SECRET_PLUGINS
from fastapply_pipeline.core.buckets import BucketSpec
from fastapply_pipeline.core.files import FileRules
from fastapply_pipeline.core.git import sync_mirror
from fastapply_pipeline.core.secrets import SecretScanner
from fastapply_pipeline.core.snippets import SnippetBuild, build_snippets
from fastapply_pipeline.core.tokens import get_token_counter

GOAL = 0.7  # build_snippets alone, keep-all buckets
PROCESS_GOAL = 0.8  # the whole `fastapply run --select code_snippets`, default buckets
LANGUAGES = ["python", "typescript", "tsx", "javascript", "jsx"]
MAX_FILE_BYTES = 500_000
SEED = 42  # the settings' default seed, so both modes sample the same rows
ROOT = Path(__file__).resolve().parents[1]

DEFAULT_PACKAGES = [
    "dagster",
    "dagster_webserver",
    "dagster_graphql",
    "pydantic",
    "hypothesis",
    "polars",
    "sqlalchemy",
]

# `fastapply run` with the bound off: the console script's main, after code_snippets' build_snippets is
# wrapped with skip_by_bounds=False (benchmark only; the pipeline has no such setting).
# "before": every file tokenized, and the CLI started without the launcher's garbage-collector settings.
BOUND_OFF = """
import functools, sys
import fastapply_pipeline.defs.snippets.assets as assets
from fastapply_pipeline.cli import main
assets.build_snippets = functools.partial(assets.build_snippets, skip_by_bounds=False)
sys.argv[0] = "fastapply"
sys.exit(main())
"""
# The CLI without the launcher (fastapply_pipeline/launcher.py), for the start-up line.
PLAIN_CLI = """
import sys
from fastapply_pipeline.cli import main
sys.argv[0] = "fastapply"
sys.exit(main())
"""


def package_sources(names: list[str]) -> list[Path]:
    folders = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            folders.append(Path(next(iter(spec.submodule_search_locations))))
    return folders


def make_repo(sources: list[Path], dest: Path) -> tuple[Path, Path, str]:
    repo = dest / "repo"
    for source in sources:
        shutil.copytree(source, repo / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A", "-f"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], check=True)
    mirror = dest / "mirror.git"
    commit = sync_mirror(str(repo), mirror, ref=None, depth=1, timeout=600, what="bench").commit
    return repo, mirror, commit


def median_time(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def verdict(ratio: float, goal: float) -> str:
    return f"goal >= {goal}  {'OK' if ratio >= goal else 'BELOW GOAL'}"


class ProcessBench:
    """`fastapply run --select code_snippets` as a user runs it, in a temp project around the tree."""

    def __init__(self, repo: Path, work: Path, tokenizer: str):
        self.work = work
        work.mkdir(parents=True)
        self.config = work / "fastapply.yaml"
        settings = {
            "sources": [{"path": str(repo), "name": "bench", "license": "MIT"}],
            "seed": SEED,
            "storage": {"cache_dir": str(work / "cache"), "artifacts_dir": str(work / "artifacts")},
            "files": {"languages": LANGUAGES, "max_file_bytes": MAX_FILE_BYTES},
            "snippets": {"tokenizer": tokenizer},  # and the default buckets
        }
        self.config.write_text(yaml.safe_dump(settings))
        self.table = work / "artifacts" / "tables" / "code_snippets" / "bench.parquet"
        self.seeded_home = work / "home-seed"
        self.seeded_home.mkdir()
        shutil.copyfile(ROOT / "dagster.yaml", self.seeded_home / "dagster.yaml")
        self._fastapply(self.seeded_home, "cloned_repo", bound=True)  # untimed: code_snippets' input

    def _fastapply(self, home: Path, select: str, *, bound: bool, launcher: bool | None = None) -> None:
        args = ["run", "--config", str(self.config), "--select", select, "-q"]
        launcher = bound if launcher is None else launcher
        if launcher:
            command = [str(Path(sys.executable).with_name("fastapply"))]  # the installed entry point
        else:
            command = [sys.executable, "-c", PLAIN_CLI if bound else BOUND_OFF]
        done = subprocess.run(
            [*command, *args],
            env={**os.environ, "DAGSTER_HOME": str(home)},
            cwd=self.work,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"`fastapply {' '.join(args)}` failed:\n{done.stdout}\n{done.stderr}")

    def run(self, *, bound: bool, launcher: bool | None = None) -> pl.DataFrame:
        """One timed-by-the-caller process on a fresh copy of the instance, with no snippet cache."""
        home = self.work / f"home-{time.monotonic_ns()}"
        shutil.copytree(self.seeded_home, home)
        shutil.rmtree(self.work / "cache" / "snippets", ignore_errors=True)
        self.table.unlink(missing_ok=True)
        self._fastapply(home, "code_snippets", bound=bound, launcher=launcher)
        if not self.table.is_file():
            raise SystemExit("`fastapply run --select code_snippets` wrote no table (skipped as up to date?)")
        return pl.read_parquet(self.table)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, action="append", help="folder to benchmark (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokenizer", default="cl100k_base")
    parser.add_argument(
        "--process", action="store_true", help="also time the whole `fastapply run --select code_snippets`"
    )
    args = parser.parse_args()
    sources = args.source or package_sources(DEFAULT_PACKAGES)

    counter = get_token_counter(args.tokenizer)  # loaded once, outside every timing
    raw = counter.encoding.encode_ordinary_batch if hasattr(counter, "encoding") else counter.count_batch
    scanner = SecretScanner(DEFAULT_SECRET_PLUGINS)
    rules = FileRules.build(LANGUAGES, MAX_FILE_BYTES)
    keep_all = BucketSpec(uppers=(None,), samples=(None,))
    default = BucketSpec(
        uppers=tuple(b.upper for b in DEFAULT_BUCKETS), samples=tuple(b.sample for b in DEFAULT_BUCKETS)
    )
    failed = False

    with tempfile.TemporaryDirectory(prefix="fastapply-bench-") as tmp:
        repo, mirror, commit = make_repo(sources, Path(tmp))

        def build(buckets: BucketSpec, bound: bool = True) -> SnippetBuild:
            return build_snippets(
                mirror,
                commit,
                repo="bench",
                rules=rules,
                counter=counter,
                buckets=buckets,
                seed=SEED,
                scanner=scanner,
                skip_by_bounds=bound,
            )

        pipeline, everything = median_time(lambda: build(keep_all), args.repeat)
        texts = everything.table["content"].to_list()
        baseline, _ = median_time(lambda: raw(texts), args.repeat)
        files, megabytes = everything.table.height, sum(everything.table["size_bytes"]) / 1e6
        tokens = sum(everything.table["token_count"])
        print(
            f"tree: {', '.join(s.name for s in sources)} ({everything.files_total} tracked files, {files} "
            f"pass the filters: {megabytes:.1f} MB, {tokens:,} {args.tokenizer} tokens)"
        )
        print(f"exclusions (keep-all): { {str(k): v for k, v in everything.exclusions.items()} }")
        print(
            f"baseline (raw tokenizer, the {files} files): {baseline:.2f} s  {files / baseline:,.0f} files/s"
        )
        ratio = baseline / pipeline
        failed |= ratio < GOAL
        print(
            f"keep-all buckets, build_snippets: {pipeline:.2f} s  ratio {ratio:.2f}  {verdict(ratio, GOAL)}  "
            f"(median of {args.repeat})"
        )

        before_time, before = median_time(lambda: build(default, bound=False), args.repeat)
        after_time, after = median_time(lambda: build(default, bound=True), args.repeat)
        same = before.table.equals(after.table) and after.accounted() and before.accounted()
        failed |= not same
        kept_tokens = sum(after.table["token_count"])
        rows_baseline, _ = median_time(lambda: raw(after.table["content"].to_list()), args.repeat)
        untokenized = sum(after.untokenized_per_range.values())
        print(
            f"default buckets: {after.table.height} rows ({kept_tokens / tokens:.0%} of the tokens); "
            f"same rows before and after: {'yes' if same else 'NO'}; "
            f"untokenized after: {untokenized} files {dict(after.untokenized_per_range)}"
        )
        print(f"  (the raw tokenizer over the {after.table.height} rows alone: {rows_baseline:.2f} s)")
        for label, seconds in (
            ("before (every file tokenized)", before_time),
            ("after (size bounds)", after_time),
        ):
            print(f"  build_snippets {label}: {seconds:.2f} s  ratio {baseline / seconds:.2f}")

        if args.process:
            bench = ProcessBench(repo, Path(tmp) / "project", args.tokenizer)
            results = {}
            for bound in (False, True):
                results[bound] = median_time(lambda b=bound: bench.run(bound=b), args.repeat)
            same = results[False][1].equals(results[True][1]) and results[True][1].equals(after.table)
            failed |= not same
            print(
                f"whole process `fastapply run --select code_snippets` (start-up included, median of "
                f"{args.repeat}); same rows before, after and in-process: {'yes' if same else 'NO'}"
            )
            for bound, label in ((False, "before (every file tokenized)"), (True, "after (size bounds)")):
                seconds = results[bound][0]
                ratio = baseline / seconds
                print(f"  {label}: {seconds:.2f} s  ratio {ratio:.2f}  {verdict(ratio, PROCESS_GOAL)}")
            failed |= baseline / results[True][0] < PROCESS_GOAL
            # The fixed part: the same command where there is next to nothing to do.
            (Path(tmp) / "one-file").mkdir()
            (Path(tmp) / "one-file" / "hello.py").write_text("print('hello, world')\n")
            tiny_repo, _, _ = make_repo([Path(tmp) / "one-file"], Path(tmp) / "tiny")
            tiny = ProcessBench(tiny_repo, Path(tmp) / "tiny-project", args.tokenizer)
            plain, _ = median_time(lambda: tiny.run(bound=True, launcher=False), args.repeat)
            startup, _ = median_time(lambda: tiny.run(bound=True), args.repeat)
            print(
                f"  of which fixed start-up (the same command on a one-file repository): {startup:.2f} s "
                f"(without the launcher's garbage-collector settings: {plain:.2f} s)"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: triples per second of each offline generator on large real inputs.

    python benchmarks/bench_triples.py [--packages dagster,pydantic] [--attempts 2] [--repo PATH]

structural: every Python/JS/TS file of the given installed packages (real code; default dagster,
dagster_graphql, pydantic, hypothesis, sqlalchemy, dagster_webserver's JavaScript), `--attempts` edits
per file, each one parsed, rendered and verified by the applier. git_history: the history of `--repo`
(default: this repository), every modified source file of every commit, verified the same way. Prints
triples/s, candidates/s and the share of candidates that became triples.
"""

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from fastapply_pipeline.core.files import FileRules, classify_content, classify_entry, language_of
from fastapply_pipeline.core.git import TreeEntry, sync_mirror
from fastapply_pipeline.core.render import DEFAULT_STYLE_WEIGHTS
from fastapply_pipeline.core.settings import TripleSettings
from fastapply_pipeline.core.synth.git_history import git_history_triples
from fastapply_pipeline.core.synth.structural import structural_triples

DEFAULT_PACKAGES = "dagster,dagster_graphql,pydantic,hypothesis,sqlalchemy,dagster_webserver"
LANGUAGES = ["python", "typescript", "tsx", "javascript", "jsx", "markdown"]


def package_files(names: list[str]) -> list[tuple[str, str, str, str, str]]:
    rules = FileRules.build(LANGUAGES, 200_000)
    rows = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if not spec or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*")):
            rel = f"{name}/{path.relative_to(root)}"
            if not path.is_file() or language_of(rel) is None:
                continue
            if classify_entry(TreeEntry("100644", "blob", "", path.stat().st_size, rel), rules) is not None:
                continue
            reason, text = classify_content(path.read_bytes())
            if reason is None and text is not None:
                rows.append((name, "bench", rel, language_of(rel), text))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packages", default=DEFAULT_PACKAGES)
    parser.add_argument("--attempts", type=int, default=2)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()

    files = package_files(args.packages.split(","))
    start = time.perf_counter()
    report = structural_triples(
        files, settings=TripleSettings(structural={"attempts_per_file": args.attempts}), seed=0
    )
    seconds = time.perf_counter() - start
    candidates = len(files) * args.attempts
    print(
        f"structural: {len(files)} files, {candidates} candidate edits -> {len(report.triples)} triples in "
        f"{seconds:.1f} s: {len(report.triples) / seconds:,.1f} triples/s, {candidates / seconds:,.1f} candidates/s "
        f"({len(report.triples) / candidates:.0%} kept)"
    )
    print(f"  rejected: {dict(report.failures.most_common(8))}")
    print_styles(report)

    with tempfile.TemporaryDirectory() as tmp:
        mirror = Path(tmp) / "m.git"
        head = sync_mirror(str(args.repo), mirror, ref=None, depth=None, timeout=600, what="bench").commit
        commits = subprocess.run(
            ["git", "--git-dir", str(mirror), "rev-list", "--count", head],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        start = time.perf_counter()
        history = git_history_triples(
            mirror,
            head,
            repo="bench",
            rules=FileRules.build(LANGUAGES, 500_000),
            scanner=None,
            settings=TripleSettings(),
        )
        seconds = time.perf_counter() - start
    considered = len(history.triples) + sum(history.failures.values())
    print(
        f"git_history: {args.repo} ({commits} commits), {considered} candidates -> {len(history.triples)} triples "
        f"in {seconds:.2f} s: {len(history.triples) / seconds:,.1f} triples/s"
    )
    print(f"  rejected: {dict(history.failures.most_common(8))}")
    print_styles(history)
    return 0


def print_styles(report) -> None:
    """Per snippet style: the share of draws, of kept triples, and why draws fell back to anchored."""
    kept = Counter(t.snippet_style for t in report.triples)
    drawn = Counter(
        t.style_fallback.split(":")[0] if t.style_fallback else t.snippet_style for t in report.triples
    )
    fell = Counter(t.style_fallback.split(":")[0] for t in report.triples if t.style_fallback)
    total = max(1, len(report.triples))
    print("  | style | drawn | kept as drawn | kept share | fell back to anchored |")
    print("  |---|---:|---:|---:|---:|")
    for style in DEFAULT_STYLE_WEIGHTS:
        as_drawn = drawn[style] - fell[style]
        print(
            f"  | {style} | {drawn[style]} | {as_drawn} ({as_drawn / max(1, drawn[style]):.0%}) | {kept[style] / total:.0%} | {fell[style]} |"
        )
    reasons = Counter(t.style_fallback for t in report.triples if t.style_fallback)
    print(f"  fallback reasons: {dict(reasons.most_common(6))}")


if __name__ == "__main__":
    sys.exit(main())

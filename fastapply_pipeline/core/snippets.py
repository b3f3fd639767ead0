"""code_snippets' pure core: one repository commit -> filtered, token-counted, bucketed, sampled files."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from fastapply_pipeline.core.artifacts import write_atomically
from fastapply_pipeline.core.buckets import BucketSpec, seeded_sample
from fastapply_pipeline.core.files import (
    Exclusion,
    FileRules,
    classify_content,
    classify_entry,
    language_of,
    printable_path,
)
from fastapply_pipeline.core.git import list_tree, read_blobs
from fastapply_pipeline.core.secrets import SecretScanner
from fastapply_pipeline.core.settings import FastApplyConfig, SnippetSettings, Source
from fastapply_pipeline.core.tokens import TokenCounter

SNIPPET_SCHEMA = {
    "repo": pl.String,
    "commit": pl.String,
    "path": pl.String,
    "language": pl.String,
    "content": pl.String,
    "token_count": pl.Int64,
    "line_count": pl.Int64,
    "bucket": pl.String,
    "content_hash": pl.String,
    "size_bytes": pl.Int64,
}


@dataclass
class SnippetBuild:
    """The sampled snippets and an account of every tracked file that did not become one."""

    table: pl.DataFrame
    files_total: int
    exclusions: Counter[str] = field(default_factory=Counter)
    excluded_paths: dict[str, str] = field(default_factory=dict)  # printable path -> reason
    secret_types: Counter[str] = field(default_factory=Counter)
    # Files let through although detect-secrets flagged them: every finding an obvious placeholder.
    placeholder_secrets: Counter[str] = field(default_factory=Counter)
    candidates_per_bucket: dict[str, int] = field(default_factory=dict)  # tokenized files per bucket
    # Files that no bucket could keep, found from their size alone: counted as not_sampled, never
    # tokenized (nor scanned for secrets), by the range of sample-0 buckets their count provably lies in.
    untokenized_per_range: Counter[str] = field(default_factory=Counter)

    @property
    def rows_per_bucket(self) -> dict[str, int]:
        counts = dict(self.table.group_by("bucket").len().iter_rows()) if self.table.height else {}
        return {label: int(counts.get(label, 0)) for label in self.candidates_per_bucket}

    def exclude(self, path: str, reason: Exclusion) -> None:
        self.exclusions[reason] += 1
        self.excluded_paths[printable_path(path)] = reason.value

    def report(self, *, license_allowed: bool) -> dict:
        """What the asset reports besides the table (JSON, kept in the cache beside it)."""
        return {
            "files_total": self.files_total,
            "exclusions": dict(self.exclusions),
            "secret_types": dict(self.secret_types),
            "placeholder_secrets": dict(self.placeholder_secrets),
            "examples": self.examples(),
            "candidates_per_bucket": self.candidates_per_bucket,
            "untokenized_per_range": dict(self.untokenized_per_range),
            "license_allowed": license_allowed,
        }

    def examples(self, per_reason: int = 3) -> dict[str, list[str]]:
        """A few excluded paths for each reason, to answer "why is my file missing?"."""
        out: dict[str, list[str]] = {}
        for path, reason in self.excluded_paths.items():
            if len(out.setdefault(reason, [])) < per_reason:
                out[reason].append(path)
        return out

    def accounted(self) -> bool:
        """Every tracked file is either a row or counted under exactly one exclusion reason."""
        return self.table.height + sum(self.exclusions.values()) == self.files_total


def line_count(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def dropped_range(counter: TokenCounter, buckets: BucketSpec, text: str, data: bytes) -> str | None:
    """The label of the sample-0 bucket range that every possible token count of this file lies in, or
    None when it may fall in a bucket that keeps files (then only tokenizing tells)."""
    lower, upper = counter.bounds(text, data, enough=0)  # the byte bounds alone: free
    dropped = buckets.dropped_range(lower, upper)
    if dropped is not None:
        return dropped
    # A better lower bound costs a pass over the text: worth it only when the upper bound's bucket
    # keeps nothing, and only up to the first count of its sample-0 run.
    enough = buckets.dropped_from(upper)
    if enough is None:
        return None
    lower, upper = counter.bounds(text, data, enough=enough)
    return buckets.dropped_range(lower, upper)


def build_snippets(
    mirror: Path,
    commit: str,
    *,
    repo: str,
    rules: FileRules,
    counter: TokenCounter,
    buckets: BucketSpec,
    seed: int,
    scanner: SecretScanner | None,
    license_allowed: bool = True,
    skip_by_bounds: bool = True,
) -> SnippetBuild:
    """Read the files tracked at `commit` from a bare mirror and turn them into sampled snippet rows.

    A file whose token count provably lies in buckets that keep nothing (sample 0) is not tokenized:
    the same rows come out, sooner. `skip_by_bounds=False` tokenizes every file (for benchmarks).
    """
    entries = list_tree(mirror, commit)
    build = SnippetBuild(
        table=pl.DataFrame(schema=SNIPPET_SCHEMA),
        files_total=len(entries),
        candidates_per_bucket=dict.fromkeys(buckets.labels, 0),
    )
    if not license_allowed:
        for entry in entries:
            build.exclude(entry.path, Exclusion.LICENSE_NOT_ALLOWED)
        return build

    link_targets = read_blobs(mirror, (e.sha for e in entries if e.is_symlink))
    candidates = []
    for entry in entries:
        reason = classify_entry(entry, rules, link_targets.get(entry.sha))
        if reason is None:
            candidates.append(entry)
        else:
            build.exclude(entry.path, reason)

    blobs = read_blobs(mirror, (e.sha for e in candidates))
    paths, texts, sizes = [], [], []
    for entry in candidates:
        data = blobs[entry.sha]
        reason, text = classify_content(data, language_of(entry.path))
        if reason is None and text is not None and skip_by_bounds:
            dropped = dropped_range(counter, buckets, text, data)
            if dropped is not None:
                build.exclude(entry.path, Exclusion.NOT_SAMPLED)  # what its sample-0 bucket would say
                build.untokenized_per_range[dropped] += 1
                continue
        if reason is None and text is not None and scanner is not None:
            found = scanner.scan(entry.path, text)
            if found.real:
                reason = Exclusion.SECRET
                build.secret_types.update(found.real)
            else:
                build.placeholder_secrets.update(found.placeholders)
        if reason is not None or text is None:
            build.exclude(entry.path, reason or Exclusion.BINARY)
            continue
        paths.append(entry.path)
        texts.append(text)
        sizes.append(len(data))

    token_counts = counter.count_batch(texts) if texts else []
    labels = buckets.labels
    by_bucket: dict[int, list[int]] = {}
    for row, tokens in enumerate(token_counts):
        by_bucket.setdefault(buckets.index_of(tokens), []).append(row)
    keep: list[int] = []
    for index, rows in sorted(by_bucket.items()):
        build.candidates_per_bucket[labels[index]] = len(rows)
        chosen = seeded_sample([paths[r] for r in rows], buckets.samples[index], seed)
        keep.extend(rows[i] for i in chosen)
        chosen_set = set(chosen)
        for i, row in enumerate(rows):
            if i not in chosen_set:
                build.exclude(paths[row], Exclusion.NOT_SAMPLED)
    keep.sort(key=lambda r: paths[r])

    build.table = pl.DataFrame(
        {
            "repo": [repo] * len(keep),
            "commit": [commit] * len(keep),
            "path": [paths[r] for r in keep],
            "language": [language_of(paths[r]) for r in keep],
            "content": [texts[r] for r in keep],
            "token_count": [token_counts[r] for r in keep],
            "line_count": [line_count(texts[r]) for r in keep],
            "bucket": [labels[buckets.index_of(token_counts[r])] for r in keep],
            "content_hash": [hashlib.sha256(texts[r].encode()).hexdigest() for r in keep],
            "size_bytes": [sizes[r] for r in keep],
        },
        schema=SNIPPET_SCHEMA,
    )
    return build


def check_snippets(table: pl.DataFrame, buckets: BucketSpec) -> dict[str, list[str]]:
    """The data contract of code_snippets: check name -> offending paths (empty when it holds)."""
    labels = buckets.labels
    out_of_bucket = []
    for path, tokens, label in table.select("path", "token_count", "bucket").iter_rows():
        lower, upper = buckets.bounds(labels.index(label)) if label in labels else (0, -1)
        if tokens < lower or (upper is not None and tokens >= upper):
            out_of_bucket.append(path)
    duplicates = table.filter(pl.col("path").is_duplicated())["path"].unique().sort().to_list()
    empty = table.filter(pl.col("content").str.strip_chars() == "")["path"].to_list()
    return {
        "no_empty_content": empty,
        "token_counts_inside_bucket": out_of_bucket,
        "no_duplicate_paths": duplicates,
    }


# -- the snippet cache: one repository's rows at one commit, reused across runs and partitions ---------

CACHE_VERSION = "1"  # raise when the rows change for the same inputs (code_snippets' code_version too)


def bucket_spec(settings: SnippetSettings) -> BucketSpec:
    return BucketSpec(
        uppers=tuple(b.upper for b in settings.buckets), samples=tuple(b.sample for b in settings.buckets)
    )


def cache_key(config: FastApplyConfig, source: Source, commit: str) -> str:
    """Everything the rows depend on: the commit, the settings that shape them, and this code's version."""
    payload = {
        "commit": commit,
        "settings": config.settings_hash("files", "secrets", "snippets"),
        "seed": config.seed,
        "source": [source.include, source.exclude, source.license],
        "code": CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def cached_snippets(
    cache_dir: Path, key: str, build: Callable[[], tuple[pl.DataFrame, dict]]
) -> tuple[pl.DataFrame, dict, bool]:
    """(table, report, cache hit): from `cache_dir/<key>.parquet` and `.json` when both are there, else
    from `build()`, then stored, each file written whole (a killed run leaves no half file to reuse)."""
    table_file = cache_dir / f"{key}.parquet"
    report_file = table_file.with_suffix(".json")
    if table_file.is_file() and report_file.is_file():
        return pl.read_parquet(table_file), json.loads(report_file.read_text()), True
    table, report = build()
    write_atomically(table_file, lambda path: table.write_parquet(path))
    write_atomically(report_file, lambda path: path.write_text(json.dumps(report, indent=2)))
    return table, report, False

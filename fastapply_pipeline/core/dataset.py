"""fastapply_dataset's core: validate -> dedup -> split by repository -> Hugging Face dataset + card.

Every row of every repository's edit_triples ends in exactly one place: a split, or `rejected` with the
stage and named reason that dropped it (and, for duplicates, the row it duplicates). Same inputs and
seed give the same dataset: rows are processed in triple_id order and every choice is a seeded hash.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl

from fastapply_pipeline.core.apply import apply_snippet
from fastapply_pipeline.core.artifacts import DATASET_HF, check_replaceable, mark_owned
from fastapply_pipeline.core.chat import control_token_in
from fastapply_pipeline.core.markers import contains_marker, is_marker_line
from fastapply_pipeline.core.parsing import parses
from fastapply_pipeline.core.settings import FastApplyConfig
from fastapply_pipeline.core.sources import redact_url
from fastapply_pipeline.core.triples import TRIPLE_SCHEMA

# The columns people train on (compatible with the public Fast Apply dataset), then provenance.
DATASET_COLUMNS = [
    "original_code",
    "update_snippet",
    "final_code",
    "triple_id",
    "repo",
    "commit",
    "path",
    "language",
    "generator",
    "edit_kind",
    "snippet_style",
    "model",
    "bucket",
    "original_tokens",
    "snippet_tokens",
    "final_tokens",
    "example_tokens",
]
REJECTED_SCHEMA = {
    **{
        name: TRIPLE_SCHEMA[name] for name in ("triple_id", "repo", "commit", "path", "language", "generator")
    },
    "edit_kind": pl.String,
    "snippet_style": pl.String,
    "stage": pl.String,  # input (a partition not used) | validate | dedup
    "reason": pl.String,
    "detail": pl.String,  # e.g. the triple_id a duplicate duplicates
    "original_code": pl.String,
    "update_snippet": pl.String,
    "final_code": pl.String,
}
VALIDATION_REASONS = (
    "llm_applier_disagrees",
    "control_token",
    "no_change",
    "marker_in_final",
    "final_does_not_parse",
    "snippet_not_subsequence_of_final",
    "whole_file_rewrite",
    "too_long",
)


@dataclass
class Outcome:
    """Rows kept so far, and the rejected ones with their reasons."""

    kept: pl.DataFrame
    rejected: list[dict] = field(default_factory=list)

    def reject(self, row: dict, stage: str, reason: str, detail: str | None = None) -> None:
        self.rejected.append(
            {name: row.get(name) for name in REJECTED_SCHEMA}
            | {"stage": stage, "reason": reason, "detail": detail}
        )

    def rejected_frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rejected, schema=REJECTED_SCHEMA)


# -- validation ---------------------------------------------------------------------------------------


def snippet_is_subsequence(snippet: str, final: str) -> bool:
    """Every non-marker snippet line appears in the final file, in order (indentation ignored: a snippet
    may be dedented)."""
    lines = iter(line.strip() for line in final.splitlines())
    return all(
        any(candidate == wanted for candidate in lines)
        for wanted in (
            line.strip() for line in snippet.splitlines() if not is_marker_line(line, bare_ellipsis=False)
        )
    )


def changed_fraction(original: str, final: str) -> float:
    """Changed lines (the larger side of each differing block) over the original's lines."""
    a, b = original.splitlines(), final.splitlines()
    changed = sum(
        max(i2 - i1, j2 - j1)
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
        if tag != "equal"
    )
    return changed / max(len(a), 1)


def validate(
    table: pl.DataFrame,
    *,
    max_changed_fraction: float,
    max_seq_length: int,
    llm_disagreement: str,
    example_lengths: Callable[[list[tuple[str, str, str]]], list[int]],
    control_tokens: Sequence[str],
) -> Outcome:
    """Apply the rules in order; a row's first failing rule is its reason.

    `control_tokens`: the strings the training tokenizer reads as control tokens (core.chat.control_tokens).
    A row whose code spells one is dropped (`control_token`): in a training example it would become that
    token, e.g. an end of turn inside the answer."""
    outcome = Outcome(kept=table.head(0))
    survivors = []
    for row in table.sort("triple_id").iter_rows(named=True):
        original, snippet, final = row["original_code"], row["update_snippet"], row["final_code"]
        if row.get("flag"):
            merged = apply_snippet(original, snippet, language=row["language"])
            if llm_disagreement == "use_applier" and merged.ok:
                row = row | {"final_code": merged.merged, "flag": None}
                final = merged.merged
            else:
                outcome.reject(row, "validate", "llm_applier_disagrees", row["flag"])
                continue
        spelled = next(
            (
                (column, token)
                for column, text in (
                    ("original_code", original),
                    ("update_snippet", snippet),
                    ("final_code", final),
                )
                if (token := control_token_in(text, control_tokens)) is not None
            ),
            None,
        )
        if spelled is not None:
            column, token = spelled
            outcome.reject(row, "validate", "control_token", f"{token!r} in {column}")
            continue
        if final == original:
            reason = "no_change"
        elif contains_marker(final):
            reason = "marker_in_final"
        elif parses(original, row["language"]) and not parses(final, row["language"]):
            reason = "final_does_not_parse"
        elif not snippet_is_subsequence(snippet, final):
            reason = "snippet_not_subsequence_of_final"
        elif changed_fraction(original, final) > max_changed_fraction:
            reason = "whole_file_rewrite"
        else:
            survivors.append(row)
            continue
        outcome.reject(row, "validate", reason)
    lengths = example_lengths([(r["original_code"], r["update_snippet"], r["final_code"]) for r in survivors])
    kept = []
    for row, length in zip(survivors, lengths, strict=True):
        if length > max_seq_length:
            outcome.reject(row, "validate", "too_long", f"{length} tokens > {max_seq_length}")
        else:
            kept.append(row | {"example_tokens": length})
    schema = {**table.schema, "example_tokens": pl.Int64}
    outcome.kept = pl.DataFrame(kept, schema=schema)
    return outcome


# -- deduplication ------------------------------------------------------------------------------------


def normalized(text: str) -> str:
    """Line endings, trailing spaces and trailing blank lines do not make a row different."""
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).rstrip("\n")


def exact_key(original: str, snippet: str) -> str:
    return hashlib.sha256((normalized(original) + "\0" + normalized(snippet)).encode()).hexdigest()


_TOKEN = re.compile(r"\w+|[^\w\s]")


def shingles(text: str, size: int = 5) -> set[bytes]:
    tokens = _TOKEN.findall(text)
    if len(tokens) < size:
        return {" ".join(tokens).encode()}
    return {" ".join(tokens[i : i + size]).encode() for i in range(len(tokens) - size + 1)}


def dedup(outcome: Outcome, *, near: bool, threshold: float, num_perm: int, seed: int) -> Outcome:
    """Drop exact duplicates of (original, snippet), then near-duplicates: rows whose file AND snippet
    are both at least `threshold` similar (MinHash/LSH, datasketch) to a row already kept. The first row
    in triple_id order stays."""
    from datasketch import MinHash, MinHashLSH

    seen: dict[str, str] = {}
    kept_rows = []
    for row in outcome.kept.sort("triple_id").iter_rows(named=True):
        key = exact_key(row["original_code"], row["update_snippet"])
        if key in seen:
            outcome.reject(row, "dedup", "exact_duplicate", seen[key])
        else:
            seen[key] = row["triple_id"]
            kept_rows.append(row)
    if near and kept_rows:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        signatures: dict[str, MinHash] = {}
        unique = []

        def signature(text: str) -> MinHash:
            minhash = MinHash(num_perm=num_perm, seed=seed)
            minhash.update_batch(list(shingles(text)))
            return minhash

        for row in kept_rows:
            files, snippet = signature(row["original_code"]), signature(row["update_snippet"])
            match = next(
                (
                    other
                    for other in sorted(lsh.query(files))
                    if signatures[other].jaccard(snippet) >= threshold
                ),
                None,
            )
            if match is not None:
                outcome.reject(row, "dedup", "near_duplicate", match)
                continue
            lsh.insert(row["triple_id"], files)
            signatures[row["triple_id"]] = snippet
            unique.append(row)
        kept_rows = unique
    outcome.kept = pl.DataFrame(kept_rows, schema=outcome.kept.schema)
    return outcome


# -- split --------------------------------------------------------------------------------------------


@dataclass
class Split:
    splits: dict[str, pl.DataFrame]
    by: str  # "repo", or "file" when only one repository has rows


def split(table: pl.DataFrame, *, test: float, validation: float, seed: int) -> Split:
    """Whole repositories go to one split each (whole files, when there is one repository)."""
    by = "repo" if table["repo"].n_unique() > 1 else "file"
    group = pl.col("repo") if by == "repo" else pl.concat_str("repo", "path", separator="/")
    sizes = table.group_by(group.alias("group")).len()
    order = sorted(sizes.iter_rows(), key=lambda g: hashlib.sha256(f"{seed}\0{g[0]}".encode()).hexdigest())
    if len(order) < 2:
        raise ValueError("the dataset needs rows from at least two files to split; add sources or files")
    total = table.height
    assignment: dict[str, str] = {}
    targets = [("test", test), ("validation", validation)]
    remaining = list(order)
    for name, share in targets:
        if share <= 0:
            continue
        filled = 0
        # At least one group each, never the last one (train must not be empty).
        while remaining[1:] and (filled == 0 or filled < share * total):
            key, count = remaining.pop(0)
            assignment[key] = name
            filled += count
    for key, _ in remaining:
        assignment[key] = "train"
    labelled = table.with_columns(group.replace_strict(assignment).alias("split"))
    names = ["train", "validation", "test"]
    splits = {
        name: labelled.filter(pl.col("split") == name).drop("split").sort("triple_id")
        for name in names
        if (name != "validation" or validation > 0)
    }
    return Split(splits, by)


def repos_in_several_splits(splits: dict[str, pl.DataFrame]) -> list[str]:
    owners: dict[str, set[str]] = {}
    for name, frame in splits.items():
        for repo in frame["repo"].unique():
            owners.setdefault(repo, set()).add(name)
    return sorted(repo for repo, names in owners.items() if len(names) > 1)


# -- the card -----------------------------------------------------------------------------------------

HF_DTYPES = {pl.String: "string", pl.Int64: "int64", pl.Boolean: "bool"}


def size_category(rows: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if rows < limit:
            return label
    return "n>1M"


def card_license(licenses: Sequence[str]) -> str:
    """The card's `license:` (Hugging Face ids are lower-case SPDX ids), `other` when sources differ."""
    unique = sorted(set(licenses))
    return unique[0].lower() if len(unique) == 1 else "other"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def card_sources(snapshots: dict[str, dict]) -> list[dict]:
    """The dataset card's sources: each repository (cloned_repo's snapshot, by partition key) with its
    commit and license; a URL's credentials removed, a local path shown by its key only."""
    return [
        {
            "repo": key,
            "location": redact_url(snapshot["location"]) if "://" in snapshot["location"] else key,
            "commit": snapshot["commit"],
            "license": snapshot["license"],
        }
        for key, snapshot in sorted(snapshots.items())
    ]


def card_settings(config: FastApplyConfig, *, split_by: str) -> dict:
    """The settings the dataset card records: those that shaped its rows."""
    settings = config.dataset
    return {
        "seed": config.seed,
        "tokenizer": settings.tokenizer,
        "max_seq_length": settings.max_seq_length,
        "max_changed_fraction": settings.max_changed_fraction,
        "llm_disagreement": settings.llm_disagreement,
        "dedup": settings.dedup.model_dump(),
        "split": settings.split.model_dump() | {"by": split_by},
        "generators": list(config.triples.generators),
        "snippet_styles": dict(config.triples.snippet_styles),
    }


def dataset_card(
    *,
    pretty_name: str,
    splits: dict[str, pl.DataFrame],
    split_by: str,
    sources: Sequence[dict],
    rejected: Counter,
    settings: dict,
    rejected_by_style: Counter | None = None,
) -> str:
    """README.md with Hugging Face YAML front matter, generated from the data."""
    import yaml

    all_rows = pl.concat(list(splits.values())) if splits else pl.DataFrame()
    features = [{"name": c, "dtype": HF_DTYPES.get(all_rows.schema[c], "string")} for c in DATASET_COLUMNS]
    licenses = [s["license"] for s in sources]
    front = {
        "pretty_name": pretty_name,
        "license": card_license(licenses),
        "language": ["code"],
        "tags": ["code", "code-editing", "fast-apply", "synthetic"],
        "task_categories": ["text-generation"],
        "size_categories": [size_category(all_rows.height)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"data/{name}.parquet"} for name in splits],
            }
        ],
        "dataset_info": {
            "features": features,
            "splits": [{"name": name, "num_examples": frame.height} for name, frame in splits.items()],
        },
    }
    if front["license"] == "other":
        front["license_name"] = "per-source"
        front["license_details"] = "Each row keeps its source repository's license: " + ", ".join(
            f"{s['repo']} ({s['license']})" for s in sources
        )

    def counts(column: str) -> str:
        if all_rows.height == 0:
            return "(none)"
        rows = all_rows.group_by(column).len().sort(["len", column], descending=[True, False]).rows()
        return _table([column, "rows"], [(value if value is not None else "-", n) for value, n in rows])

    body = [
        f"# {pretty_name}",
        "",
        "Training data for **fast apply** code-merge models: each row is an `original_code`, a lazy "
        "`update_snippet` (unchanged code elided with the language's `... existing code ...` comment) and "
        "the merged `final_code`, made from permissively licensed repositories by "
        "fastapply-pipeline. Every row passed these checks: no text spells a control token of the training "
        "tokenizer (such as `<|im_end|>`), the final differs from "
        "the original, parses wherever the original parsed, holds no elision marker, contains every "
        "snippet line in order, is not a whole-file rewrite, and the whole training example fits "
        f"{settings.get('max_seq_length')} tokens of the training tokenizer. Exact and near duplicates "
        + (
            "were removed. Splits are by repository: no repository appears in two splits."
            if split_by == "repo"
            else "were removed. There is one repository, so splits are by file: no file appears in two splits."
        ),
        "",
        "## Splits",
        "",
        _table(
            ["split", "rows", "repositories"],
            [(n, f.height, f["repo"].n_unique()) for n, f in splits.items()],
        ),
        "",
        "## Sources",
        "",
        _table(
            ["repository", "location", "commit", "license", "rows"],
            [
                (
                    s["repo"],
                    s["location"],
                    s["commit"][:12],
                    s["license"],
                    int((all_rows["repo"] == s["repo"]).sum()) if all_rows.height else 0,
                )
                for s in sources
            ],
        ),
        "",
        "## Rows by language",
        "",
        counts("language"),
        "",
        "## Rows by generator",
        "",
        counts("generator"),
        "",
        "## Rows by edit kind",
        "",
        counts("edit_kind"),
        "",
        "## Rows by snippet style",
        "",
        "How each update snippet is written: `anchored` hunks between markers, a `changed_first_line` right "
        "after a marker, one `unit` without markers (or a `dedented_unit`), the `whole_file`, "
        "`other_spelling` markers, `generous_context`; `llm` for snippets an LLM wrote.",
        "",
        counts("snippet_style"),
        "",
        "## Rows by size of the original file (tokens)",
        "",
        counts("bucket"),
        "",
        "## Rows dropped, by reason",
        "",
        _table(["stage: reason", "rows"], sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0])))
        if rejected
        else "(none)",
        "",
        "## Rows dropped, by snippet style",
        "",
        _table(
            ["snippet style", "rows"],
            sorted(((k or "-", v) for k, v in rejected_by_style.items()), key=lambda kv: (-kv[1], kv[0])),
        )
        if rejected_by_style
        else "(none)",
        "",
        "## How it was built",
        "",
        "```yaml",
        yaml.safe_dump(settings, sort_keys=True).rstrip(),
        "```",
        "",
    ]
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + "\n".join(body)


# -- writing and publishing ---------------------------------------------------------------------------


def write_dataset(folder, splits: dict[str, pl.DataFrame], card: str):
    """The DatasetDict under `folder/hf` (save_to_disk), one parquet per split under `folder/data`, and
    the card as `folder/README.md`; written beside and swapped in, so a reader never sees half of it."""
    import shutil
    import uuid
    from pathlib import Path

    from datasets import Dataset, DatasetDict, disable_progress_bars

    disable_progress_bars()  # progress bars of save_to_disk would fill the run's log
    folder = Path(folder)
    check_replaceable(folder, {DATASET_HF, "data", "README.md"})
    unique = uuid.uuid4().hex[:8]  # never a name the user may have: only what this call creates is removed
    staging = folder.with_name(f".{folder.name}.{unique}.tmp")
    (staging / "data").mkdir(parents=True)
    dataset = DatasetDict(
        {name: Dataset.from_polars(frame.select(DATASET_COLUMNS)) for name, frame in splits.items()}
    )
    dataset.save_to_disk(str(staging / DATASET_HF))
    for name, frame in splits.items():
        frame.select(DATASET_COLUMNS).write_parquet(staging / "data" / f"{name}.parquet")
    (staging / "README.md").write_text(card, encoding="utf-8")
    mark_owned(staging)
    old = folder.with_name(f".{folder.name}.{unique}.old")
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return dataset


def push_to_hub(folder, repo_id: str, *, private: bool, token: str, api=None) -> str:
    """Upload the card and the parquet files to a Hugging Face dataset repo; returns its URL."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="dataset",
        allow_patterns=["README.md", "data/*.parquet"],
        commit_message="Update the dataset (fastapply-pipeline)",
    )
    return str(url)

"""fastapply_dataset and rejected_triples: every repository's triples -> the dataset people train on."""

from collections import Counter
from collections.abc import Collection, Iterable, Iterator

import dagster as dg
import polars as pl

# Not exported at the top level in Dagster 1.13: reading a partition's latest check evaluation needs them.
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
)

from fastapply_pipeline.core.artifacts import DATASET
from fastapply_pipeline.core.chat import control_tokens, example_lengths, load_training_tokenizer
from fastapply_pipeline.core.dataset import (
    card_settings,
    card_sources,
    dataset_card,
    dedup,
    push_to_hub,
    repos_in_several_splits,
    split,
    validate,
    write_dataset,
)
from fastapply_pipeline.core.markers import contains_marker
from fastapply_pipeline.core.parsing import parses
from fastapply_pipeline.core.snippets import bucket_spec
from fastapply_pipeline.defs.reporting import count_table, markdown_table
from fastapply_pipeline.defs.resources import ArtifactsResource, FastApplyResource, SecretsResource
from fastapply_pipeline.defs.triples.assets import TRIPLE_CHECKS

DATASET_CHECKS = {
    "no_repo_in_two_splits": "No repository (or, with one repository, no file) appears in two splits.",
    "no_marker_in_final": "No elision marker leaked into any final_code.",
    "finals_parse": "Every final_code parses wherever its original_code parses.",
    "test_split_not_empty": "The test split has rows.",
}
HF_TOKEN_ENV = "HF_TOKEN"


@dg.multi_asset(
    outs={
        "fastapply_dataset": dg.AssetOut(
            group_name="dataset",
            kinds={"huggingface", "parquet"},
            description=(
                "The training dataset: every repository's edit_triples validated (code spelling a control "
                "token of the training tokenizer such as `<|im_end|>`, no-op, marker leak, "
                "unparseable final, snippet not a subsequence of the final, whole-file rewrite, too long "
                "for max_seq_length with the training tokenizer's chat template, LLM rows the applier "
                "disagrees with), deduplicated (exact and MinHash near-duplicates), split by repository, "
                "saved as a Hugging Face DatasetDict and as parquet with a generated dataset card; pushed "
                "to the Hub when dataset.push.repo_id is set. The value is where it lies."
            ),
        ),
        "rejected_triples": dg.AssetOut(
            group_name="dataset",
            kinds={"polars", "parquet"},
            io_manager_key="parquet_io_manager",
            description=(
                "Every row fastapply_dataset dropped, with its stage, reason and detail; stage `input`: "
                "the rows of an edit_triples partition whose blocking checks last failed (not used)."
            ),
        ),
    },
    ins={
        "edit_triples": dg.AssetIn(metadata={"allow_missing_partitions": True}),
        "cloned_repo": dg.AssetIn(metadata={"allow_missing_partitions": True}),
    },
    check_specs=[
        dg.AssetCheckSpec(name, asset="fastapply_dataset", description=text, blocking=True)
        for name, text in DATASET_CHECKS.items()
    ],
)
def fastapply_dataset(
    context: dg.AssetExecutionContext,
    fastapply: FastApplyResource,
    artifacts: ArtifactsResource,
    secrets: SecretsResource,
    edit_triples,
    cloned_repo,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    config = fastapply.load()
    edit_triples = _by_partition(context, "edit_triples", edit_triples)
    cloned_repo = _by_partition(context, "cloned_repo", cloned_repo)
    settings = config.dataset
    registered = sorted(set(edit_triples) | set(cloned_repo))
    # A failed blocking check fails its run, but the table it checked stays stored: never build on it.
    failing = _partitions_failing_blocking_checks(context, "edit_triples", TRIPLE_CHECKS, edit_triples)
    skipped = {key: edit_triples.pop(key) for key in failing}
    skipped_rows = sum(frame.height for frame in skipped.values())
    if failing:
        context.log.warning(
            "edit_triples partitions not used, their blocking checks last failed (rematerialize them): "
            + "; ".join(f"{key} ({', '.join(checks)})" for key, checks in failing.items())
        )
    # diagonal: a partition written by an older code version may lack newer columns (they become null)
    table = pl.concat(list(edit_triples.values()), how="diagonal_relaxed") if edit_triples else pl.DataFrame()
    if table.height == 0:
        raise dg.Failure(
            "no edit triples to build a dataset from: materialize edit_triples for at least one source "
            f"(registered partitions with triples: {sorted(edit_triples) or 'none'}"
            + (
                f"; not used because their blocking checks last failed: {', '.join(sorted(failing))}"
                if failing
                else ""
            )
            + ")"
        )
    buckets = bucket_spec(config.snippets)
    if "snippet_style" not in table.columns:  # triples of a code version before snippet styles
        table = table.with_columns(pl.lit(None, pl.String).alias("snippet_style"))
    table = table.with_columns(
        pl.col("original_tokens")
        .map_elements(lambda n: buckets.labels[buckets.index_of(n)], return_dtype=pl.String)
        .alias("bucket")
    )

    tokenizer = load_training_tokenizer(settings.tokenizer, allow_download=settings.allow_download)
    outcome = validate(
        table,
        max_changed_fraction=settings.max_changed_fraction,
        max_seq_length=settings.max_seq_length,
        llm_disagreement=settings.llm_disagreement,
        example_lengths=lambda rows: example_lengths(tokenizer, rows),
        control_tokens=control_tokens(tokenizer),
    )
    outcome = dedup(
        outcome,
        near=settings.dedup.near_duplicates,
        threshold=settings.dedup.threshold,
        num_perm=settings.dedup.num_perm,
        seed=config.seed,
    )
    for key, frame in skipped.items():
        detail = f"edit_triples partition {key}: {', '.join(failing[key])} failed"
        for row in frame.iter_rows(named=True):
            outcome.reject(row, "input", "failed_check", detail)
    rejected = outcome.rejected_frame()
    reasons = Counter(
        f"{stage}: {reason}" for stage, reason in rejected.select("stage", "reason").iter_rows()
    )
    # Written first: when nothing is left to split, the reasons are there to read.
    yield dg.Output(rejected, output_name="rejected_triples", metadata={"rows": rejected.height})
    try:
        parts = split(
            outcome.kept, test=settings.split.test, validation=settings.split.validation, seed=config.seed
        )
    except ValueError as err:
        raise dg.Failure(
            f"{outcome.kept.height} of {table.height + skipped_rows} rows survived validation and dedup: {err} "
            f"(rejected_triples holds the others; by reason: {dict(reasons)})"
        ) from None
    kept_rows = sum(frame.height for frame in parts.splits.values())
    rows_in = table.height + skipped_rows
    assert kept_rows + rejected.height == rows_in, "every row is kept or rejected"

    sources = card_sources(cloned_repo)
    card = dataset_card(
        pretty_name="Fast Apply edit triples",
        splits=parts.splits,
        split_by=parts.by,
        sources=sources,
        rejected=reasons,
        rejected_by_style=Counter(rejected["snippet_style"]),
        settings=card_settings(config, split_by=parts.by),
    )
    folder = artifacts.path(DATASET)
    write_dataset(folder, parts.splits, card)
    stored_at = artifacts.store().publish(DATASET)  # the folder itself locally; S3 in production
    context.log.info(f"dataset written to {stored_at}: {kept_rows} rows kept, {rejected.height} dropped")

    pushed = "off (set dataset.push.repo_id)"
    if settings.push.repo_id:
        token = secrets.key(HF_TOKEN_ENV)
        if not token:
            raise dg.Failure(
                f"dataset.push.repo_id is {settings.push.repo_id!r} but {HF_TOKEN_ENV} is not set; export "
                "a token with write access (it is read only from the environment)"
            )
        pushed = push_to_hub(folder, settings.push.repo_id, private=settings.push.private, token=token)
        context.log.info(f"pushed to {pushed}")

    all_rows = pl.concat(list(parts.splits.values()))
    split_rows = [(name, frame.height, frame["repo"].n_unique()) for name, frame in parts.splits.items()]
    yield dg.Output(
        {"path": stored_at, "splits": {name: frame.height for name, frame in parts.splits.items()}},
        output_name="fastapply_dataset",
        metadata={
            "stored_at": dg.MetadataValue.path(stored_at),  # "path" is the IO manager's (the pickled value)
            "rows": kept_rows,
            "rows_in": rows_in,
            "rejected": rejected.height,
            "splits": markdown_table(["split", "rows", "repositories"], split_rows),
            "split_by": "repository" if parts.by == "repo" else "file (only one repository has rows)",
            "rejected_by_reason": count_table("stage: reason", dict(reasons)) if reasons else "none",
            "rows_by_language": count_table("language", dict(Counter(all_rows["language"]))),
            "rows_by_generator": count_table("generator", dict(Counter(all_rows["generator"]))),
            "rows_by_edit_kind": count_table("edit kind", dict(Counter(all_rows["edit_kind"]))),
            "rows_by_snippet_style": count_table("snippet style", dict(Counter(all_rows["snippet_style"]))),
            "rejected_by_snippet_style": count_table(
                "snippet style", dict(Counter(rejected["snippet_style"]))
            )
            if rejected.height
            else "none",
            "rows_by_bucket": count_table("bucket", dict(Counter(all_rows["bucket"]))),
            "example_tokens_max": int(all_rows["example_tokens"].max() or 0),
            "example_tokens_median": float(all_rows["example_tokens"].median() or 0),
            "sources": markdown_table(
                ["repository", "commit", "license"],
                [(s["repo"], s["commit"][:12], s["license"]) for s in sources],
            ),
            "partitions_without_triples": ", ".join(
                sorted(set(registered) - set(edit_triples) - set(skipped))
            )
            or "none",
            "partitions_skipped": markdown_table(
                ["partition", "failed blocking checks", "rows not used"],
                [(key, ", ".join(failing[key]), skipped[key].height) for key in sorted(skipped)],
            )
            if skipped
            else "none",
            "pushed_to": pushed,
            "card": dg.MetadataValue.md(card.split("---\n", 2)[-1]),
        },
    )

    offenders = {
        "no_repo_in_two_splits": repos_in_several_splits(parts.splits)
        if parts.by == "repo"
        else _files_in_several(parts.splits),
        "no_marker_in_final": [
            t for t, f in all_rows.select("triple_id", "final_code").iter_rows() if contains_marker(f)
        ],
        "finals_parse": [
            t
            for t, o, f, lang in all_rows.select(
                "triple_id", "original_code", "final_code", "language"
            ).iter_rows()
            if parses(o, lang) and not parses(f, lang)
        ],
        "test_split_not_empty": [] if parts.splits["test"].height else ["test"],
    }
    for name, bad in offenders.items():
        yield dg.AssetCheckResult(
            asset_key="fastapply_dataset",
            check_name=name,
            passed=not bad,
            metadata={"violations": len(bad), "examples": ", ".join(bad[:10]) or "-"},
        )


def _partitions_failing_blocking_checks(
    context: dg.AssetExecutionContext, asset: str, checks: Collection[str], partitions: Iterable[str]
) -> dict[str, list[str]]:
    """{partition: [check names]}: the partitions of `asset` whose stored table's latest evaluation of one
    of its blocking `checks` failed (ERROR severity: the ones that stop a run). A run that fails such a
    check still leaves the table it checked in storage.

    An evaluation counts when the run that wrote the latest materialization made it for that
    materialization, or when it was recorded for the partition later (e.g. reported from outside a run).
    Dagster 1.13 records the checks a partitioned asset's step evaluates without the partition, so the
    run is what ties them to it."""
    instance = context.instance
    asset_key = dg.AssetKey(asset)
    check_keys = [dg.AssetCheckKey(asset_key, name) for name in sorted(checks)]
    failing: dict[str, list[str]] = {}
    for partition in sorted(partitions):
        materializations = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
        ).records
        if not materializations:
            continue
        stored = materializations[0]
        evaluations = []  # (when, evaluation)
        for record in instance.get_records_for_run(
            stored.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records:
            evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
            target = evaluation.target_materialization_data
            if target is None or target.storage_id == stored.storage_id:
                evaluations.append((record.timestamp, evaluation))
        later = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            check_keys, partition_filter=PartitionKeyFilter(key=partition)
        )
        evaluations += [
            (record.event.timestamp, record.evaluation)
            for record in later.values()
            if record.status in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
            and record.event is not None
            and record.event.timestamp >= stored.timestamp
        ]
        latest = {
            evaluation.check_name: evaluation
            for _, evaluation in sorted(evaluations, key=lambda pair: pair[0])
            if evaluation.asset_key == asset_key and evaluation.check_name in checks
        }
        failed = [
            name
            for name, evaluation in sorted(latest.items())
            if not evaluation.passed
            and evaluation.blocking is not False
            and evaluation.severity == dg.AssetCheckSeverity.ERROR
        ]
        if failed:
            failing[partition] = failed
    return failing


# The dataset's key alone (the multi-asset also holds rejected_triples): what the training and
# evaluation stages depend on, since they read the dataset folder (core.artifacts.DATASET).
DATASET_KEY = fastapply_dataset.keys_by_output_name["fastapply_dataset"]


def _by_partition(context: dg.AssetExecutionContext, name: str, value) -> dict:
    """Every loaded partition of an input as {partition key: value}: the IO managers hand a lone
    partition over bare, and several as a dict."""
    keys = set(context.asset_partition_keys_for_input(name))
    if value is None:
        return {}
    if isinstance(value, dict) and set(value) <= keys:
        return dict(value)
    (key,) = keys
    return {key: value}


def _files_in_several(splits: dict[str, pl.DataFrame]) -> list[str]:
    owners: dict[str, set[str]] = {}
    for name, frame in splits.items():
        for repo, path in frame.select("repo", "path").unique().iter_rows():
            owners.setdefault(f"{repo}/{path}", set()).add(name)
    return sorted(key for key, names in owners.items() if len(names) > 1)

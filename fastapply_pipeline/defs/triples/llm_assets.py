"""anthropic_triples and openai_triples: LLM-written edits of a repository's files, one asset per provider.

One asset per provider so that each holds its provider's Dagster pool ("anthropic", "openai"): parallel
runs (a backfill of many repositories) then talk to a provider one step at a time, and the client-side
requests/tokens-per-minute limits of that step are the provider's whole traffic from this deployment.
A provider that is not in `triples.generators` materializes an empty table at once (no key needed).
"""

from collections import Counter

import dagster as dg
import polars as pl

from fastapply_pipeline.core.llm.cache import BatchStore, ResponseCache
from fastapply_pipeline.core.llm.clients import API_KEY_ENV, complete_all, estimate_cost
from fastapply_pipeline.core.synth.llm import LLM_ROW_SCHEMA, llm_rows, plan_jobs
from fastapply_pipeline.core.tokens import get_token_counter
from fastapply_pipeline.defs.partitions import source_repo_partitions
from fastapply_pipeline.defs.reporting import count_table, markdown_table
from fastapply_pipeline.defs.resources import FastApplyResource, SecretsResource

SDK = {"anthropic": "Messages / Message Batches API", "openai": "Chat Completions / Batch API"}


def build_llm_triples_asset(provider: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{provider}_triples",
        partitions_def=source_repo_partitions,
        group_name="triples",
        kinds={provider, "polars", "parquet"},
        io_manager_key="parquet_io_manager",
        pool=provider,
        code_version="1",
        description=(
            f"Edits of this repository's snippet files written by the {provider} {SDK[provider]} (official "
            f"SDK; key from {API_KEY_ENV[provider]}), when `{provider}` is in triples.generators. One row per "
            "request: `ok` (the deterministic applier reproduces the LLM's final), `flagged` (kept, with "
            "why the applier disagrees) or `rejected` with the reason (error, missing or expired result, "
            "truncated, malformed, no change, marker in final, final does not parse). Answers are cached "
            "by content, so re-materializing makes no new request; batch ids are saved at creation."
        ),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        fastapply: FastApplyResource,
        secrets: SecretsResource,
        code_snippets: pl.DataFrame,
    ) -> dg.Output[pl.DataFrame]:
        config = fastapply.load()
        triples = config.triples
        if provider not in triples.generators:
            return dg.Output(
                pl.DataFrame(schema=LLM_ROW_SCHEMA),
                metadata={
                    "rows": 0,
                    "enabled": False,
                    "how_to_enable": f"add `{provider}` to triples.generators in fastapply.yaml "
                    f"and export {API_KEY_ENV[provider]}",
                },
            )
        llm = triples.llm
        settings = llm.provider(provider)
        counter = get_token_counter("cl100k_base")  # an estimate for the tokens-per-minute limit
        files = code_snippets.select("repo", "commit", "path", "language", "content").rows()
        jobs, skipped = plan_jobs(
            files,
            provider=provider,
            enabled=triples.llm_providers,
            llm=llm,
            seed=config.seed,
            scanner=config.secret_scanner(),
            count_tokens=lambda text: counter.count_batch([text])[0],
        )
        context.log.info(
            f"{provider}: {len(jobs)} request(s) for {context.partition_key} ({settings.api} API)"
        )
        cache_root = config.cache_dir / "llm"
        completions, run = complete_all(
            provider,
            settings,
            [job.request for job in jobs],
            cache=ResponseCache(cache_root / "responses"),
            batches=BatchStore(cache_root / "batches"),
            keys=secrets.key,
            retry_failed=llm.retry_failed,
            log=context.log.info,
            description=f"fastapply-pipeline {context.partition_key}",
        )
        table = llm_rows(jobs, completions, mode=llm.mode)
        return dg.Output(table, metadata=_metadata(table, skipped, run, llm, settings))

    return _asset


def _metadata(table: pl.DataFrame, skipped: Counter, run, llm, settings) -> dict:
    usage = (
        table.unique("request_key")
        .group_by("model", "api", "cached")
        .agg(pl.len().alias("requests"), pl.col("input_tokens").sum(), pl.col("output_tokens").sum())
        .sort("cached", "model", "api")
    )
    rows, spent, total = [], 0.0, 0.0
    unpriced: set[str] = set()
    for model, api, cached, requests, tokens_in, tokens_out in usage.iter_rows():
        cost, missing = estimate_cost([(model, api, tokens_in, tokens_out)], llm.prices, llm.batch_discount)
        unpriced.update(missing)
        total += cost
        spent += 0.0 if cached else cost
        shown = "no price" if missing else f"${cost:,.4f}"
        rows.append((model, api, "cache" if cached else "provider", requests, tokens_in, tokens_out, shown))
    status = dict(Counter(table["status"]))
    reasons = (
        table.filter(pl.col("status") != "ok").group_by("status", "reason").len().sort("status", "reason")
    )
    return {
        "rows": table.height,
        "enabled": True,
        "api": settings.api,
        "model": settings.model,
        "rows_by_status": count_table("status", status),
        "ok": status.get("ok", 0),
        "flagged": status.get("flagged", 0),
        "rejected": status.get("rejected", 0),
        "not_ok_by_reason": markdown_table(["status", "reason", "rows"], reasons.rows()),
        "skipped_files": count_table("reason", dict(skipped)) if skipped else "none",
        "usage": markdown_table(
            ["model", "api", "answered by", "requests", "input tokens", "output tokens", "est. cost (USD)"],
            rows,
        ),
        "requests_sent": run.sent,
        "requests_from_cache": run.cached,
        "input_tokens": int(table.unique("request_key")["input_tokens"].sum() or 0),
        "output_tokens": int(table.unique("request_key")["output_tokens"].sum() or 0),
        "cost_usd_this_run": round(spent, 6),
        "cost_usd_all_rows": round(total, 6),
        "models_without_price": ", ".join(sorted(unpriced)) or "none",
        "batches_created": ", ".join(run.batches_created) or "none",
        "batches_resumed": ", ".join(run.batches_resumed) or "none",
        "rate_limit_wait_seconds": round(run.rate_limit_wait_seconds, 2),
        "unexpected_batch_results": run.unexpected_results,
    }


anthropic_triples = build_llm_triples_asset("anthropic")
openai_triples = build_llm_triples_asset("openai")

"""Benchmark: sync LLM throughput against a provider with fixed latency, as a ratio of the ideal.

    python benchmarks/bench_llm.py [--concurrency 4,8,16,32] [--per-slot 25] [--latency 0.2] [--rpm 1200]

The stand-in server (fastapply_pipeline_tests/standin.py) runs in its own process on 127.0.0.1 and
answers every request after `--latency` seconds. For each concurrency C, complete_all sends
C x `--per-slot` distinct requests through the official SDK (anthropic, then openai), C at a time. The
ideal is C / latency requests per second; with `--rpm` (run at the highest concurrency, so the limit
binds) it is rpm / 60 after the limiter's one-second burst: a ratio near 1 there means the limit is
kept without wasting it. Prints requests/s and the ratio measured / ideal. Goal: >= 0.9 at the shipped default
concurrency (8). On a 2-core machine the SDKs' own CPU time per request (~4 ms: parameter transforms,
HTTP) plus the stand-in's share the same cores, which bounds the ratio at high concurrency; a real
provider does not run on your machine.
"""

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONCURRENCY = 8  # ProviderSettings.concurrency
sys.path.insert(0, str(ROOT))

from fastapply_pipeline.config import parse_config  # noqa: E402
from fastapply_pipeline.core.llm.cache import BatchStore, ResponseCache  # noqa: E402
from fastapply_pipeline.core.llm.clients import complete_all  # noqa: E402
from fastapply_pipeline.core.synth.llm import plan_jobs  # noqa: E402
from fastapply_pipeline_tests.conftest import python_module  # noqa: E402
from fastapply_pipeline_tests.standin import StandIn  # noqa: E402


def serve(latency: float, conn) -> None:
    with StandIn(latency=latency) as server:
        conn.send(server.url)
        conn.recv()  # until told to stop


def measure(provider: str, url: str, count: int, concurrency: int, rpm: int | None) -> float:
    base_url = url if provider == "anthropic" else url + "/v1"
    settings = {
        "base_url": base_url,
        "concurrency": concurrency,
        "requests_per_minute": rpm,
        "timeout_seconds": 30,
    }
    config = parse_config(
        {
            "sources": [{"path": "."}],
            "triples": {
                "generators": [provider],
                "llm": {"mix": {provider: 1}, "files_per_repo": None, provider: settings},
            },
        },
        base_dir=Path(tempfile.mkdtemp()),
    )
    files = [("bench", "c0", f"m{i}.py", "python", python_module(f"m{i}", 4)) for i in range(count)]
    jobs, _ = plan_jobs(
        files, provider=provider, enabled=[provider], llm=config.triples.llm, seed=0, scanner=None
    )
    requests = [job.request for job in jobs]
    work = Path(tempfile.mkdtemp())
    __import__(provider)  # the SDK's import (1-3 s, once per process) is not throughput
    started = time.perf_counter()
    results, _ = complete_all(
        provider,
        config.triples.llm.provider(provider),
        requests,
        cache=ResponseCache(work / "responses"),
        batches=BatchStore(work / "batches"),
        keys=os.environ.get,
    )
    elapsed = time.perf_counter() - started
    failed = sum(c.status != "completed" for c in results.values())
    if failed:
        raise SystemExit(f"{failed} {provider} requests failed")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="4,8,16,32", help="comma-separated requests in flight")
    parser.add_argument("--per-slot", type=int, default=25, help="requests per concurrency slot")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument(
        "--rpm", type=int, default=1200, help="also run with this client-side limit (0: skip)"
    )
    args = parser.parse_args()
    os.environ.setdefault("ANTHROPIC_API_KEY", "bench")
    os.environ.setdefault("OPENAI_API_KEY", "bench")
    levels = [int(c) for c in args.concurrency.split(",")]

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(args.latency, child), daemon=True)
    server.start()
    url = parent.recv()
    try:
        runs = [(provider, c, None) for c in levels for provider in ("anthropic", "openai")]
        if args.rpm:
            runs += [(provider, levels[-1], args.rpm) for provider in ("anthropic", "openai")]
        print(f"server latency {args.latency * 1000:.0f} ms, {args.per_slot} requests per slot")
        at_default = []
        for provider, concurrency, rpm in runs:
            # Under a limit, about 5 s worth of requests at the limit's rate.
            count = concurrency * args.per_slot if not rpm else max(1, round(5 * rpm / 60))
            elapsed = measure(provider, url, count, concurrency, rpm)
            if rpm:  # the limiter's one-second burst goes at once, the rest at rpm / 60, plus one latency
                ideal_rate = rpm / 60
                ideal_seconds = max(0, count - max(1, ideal_rate)) / ideal_rate + args.latency
            else:
                ideal_rate = concurrency / args.latency
                ideal_seconds = count / ideal_rate
            ratio = ideal_seconds / elapsed
            if concurrency == DEFAULT_CONCURRENCY and not rpm:
                at_default.append(ratio)
            limit = f"rpm {rpm}" if rpm else "no limit"
            print(
                f"  {provider:9} concurrency {concurrency:3} {limit:9}: {count:4} requests in {elapsed:6.2f} s, "
                f"{count / elapsed:6.1f} req/s; ideal {ideal_rate:6.1f} req/s; ratio {ratio:.2f}"
            )
        if at_default:
            print(
                f"ratio at the default concurrency ({DEFAULT_CONCURRENCY}): {min(at_default):.2f} (goal >= 0.9)"
            )
    finally:
        parent.send("stop")
        server.join(timeout=5)


if __name__ == "__main__":
    main()

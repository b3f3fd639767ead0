"""Benchmark: the real Qwen2.5-Coder-0.5B-Instruct on short held-out triples, beside the baselines.

    ../shared/tools/provision-qwen-coder-0.5b        # once: the real model, offline (478 MB)
    python benchmarks/bench_eval.py [--model PATH] [--examples 20] [--packages rich,pygments,hypothesis]
                                    [--max-tokens 300] [--lookup 10,40]

Held-out triples: the structural generator on small Python files of installed packages that no
configured source holds, one edit per file, kept when the original and final files have at most
`--max-tokens` tokens (so that CPU decoding takes minutes, not hours). THE inference prompt, greedy.

Prints exact match (and the other metrics) of the base model, the deterministic applier and the identity
baseline, and the prompt-lookup speedup: every example decoded plain and with prompt-lookup drafts of
each `--lookup` length (the prompt, which holds the original file, is the draft source) in the same run,
tokens/s of each, the ratio, and how many answers are identical (greedy decoding: all must be). The
issue's goal is a speedup of 3x. Exits 1 when any answer differs.
"""

import argparse
import importlib.util
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapply_pipeline.core.evaluate import (  # noqa: E402
    Merge,
    applier_candidate,
    evaluate,
    identity_candidate,
    summary_table,
)
from fastapply_pipeline.core.inference import load_model, merge_with_model  # noqa: E402
from fastapply_pipeline.core.synth.structural import DEFAULT_EDIT_KINDS, structural_triples  # noqa: E402

DEFAULT_MODEL = Path.home() / ".cache/fastapply/models/qwen2.5-coder-0.5b-instruct"


def held_out_rows(packages: list[str], count: int, max_tokens: int, tokenizer, seed: int = 0) -> list[dict]:
    files = []
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"package {package!r} is not installed: pass --packages with installed ones")
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            if path.stat().st_size <= 8 * max_tokens:  # a cheap bound before tokenizing
                text = path.read_text(encoding="utf-8")
                files.append((package, "bench", f"{package}/{path.relative_to(root)}", "python", text))
    report = structural_triples(files, attempts_per_file=6, weights=DEFAULT_EDIT_KINDS, seed=seed)

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    # Whole files are the contract, so the examples are short because their files are.
    short = [
        t
        for t in report.triples
        if tokens(t.final_code) <= max_tokens and tokens(t.original_code) <= max_tokens
    ]
    random.Random(seed).shuffle(short)
    rows, seen_files = [], set()
    for triple in short:  # one edit per file, so that no file dominates
        if triple.provenance.path in seen_files:
            continue
        seen_files.add(triple.provenance.path)
        rows.append(
            {
                "triple_id": triple.triple_id,
                "original_code": triple.original_code,
                "update_snippet": triple.update_snippet,
                "final_code": triple.final_code,
                "language": "python",
                "generator": "structural",
                "edit_kind": triple.provenance.edit_kind,
            }
        )
        if len(rows) == count:
            break
    return rows


FENCED = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)```", re.DOTALL)


def fenced(answer: str) -> str | None:
    """The code in a markdown fence: NOT the contract (tags are), only to show what a base model merges."""
    match = FENCED.search(answer)
    return match.group(1) if match else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--packages", default="rich,pygments,hypothesis")
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument(
        "--lookup", default="10,40", help="Prompt-lookup draft lengths to time, comma-separated."
    )
    args = parser.parse_args()
    if not Path(args.model).is_dir():
        raise SystemExit(f"no model at {args.model}: run ../shared/tools/provision-qwen-coder-0.5b first")
    lookups = [int(k) for k in args.lookup.split(",")]

    model, tokenizer = load_model(args.model)
    rows = held_out_rows(args.packages.split(","), args.examples, args.max_tokens, tokenizer)
    kinds = sorted({r["edit_kind"] for r in rows})
    print(
        f"{len(rows)} held-out triples from {args.packages} (files <= {args.max_tokens} tokens; {', '.join(kinds)})"
    )

    # Every example: plain greedy, then each draft length; the order rotates so none always runs first.
    merge_with_model(
        model,
        tokenizer,
        rows[0]["original_code"],
        rows[0]["update_snippet"],
        prompt_lookup=None,
        max_new_tokens=4,
    )
    runs: dict[int | None, list] = {k: [] for k in [None, *lookups]}
    started = time.perf_counter()
    for i, row in enumerate(rows):
        order = [None, *lookups]
        order = order[i % len(order) :] + order[: i % len(order)]
        for k in order:
            runs[k].append(
                merge_with_model(
                    model, tokenizer, row["original_code"], row["update_snippet"], prompt_lookup=k
                )
            )
        print(f"  {i + 1}/{len(rows)}: {runs[None][-1].new_tokens} tokens", flush=True)
    print(f"decoded {len(rows)} examples {len(runs)} ways in {time.perf_counter() - started:.0f} s")

    plain = runs[None]

    def replay(merges, *, lenient: bool = False):
        def run(batch, tick):
            out = []
            for m in merges:
                merged = m.merged if not lenient or m.merged is not None else fenced(m.answer)
                out.append(Merge(merged, m.merged is None, m.new_tokens, m.seconds))
                tick()
            return out

        return run

    candidates = {
        "base": replay(plain),
        "base (fences accepted)": replay(plain, lenient=True),
        "applier": applier_candidate,
        "identity": identity_candidate,
    }
    results = evaluate(candidates, rows)
    columns, table = summary_table(results)
    print()
    print(" | ".join(columns))
    for line in table:
        print(" | ".join(str(cell) for cell in line))
    print(
        "(base: THE contract, text between <updated-code> tags; 'fences accepted' also reads a ```fenced``` "
        "answer, to show what the base model merges when it ignores the tags; only the first counts)"
    )

    tokens = sum(m.new_tokens for m in plain)
    plain_seconds = sum(m.seconds for m in plain)
    print()
    print(
        f"plain greedy:        {tokens} tokens in {plain_seconds:.1f} s = {tokens / plain_seconds:.1f} tokens/s"
    )
    failures = 0
    for k in lookups:
        drafted = runs[k]
        seconds = sum(m.seconds for m in drafted)
        same = sum(a.answer == b.answer for a, b in zip(plain, drafted, strict=True))
        failures += len(rows) - same
        ratios = sorted(a.seconds / b.seconds for a, b in zip(plain, drafted, strict=True))
        ratio = plain_seconds / seconds
        print(
            f"prompt lookup {k:>3}:   {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tokens/s; "
            f"speedup {ratio:.2f}x (per example min {ratios[0]:.2f}x, median {ratios[len(ratios) // 2]:.2f}x, "
            f"max {ratios[-1]:.2f}x; goal 3x {'met' if ratio >= 3 else 'NOT met'}); identical answers {same}/{len(rows)}"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

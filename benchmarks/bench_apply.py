"""Benchmark: the deterministic applier on the hand-written realistic cases, by shape and language.

    python benchmarks/bench_apply.py [--cases fastapply_pipeline_tests/data/realistic] [-v]

Each case is a merge case (the applier must write exactly the expected file) or a must-refuse case. An
outcome is `exact`, `refused` (a merge case it declined: safe, but a miss), `wrong` (it wrote another
file, or merged a must-refuse case: the worst outcome) or `refused_ok`. Then the speed: a 2,000-line
file merged with a three-hunk snippet (goal: well under 100 ms), and every renderer style on files of
2,000 to 16,000 lines of real code (installed dagster modules).
"""

import argparse
import difflib
import importlib.util
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

from fastapply_pipeline.core.apply import apply_snippet
from fastapply_pipeline.core.cases import load_cases
from fastapply_pipeline.core.markers import is_marker_line
from fastapply_pipeline.core.render import SNIPPET_STYLES, RenderError, render_snippet

ROOT = Path(__file__).resolve().parents[1]


def outcome(case) -> tuple[str, str]:
    result = apply_snippet(case.original, case.snippet, language=case.language)
    if case.expect == "refuse":
        return ("refused_ok", result.reason) if not result.ok else ("wrong", "merged a must-refuse case")
    if not result.ok:
        return "refused", f"{result.reason}: {result.detail}"
    if result.merged == case.final:
        return "exact", result.mode
    diff = difflib.unified_diff(
        case.final.splitlines(True), result.merged.splitlines(True), "expected", "merged"
    )
    return "wrong", "".join(list(diff)[:40])


def score_cases(folder: Path, verbose: bool) -> None:
    cases = load_cases(folder)
    by_shape: dict[str, Counter] = defaultdict(Counter)
    by_language: dict[str, Counter] = defaultdict(Counter)
    total = Counter()
    for case in cases:
        kind, detail = outcome(case)
        by_shape[case.shape][kind] += 1
        by_language[case.language][kind] += 1
        total[kind] += 1
        if verbose and kind in ("wrong", "refused"):
            print(f"--- {case.case_id} ({case.shape}, {case.language}): {kind}\n{detail}")
    columns = ["exact", "refused_ok", "refused", "wrong"]
    for title, table in (("shape", by_shape), ("language", by_language)):
        print(f"\n| {title} | cases | " + " | ".join(columns) + " |")
        print("|---|---|" + "---|" * len(columns))
        for name in sorted(table):
            counts = table[name]
            print(
                f"| {name} | {sum(counts.values())} | " + " | ".join(str(counts[c]) for c in columns) + " |"
            )
    right = total["exact"] + total["refused_ok"]
    print(
        f"\n{len(cases)} cases: {right} right ({right / len(cases):.0%}): {total['exact']} exact merges, "
        f"{total['refused_ok']} correct refusals; {total['refused']} merge cases refused; "
        f"{total['wrong']} WRONG files"
    )


def big_file(lines: int) -> str:
    """A long file of real code: installed dagster modules, concatenated (lines that look like markers
    left out: such files are not rendered)."""
    root = Path(importlib.util.find_spec("dagster").origin).parent
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        out.extend(line for line in path.read_text(errors="replace").splitlines() if not is_marker_line(line))
        if len(out) >= lines:
            break
    return "\n".join(out[:lines]) + "\n"


def speed() -> None:
    original = big_file(2_000)
    lines = original.splitlines()
    rng = random.Random(0)
    final_lines = list(lines)
    for at in sorted(rng.sample(range(50, 1_950), 3), reverse=True):
        final_lines.insert(
            at, final_lines[at][: len(final_lines[at]) - len(final_lines[at].lstrip())] + "pass"
        )
    final = "\n".join(final_lines) + "\n"
    snippet = render_snippet(original, final, "python").text
    runs = 20
    started = time.perf_counter()
    for _ in range(runs):
        result = apply_snippet(original, snippet, language="python")
    per_merge = (time.perf_counter() - started) / runs
    assert result.merged == final
    print(
        f"\napplier, 2,000-line file, 3 hunks: {per_merge * 1000:.1f} ms per merge (goal < 100 ms: {100 / (per_merge * 1000):.1f}x under)"
    )
    for size in (2_000, 4_000, 16_000):
        original = big_file(size)
        final_lines = original.splitlines()
        for at in (size // 4, size // 2, 3 * size // 4):  # a comment, indented like its place: still parses
            line = final_lines[at]
            final_lines.insert(at, line[: len(line) - len(line.lstrip())] + "# reviewed")
        final = "\n".join(final_lines) + "\n"
        for style in SNIPPET_STYLES:
            started = time.perf_counter()
            try:  # no size bound here: the pipeline skips files over MAX_RENDER_LINES, counted
                render_snippet(original, final, "python", style=style, max_lines=None)
                status = "ok"
            except RenderError as err:
                status = err.reason
            print(
                f"renderer, {size:,}-line file, 3 hunks, {style}: {time.perf_counter() - started:.2f} s ({status})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default=str(ROOT / "fastapply_pipeline_tests" / "data" / "realistic"))
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print every wrong or refused merge case"
    )
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()
    score_cases(Path(args.cases), args.verbose)
    if not args.no_speed:
        speed()


if __name__ == "__main__":
    main()

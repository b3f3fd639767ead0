"""Benchmark: line_hunks (Myers over hashed lines) vs difflib.SequenceMatcher, the diff render.py used.

    python benchmarks/bench_linediff.py [--sizes 2000 16000 50000] [--edits 5] [--difflib-limit 60]

For each size it builds a realistic file (this project's .py files concatenated, repeated until long
enough, so braces, blank lines and `return` lines repeat like in real code), applies a few scattered
edits (replace, insert, delete) and prints seconds per diff for both and the ratio. difflib is skipped on
sizes where it is expected to take longer than --difflib-limit seconds (extrapolated quadratically from the
previous size).
"""

import argparse
import difflib
import random
import time
from pathlib import Path

from fastapply_pipeline.core.linediff import line_hunks

ROOT = Path(__file__).resolve().parent.parent


def corpus() -> list[str]:
    files = sorted((ROOT / "fastapply_pipeline").rglob("*.py"))
    return [line for path in files for line in path.read_text(encoding="utf-8").splitlines()]


def make_pair(source: list[str], size: int, edits: int, rng: random.Random) -> tuple[list[str], list[str]]:
    a = (source * (size // len(source) + 1))[:size]
    b = list(a)
    # Edit from the end backwards so earlier positions stay valid; one edit per equal slice of the file.
    for k in reversed(range(edits)):
        i = rng.randrange(k * size // edits, (k + 1) * size // edits - 10)
        kind = k % 3
        if kind == 0:  # replace a few lines
            b[i : i + 3] = [f"    changed_{k}_{n} = {n}" for n in range(4)]
        elif kind == 1:  # insert a block
            b[i:i] = [f"def added_{k}():", "    return None", ""]
        else:  # delete a few lines
            del b[i : i + 5]
    return a, b


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def difflib_hunks(a: list[str], b: list[str]) -> list[tuple[int, int, int, int]]:
    opcodes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return [(a0, a1, b0, b1) for tag, a0, a1, b0, b1 in opcodes if tag != "equal"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 16000, 50000])
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--difflib-limit", type=float, default=60.0)
    args = parser.parse_args()

    source, rng = corpus(), random.Random(0)
    print(f"corpus: {len(source)} lines; {args.edits} edits per file")
    print(f"{'lines':>7} {'KB':>6} {'difflib s':>10} {'line_hunks s':>13} {'ratio':>8}")
    last = None  # (size, difflib seconds) for extrapolating
    for size in args.sizes:
        a, b = make_pair(source, size, args.edits, rng)
        kb = sum(len(line) + 1 for line in a) / 1000
        fast, hunks = timed(line_hunks, a, b)
        estimate = last[1] * (size / last[0]) ** 2 if last else 0.0
        if estimate > args.difflib_limit:
            print(
                f"{size:>7} {kb:>6.0f} {'skipped':>10} {fast:>13.4f} {'':>8}  (difflib est. {estimate:.0f} s)"
            )
            continue
        slow, reference = timed(difflib_hunks, a, b)
        last = (size, slow)
        changed = [sum(a1 - a0 + b1 - b0 for a0, a1, b0, b1 in h) for h in (reference, hunks)]
        print(
            f"{size:>7} {kb:>6.0f} {slow:>10.3f} {fast:>13.4f} {slow / fast:>7.0f}x"
            f"  (changed lines: difflib {changed[0]}, line_hunks {changed[1]})"
        )


if __name__ == "__main__":
    main()

"""The `fastapply` command's entry point: the CLI with the garbage collector kept out of its start-up.

Importing Dagster, polars and the stages allocates some million objects, and each automatic collection
walks them all again; so do the collections while a run executes and the one at interpreter exit. The
collector is paused while the CLI is imported, and what import built (modules, classes: alive until
exit) is then frozen out of every later collection, and everything alive at the end is frozen before
the interpreter tears down. Measured by `benchmarks/bench_snippets.py --process` (the one-file line).
"""

import gc


def main() -> None:
    gc.disable()
    try:
        from fastapply_pipeline.cli import main as cli
    finally:
        gc.freeze()
        gc.enable()
    try:
        cli()
    finally:
        gc.freeze()  # exits (SystemExit included) skip one last collection of the whole heap

"""`python -m fastapply_pipeline.cli`: the `fastapply` command."""

from fastapply_pipeline.cli import main

main()

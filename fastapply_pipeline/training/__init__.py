"""Training outside Dagster: the entrypoint the GPU job resource launches through Pipes."""

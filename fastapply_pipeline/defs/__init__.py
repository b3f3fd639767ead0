"""Dagster wiring: one folder per pipeline stage. These modules configure, run and report; the logic is in core/."""

"""Pure pipeline logic. Nothing in this package imports Dagster; the defs/ package wires it into assets."""

"""Charts for reports, as PNG bytes (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import io

import polars as pl


def candidate_chart(summary: pl.DataFrame) -> bytes:
    """Per candidate: exact match (and judged-correct share, when judged) and output tokens per second.

    `summary`: one row per candidate, as `metrics.aggregate(results, ["candidate"])` gives.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    names = summary["candidate"].to_list()
    positions = list(range(len(names)))
    figure = Figure(figsize=(9, 0.5 * len(names) + 1.6), layout="constrained")
    quality, speed = figure.subplots(1, 2, sharey=True)
    exact = [100 * (v or 0) for v in summary["exact"].to_list()]
    if "judge_correct" in summary.columns:
        judged = [100 * (v or 0) for v in summary["judge_correct"].to_list()]
        quality.barh(
            [p + 0.2 for p in positions], judged, height=0.4, label="judged correct", color="#9ecae1"
        )
        quality.barh([p - 0.2 for p in positions], exact, height=0.4, label="exact match", color="#3182bd")
        quality.legend(loc="lower right", fontsize=8)
    else:
        quality.barh(positions, exact, height=0.6, color="#3182bd")
    quality.set_xlim(0, 100)
    quality.set_xlabel("% of test examples")
    quality.set_title("exact match")
    quality.set_yticks(positions, names)
    quality.invert_yaxis()
    rates = [v if v is not None else 0.0 for v in summary["tokens_per_s"].to_list()]
    speed.barh(positions, rates, height=0.6, color="#e6550d")
    for position, value in zip(positions, summary["tokens_per_s"].to_list(), strict=True):
        speed.text(
            value or 0, position, " n/a" if value is None else f" {value:.1f}", va="center", fontsize=8
        )
    speed.set_xlabel("output tokens / s")
    speed.set_title("speed (models and endpoints)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def loss_chart(losses: list[tuple[int, float]], title: str = "training loss") -> bytes:
    """The training loss by optimizer step (metrics.json's `loss_curve`), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if not losses:
        raise ValueError("no loss values to plot (metrics.json has an empty `loss_curve`)")
    figure = Figure(figsize=(7, 3.2), layout="constrained")
    axes = figure.subplots()
    steps, values = zip(*losses, strict=True)
    axes.plot(steps, values, marker=".", color="#3182bd")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (answer tokens)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()

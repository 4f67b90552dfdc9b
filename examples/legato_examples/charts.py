"""Charts for reports: drawn with matplotlib, saved as PNG files in the step's artifacts
directory (``$LEGATO_ARTIFACTS_DIR``), where the agent picks them up and stores them as
artifacts of the step (``legato output RUN STEP --save DIR`` downloads them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd


def bar_chart(
    data: pd.DataFrame, x: str, y: str, title: str = "", file: str = "chart.png"
) -> dict[str, Any]:
    """A bar chart of column ``y`` by column ``x``; returns what it drew."""
    import matplotlib

    matplotlib.use("Agg")  # no display on an agent
    import matplotlib.pyplot as plt

    missing = [column for column in (x, y) if column not in data.columns]
    if missing:
        raise ValueError(f"bar_chart: no column {missing[0]!r} (columns: {list(data.columns)})")
    target = Path(os.environ.get("LEGATO_ARTIFACTS_DIR", ".")) / file
    target.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    axes.bar(data[x].astype(str), data[y].astype(float), color="#3b6ea8")
    axes.set_title(title or f"{y} by {x}")
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    figure.tight_layout()
    figure.savefig(target, format="png")
    plt.close(figure)
    print(f"drew {len(data)} bars into {target.name}")
    return {"chart": target.name, "bars": len(data)}

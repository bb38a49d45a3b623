"""Metrics: appended to ``metrics.jsonl`` (one JSON object per line) and drawn as a PNG."""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..media import atomic_write

NOT_PLOTTED = {"step", "epoch", "seconds", "samples_per_second"}


class MetricsLog:
    """The run's ``metrics.jsonl``. Resuming at step ``s`` drops records after ``s``.

    Those records came from steps the killed run did after its last
    checkpoint; the resumed run will write them again.
    """

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        if resume_step is None:
            atomic_write(path, b"")
        else:
            kept = [r for r in read_metrics(path) if r.get("step", 0) <= resume_step]
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete record; a line cut short by a kill is ignored."""
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return records
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def series(records: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """``{metric: (steps, values)}`` for every numeric metric worth plotting."""
    out: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for record in records:
        step = record.get("step")
        for key, value in record.items():
            if key in NOT_PLOTTED or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if math.isfinite(value):
                out[key][0].append(step)
                out[key][1].append(value)
    return dict(out)


def _panels(names: list[str]) -> list[list[str]]:
    """Training metric k and its held-out ``eval/k`` share a panel."""
    panels: dict[str, list[str]] = {}
    for name in names:
        base = name.removeprefix("eval/")
        panels.setdefault(base, []).append(name)
    return list(panels.values())


def plot_metrics(jsonl: Path, png: Path, title: str = "") -> Path | None:
    """Draws every metric against the step (one panel each) into ``png``; None if no data."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    data = series(read_metrics(jsonl))
    if not data:
        return None
    panels = _panels(sorted(data))
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax, names in zip(axes.flat, panels, strict=False):
        for name in names:
            steps, values = data[name]
            held_out = name.startswith("eval/")
            ax.plot(steps, values, marker="o" if held_out else None, markersize=3, label=name)
        values = [v for n in names for v in data[n][1]]
        if min(values) > 0 and max(values) / min(values) > 30:
            ax.set_yscale("log")
        ax.set_title(names[0].removeprefix("eval/"), fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return atomic_write(png, buffer.getvalue())

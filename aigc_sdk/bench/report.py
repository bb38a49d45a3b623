"""What ``aigc bench`` shows of its rows (``timing``): a table per op on the
console, ``bench.json`` and a bar chart of the speed-ups."""

from __future__ import annotations

import io
import json
from pathlib import Path

from ..media import atomic_write


def render(rows: list[dict], peaks: dict[str, float], console) -> None:
    """One rich table per op: times, ratios against each peer, rate and share of peak."""
    from rich.table import Table

    console.print(
        f"machine at the start: read bandwidth {peaks['read_bandwidth'] / 1e9:.1f} GB/s, matmul "
        f"{peaks['matmul_float32'] / 1e9:.0f} GFLOP/s fp32, "
        f"{peaks['matmul_bfloat16'] / 1e9:.0f} GFLOP/s bf16"
    )
    for op in dict.fromkeys(r["op"] for r in rows):
        op_rows = [r for r in rows if r["op"] == op]
        peers = list(op_rows[0]["speedup"])
        table = Table(
            title=f"{op} (ratio = peer time / aigc time; > 1 means aigc is faster)",
            min_width=min(console.width, 140),
        )
        for column in [
            "case",
            "aigc ms",
            *(f"{p} ms" for p in peers),
            *(f"x vs {p}" for p in peers),
            "aigc rate",
            "peak",
            "of peak",
        ]:
            table.add_column(column, justify="left" if column == "case" else "right")
        for r in op_rows:
            table.add_row(
                r["case"],
                f"{r['ms']['aigc']:.3f}",
                *(f"{r['ms'][p]:.3f}" for p in peers),
                *(f"{r['speedup'][p]:.2f}" for p in peers),
                f"{r['rate']:.1f} {r['unit']}",
                f"{r['peak'] / 1e9:.1f} {r['unit']}",
                f"{r['fraction_of_peak']:.0%}",
            )
        console.print(table)


def write_json(path: Path, peaks: dict[str, float], rows: list[dict], threads: int) -> Path:
    """``{"peaks": ..., "threads": torch's intra-op threads, "rows": [...]}``."""
    report = {"peaks": peaks, "threads": threads, "rows": rows}
    return atomic_write(path, json.dumps(report, indent=1).encode())


def plot(rows: list[dict], path: Path) -> Path:
    """Horizontal bars of each case's speed-up against each peer, one panel per op."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(dict.fromkeys(r["op"] for r in rows))
    fig, axes = plt.subplots(len(ops), 1, figsize=(10, 3 + 0.45 * len(rows)), squeeze=False)
    for ax, op in zip(axes[:, 0], ops, strict=True):
        op_rows = [r for r in rows if r["op"] == op]
        peers = list(op_rows[0]["speedup"])
        height = 0.8 / max(len(peers), 1)
        for i, peer in enumerate(peers):
            ax.barh(
                [j + i * height for j in range(len(op_rows))],
                [r["speedup"][peer] for r in op_rows],
                height=height,
                label=f"vs {peer}",
            )
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(
            [j + 0.4 - height / 2 for j in range(len(op_rows))],
            [r["case"] for r in op_rows],
            fontsize=7,
        )
        ax.set_xlabel("speed-up of the fused op (peer time / aigc time)")
        ax.set_title(op)
        ax.legend(fontsize=7)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, png.getvalue())

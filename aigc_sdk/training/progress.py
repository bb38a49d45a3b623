"""What a person watching the run sees on stderr.

On a terminal: a tqdm bar with the latest metrics. Redirected to a file or a
pipe: no bar (no carriage-return noise in CI logs), only the start line,
evaluation results and the summary; every metric is in metrics.jsonl.
Quiet: nothing but errors.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def format_metrics(metrics: dict[str, Any], limit: int = 6) -> str:
    parts = []
    for key, value in list(metrics.items())[:limit]:
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


class Progress:
    def __init__(
        self, total: int, initial: int, *, enabled: bool, desc: str, stream: TextIO | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.total = total
        self.bar = None
        self._start, self._start_step = time.perf_counter(), initial
        if enabled and _is_tty(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                file=self.stream,
                dynamic_ncols=True,
                unit="step",
                smoothing=0.1,
            )

    def step(self, step: int, logged: dict[str, Any] | None) -> None:
        """Called after each step; ``logged`` is set on the steps that were logged."""
        if self.bar is not None:
            if logged:
                self.bar.set_postfix_str(format_metrics(logged), refresh=False)
            self.bar.update(step - self.bar.n)

    def rate(self, step: int) -> float:
        """Steps per second since this process started training."""
        return (step - self._start_step) / max(1e-9, time.perf_counter() - self._start)

    def write(self, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

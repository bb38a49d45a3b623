"""Text as the OpenAI API returns it: without the stop string that ended it."""

from __future__ import annotations


class StopTrimmer:
    """Streams one sequence's text, leaving out the stop string that ends it.

    The SDK keeps a stop string at the end of the text; OpenAI's API leaves it
    out. Text that could be the start of a stop string is held back until the
    next piece shows whether it is one.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""

    def push(self, piece: str) -> str:
        """The part of the text so far that is certainly not a stop string."""
        if not self.stops:
            return piece
        self.pending += piece
        cut = len(self.pending) - self._held()
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def finish(self, reason: str | None) -> str:
        """The rest of the text, without the stop string when one ended it."""
        rest, self.pending = self.pending, ""
        if reason == "stop":
            for stop in sorted(self.stops, key=len, reverse=True):
                if rest.endswith(stop):
                    return rest[: -len(stop)]
        return rest

    def _held(self) -> int:
        """The length of the longest end of ``pending`` that begins a stop string."""
        text = self.pending
        for size in range(min(len(text), max(len(s) for s in self.stops)), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self.stops):
                return size
        return 0


def strip_stop(text: str, stops: tuple[str, ...], reason: str | None) -> str:
    """``text`` without the stop string that ended it."""
    trimmer = StopTrimmer(stops)
    return trimmer.push(text) + trimmer.finish(reason)

"""The ``audio`` generator's request: importable without torch, so the SDK checks
a request (and ``aigc generate audio --help`` lists its options) before any
model code or weights load.
"""

from __future__ import annotations

from dataclasses import dataclass

from aigc_sdk import AudioRequest, RequestError, request_field


@dataclass(frozen=True, kw_only=True)
class WaveNetRequest(AudioRequest):
    """``label``: a label name (for the default weights a note such as 'C4' or 'A#3') or
    its index; None draws one per clip, as often as the training data had it.

    Sampling defaults to min-p 0.1 (tokens under a tenth of the likeliest
    one's probability are never drawn): cutting the unlikely tail removes the
    clicks and hiss a small WaveNet's rare bad draws add, while harder cuts (a
    lower temperature as well) let notes collapse into silence
    (docs/performance.md has the measures).
    ``--min-p 0`` samples the model's own distribution.
    """

    min_p: float = request_field(
        0.1, "drop samples under this fraction of the likeliest one's probability (0: off)",
        ge=0, le=1,
    )  # fmt: skip
    label: str | int | None = request_field(
        None, "a label name (a note such as C4 or A#3) or its index (default: drawn per clip)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.repetition_penalty != 1:
            raise RequestError(
                "repetition_penalty is not supported by audio: samples of a waveform repeat "
                "by nature; leave it at 1"
            )
        if self.stop:
            raise RequestError("stop is not supported by audio (it applies to text)")

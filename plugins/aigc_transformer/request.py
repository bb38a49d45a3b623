"""The ``transformer`` generator's request: importable without torch, so the SDK
checks a request (and ``aigc generate transformer --help`` lists its options)
before any model code or weights load.
"""

from __future__ import annotations

from dataclasses import dataclass

from aigc_sdk import TextRequest, request_field


@dataclass(frozen=True, kw_only=True)
class TransformerRequest(TextRequest):
    """``TextRequest`` plus ``token_healing``: the prompt's last token is taken back
    and the first new token must start with its bytes, so ``"def "`` goes on as
    ``" parse"`` instead of after a stray space (see ``aigc_transformer.generator``).
    """

    token_healing: bool = request_field(
        True, "take back the prompt's last token so the first new one can extend it"
    )

"""The ``chat`` generator's request: importable without torch, so the SDK checks a
request before any weights load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from aigc_sdk import RequestError, TextRequest, request_field

from .chat_template import check_messages


@dataclass(frozen=True, kw_only=True)
class ChatRequest(TextRequest):
    """``TextRequest`` plus a conversation.

    ``messages``: a list of ``{"role": "system" | "user" | "assistant" | "tool",
    "content": str}``; when given, ``prompt`` must be empty. ``system``: a system
    prompt put before the conversation. ``raw``: tokenize ``prompt`` as it is,
    without the chat template (plain completion).
    """

    # A conversation is limited like a prompt: by its characters, all messages together.
    limits: ClassVar[Mapping[str, float | None]] = {
        **TextRequest.limits,
        "messages": TextRequest.limits["prompt"],
        "system": TextRequest.limits["prompt"],
    }

    messages: tuple[dict[str, Any], ...] | None = request_field(
        None, "the conversation: a list of {role, content} (Python and HTTP only)"
    )
    system: str | None = request_field(None, "a system prompt before the conversation")
    raw: bool = request_field(False, "send the prompt as plain text, without the chat template")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.messages is not None:
            object.__setattr__(self, "messages", tuple(check_messages(self.messages)))
            if self.prompt:
                raise RequestError("give either messages or prompt, not both")
        if self.system is not None and not isinstance(self.system, str):
            raise RequestError(f"system must be a string, got {self.system!r}")
        if not isinstance(self.raw, bool):
            raise RequestError(f"raw must be true or false, got {self.raw!r}")
        if self.raw and (self.messages is not None or self.system is not None):
            raise RequestError("raw=True takes a prompt, not messages or a system prompt")

    def limited_values(self, name: str) -> list[Any]:
        if name == "messages":
            return ["".join(m["content"] for m in self.messages or ())]
        return super().limited_values(name)

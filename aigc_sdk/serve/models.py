"""The OpenAI request bodies the server accepts, as pydantic models.

Built per app by ``openai_models(limits)`` so that the OpenAPI schema shows the
server's own limits (``maximum`` of ``n`` and ``max_tokens``). Fields OpenAI
defines and this server cannot honour are accepted only at their neutral value;
other unknown fields are ignored, as vLLM and llama.cpp's server do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SEED_MAX = 2**63 - 1


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class Unsupported(BaseModel):
    """OpenAI fields this server accepts only at their neutral value."""

    model_config = ConfigDict(extra="ignore")
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: Any = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    suffix: str | None = None

    def unsupported(self) -> str | None:
        """The first field set to what this server cannot do, or None."""
        if self.presence_penalty:
            return "presence_penalty"
        if self.frequency_penalty:
            return "frequency_penalty"
        if self.logprobs not in (None, False, 0):
            return "logprobs"
        if self.top_logprobs:
            return "top_logprobs"
        if self.logit_bias:
            return "logit_bias"
        if self.tools:
            return "tools"
        if self.functions:
            return "functions"
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            return "response_format"
        if self.suffix:
            return "suffix"
        return None


@dataclass(frozen=True)
class OpenAIModels:
    chat: type[BaseModel]
    completion: type[BaseModel]
    image: type[BaseModel]


def openai_models(
    max_n: int,
    max_tokens: int,
    max_images: int,
    text_models: list[str] = (),
    image_models: list[str] = (),
) -> OpenAIModels:
    """Request models whose bounds are these limits; ``model`` lists the served names
    in the schema (any string is accepted: an unknown one is a 404, as OpenAI answers)."""

    def named(names) -> dict:
        return {"json_schema_extra": {"enum": list(names)}} if names else {}

    Tokens = Annotated[int, Field(ge=1, le=max_tokens)]
    N = Annotated[int, Field(ge=1, le=max_n)]
    Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
    Stop = str | Annotated[list[str], Field(max_length=16)]

    class Sampling(Unsupported):
        model: str = Field(min_length=1, **named(text_models))
        max_tokens: Tokens | None = None
        temperature: float | None = Field(None, ge=0, le=2)
        top_p: float | None = Field(None, ge=0, le=1)
        n: N | None = None
        stop: Stop | None = None
        seed: Seed | None = None
        stream: bool = False
        stream_options: StreamOptions | None = None
        user: str | None = None
        # Sampling controls OpenAI lacks, with vLLM's names.
        top_k: int | None = Field(None, ge=0)
        min_p: float | None = Field(None, ge=0, le=1)
        repetition_penalty: float | None = Field(None, gt=0, le=10)

    class ChatCompletionRequest(Sampling):
        """POST /v1/chat/completions."""

        messages: list[ChatMessage] = Field(min_length=1)
        max_completion_tokens: Tokens | None = None

    class CompletionRequest(Sampling):
        """POST /v1/completions: plain continuation of ``prompt`` (no chat template)."""

        prompt: str | Annotated[list[str], Field(min_length=1)]
        echo: bool = False
        best_of: int | None = Field(None, ge=1)

    class ImageGenerationRequest(BaseModel):
        """POST /v1/images/generations."""

        model_config = ConfigDict(extra="ignore")
        model: str | None = Field(None, min_length=1, **named(image_models))
        prompt: str = ""
        n: Annotated[int, Field(ge=1, le=max_images)] = 1
        response_format: Literal["b64_json", "url"] = "b64_json"
        size: str | None = None
        seed: Seed | None = None
        user: str | None = None

    return OpenAIModels(ChatCompletionRequest, CompletionRequest, ImageGenerationRequest)

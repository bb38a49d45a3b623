"""What shape a language model is, read from a GGUF file's metadata or a Hugging Face
``config.json``.

Two families cover the architectures this plugin runs:

* ``llama`` (also ``mistral`` and ``qwen2``): RMSNorm, rotary positions (rotate-half,
  with optional Llama-3 frequency scaling), grouped-query attention, a SwiGLU MLP;
  ``qwen2`` adds biases to the q/k/v projections.
* ``gpt2``: LayerNorm with biases, learned positions, multi-head attention with one
  fused qkv projection, a GELU (tanh approximation) MLP, biases everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aigc_sdk import CheckpointError

LLAMA_FAMILY = ("llama", "mistral", "qwen2")
ARCHITECTURES = (*LLAMA_FAMILY, "gpt2")


@dataclass(frozen=True)
class LMConfig:
    arch: str
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_dim: int
    context_length: int
    norm_eps: float
    rope_theta: float = 10000.0
    # Llama-3 style frequency scaling: {factor, low_freq_factor, high_freq_factor,
    # original_max_position_embeddings}, or None.
    rope_scaling: tuple[tuple[str, float], ...] | None = None
    qkv_bias: bool = False
    tied_embeddings: bool = True

    @property
    def is_gpt2(self) -> bool:
        return self.arch == "gpt2"

    def check(self, source: str) -> LMConfig:
        """Raises a one-line CheckpointError naming ``source`` if the shape is inconsistent."""
        problems = []
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim"):
            if getattr(self, name) < 1:
                problems.append(f"{name} = {getattr(self, name)} must be >= 1")
        if not problems and self.n_heads % self.n_kv_heads:
            problems.append(
                f"{self.n_heads} attention heads are not a multiple of {self.n_kv_heads} KV heads"
            )
        if not problems and self.head_dim % 8:
            problems.append(f"head size {self.head_dim} is not a multiple of 8")
        if problems:
            raise CheckpointError(f"{source}: unsupported model shape: {'; '.join(problems)}")
        return self

    def inv_freq(self):
        """Rotary inverse frequencies [head_dim // 2] (float64), Llama-3 scaling applied."""
        import torch

        inv = 1.0 / self.rope_theta ** (
            torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim
        )
        if not self.rope_scaling:
            return inv
        s = dict(self.rope_scaling)
        factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        original = s["original_max_position_embeddings"]
        low_wavelen, high_wavelen = original / low, original / high
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (original / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, smoothed, scaled)


def _llama3_scaling(scaling: dict[str, Any] | None, source: str):
    if not scaling:
        return None
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default"):
        return None
    if kind != "llama3":
        raise CheckpointError(f"{source}: unsupported rope scaling {kind!r} (supported: llama3)")
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [k for k in keys if k not in scaling]
    if missing:
        raise CheckpointError(f"{source}: llama3 rope scaling lacks {', '.join(missing)}")
    return tuple((k, float(scaling[k])) for k in keys)


def from_gguf(metadata: dict[str, Any], source: str, tensor_names: set[str]) -> LMConfig:
    """The config of a GGUF file from its key/value metadata."""
    arch = metadata.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(
            f"{source}: unsupported architecture {arch!r} (supported: {', '.join(ARCHITECTURES)})"
        )

    def get(key: str, default: Any = None) -> Any:
        value = metadata.get(f"{arch}.{key}", default)
        if value is None:
            raise CheckpointError(f"{source}: metadata key {arch}.{key} is missing")
        return value

    dim, n_heads = int(get("embedding_length")), int(get("attention.head_count"))
    vocab = metadata.get(f"{arch}.vocab_size") or len(metadata.get("tokenizer.ggml.tokens", []))
    if arch == "gpt2":
        return LMConfig(
            arch=arch,
            vocab_size=int(vocab),
            dim=dim,
            n_layers=int(get("block_count")),
            n_heads=n_heads,
            n_kv_heads=n_heads,
            head_dim=dim // n_heads,
            hidden_dim=int(get("feed_forward_length")),
            context_length=int(get("context_length")),
            norm_eps=float(get("attention.layer_norm_epsilon")),
            tied_embeddings="output.weight" not in tensor_names,
        ).check(source)
    scaling = None
    if metadata.get(f"{arch}.rope.scaling.type", "none") not in ("none", "linear"):
        raise CheckpointError(
            f"{source}: unsupported rope scaling {metadata[f'{arch}.rope.scaling.type']!r}"
        )
    return LMConfig(
        arch=arch,
        vocab_size=int(vocab),
        dim=dim,
        n_layers=int(get("block_count")),
        n_heads=n_heads,
        n_kv_heads=int(get("attention.head_count_kv", n_heads)),
        head_dim=int(get("attention.key_length", dim // n_heads)),
        hidden_dim=int(get("feed_forward_length")),
        context_length=int(get("context_length")),
        norm_eps=float(get("attention.layer_norm_rms_epsilon")),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        rope_scaling=scaling,
        qkv_bias="blk.0.attn_q.bias" in tensor_names,
        tied_embeddings="output.weight" not in tensor_names,
    ).check(source)


HF_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "GPT2LMHeadModel": "gpt2",
}


def from_hf(config: dict[str, Any], source: str) -> LMConfig:
    """The config of a Hugging Face model folder from its ``config.json``."""
    names = config.get("architectures") or []
    arch = next((HF_ARCHITECTURES[n] for n in names if n in HF_ARCHITECTURES), None)
    if arch is None:
        raise CheckpointError(
            f"{source}: unsupported architecture {', '.join(names) or config.get('model_type')!r} "
            f"(supported: {', '.join(HF_ARCHITECTURES)})"
        )
    try:
        if arch == "gpt2":
            dim, heads = int(config["n_embd"]), int(config["n_head"])
            if config.get("activation_function", "gelu_new") not in (
                "gelu_new",
                "gelu_pytorch_tanh",
            ):
                raise CheckpointError(
                    f"{source}: unsupported activation {config['activation_function']!r}"
                )
            return LMConfig(
                arch=arch,
                vocab_size=int(config["vocab_size"]),
                dim=dim,
                n_layers=int(config["n_layer"]),
                n_heads=heads,
                n_kv_heads=heads,
                head_dim=dim // heads,
                hidden_dim=int(config.get("n_inner") or 4 * dim),
                context_length=int(config["n_positions"]),
                norm_eps=float(config.get("layer_norm_epsilon", 1e-5)),
                tied_embeddings=bool(config.get("tie_word_embeddings", True)),
            ).check(source)
        dim, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        if config.get("hidden_act", "silu") != "silu":
            raise CheckpointError(f"{source}: unsupported activation {config['hidden_act']!r}")
        if arch == "qwen2" and config.get("use_sliding_window"):
            raise CheckpointError(f"{source}: sliding-window attention is not supported")
        if (
            arch == "mistral"
            and config.get("sliding_window") not in (None, 0)
            and int(config["sliding_window"]) < int(config["max_position_embeddings"])
        ):
            raise CheckpointError(f"{source}: sliding-window attention is not supported")
        rope = config.get("rope_parameters") or {}
        return LMConfig(
            arch=arch,
            vocab_size=int(config["vocab_size"]),
            dim=dim,
            n_layers=int(config["num_hidden_layers"]),
            n_heads=heads,
            n_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or dim // heads),
            hidden_dim=int(config["intermediate_size"]),
            context_length=int(config["max_position_embeddings"]),
            norm_eps=float(config["rms_norm_eps"]),
            rope_theta=float(config.get("rope_theta") or rope.get("rope_theta") or 10000.0),
            rope_scaling=_llama3_scaling(config.get("rope_scaling") or rope, source),
            qkv_bias=arch == "qwen2" or bool(config.get("attention_bias", False)),
            tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        ).check(source)
    except KeyError as exc:
        raise CheckpointError(f"{source}: config.json lacks {exc.args[0]!r}") from None

"""A decoder-only Transformer language model, nanoGPT-sized and Llama-shaped.

Pre-norm (RMSNorm), rotary position embeddings, grouped-query attention,
a SwiGLU MLP and an output projection tied to the token embedding. One
module serves training (``forward`` on whole blocks, causal SDPA) and
generation (``prefill`` writes a ``KVCache``; ``decode.py`` runs the steps).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 4096
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2  # grouped-query attention: n_heads // n_kv_heads queries per KV head
    hidden_dim: int = 704  # SwiGLU width (~ 8/3 * dim, rounded to a multiple of 64)
    max_seq_len: int = 512
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
            )
        if (self.dim // self.n_heads) % 2:
            raise ValueError("the head size dim // n_heads must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_tables(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [max_len, head_dim // 2] of the rotation angles pos * theta^(-2i/d)."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates pairs (first half, second half) of the head dimension: x [..., T, D]."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        kv_dim = cfg.n_kv_heads * cfg.head_dim
        # One matmul for q, k and v: fewer kernel launches per decode step.
        self.qkv = nn.Linear(cfg.dim, cfg.dim + 2 * kv_dim, bias=False)
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """q [B, H, T, D] and k, v [B, Hkv, T, D] with rotary positions applied."""
        B, T, _ = x.shape
        kv_dim = self.n_kv_heads * self.head_dim
        q, k, v = self.qkv(x).split([self.n_heads * self.head_dim, kv_dim, kv_dim], dim=-1)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Causal self-attention over a block; ``cache`` (k, v [B, Hkv, Tmax, D]) receives k, v."""
        B, T, _ = x.shape
        q, k, v = self.project(x, cos, sin)
        if cache is not None:
            cache[0][:, :, :T].copy_(k)
            cache[1][:, :, :T].copy_(v)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True
        )
        return self.out(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(cfg.dim, 2 * cfg.hidden_dim, bias=False)
        self.down = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask=None, cache=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        # Derived from the config, so not saved with the weights.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * layers)."""
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith(("attn.out.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, std=0.02)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The output projection, tied to the embedding."""
        return F.linear(self.norm(h), self.embed.weight)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits [B, T, V] of a block of tokens [B, T]; with ``targets``, (logits, mean loss)."""
        length = tokens.shape[1]
        if length > self.cfg.max_seq_len:
            raise ValueError(
                f"{length} tokens exceed the model's max_seq_len {self.cfg.max_seq_len}"
            )
        cos, sin = self.rope_cos[:length], self.rope_sin[:length]
        h = self.embed(tokens)
        for block in self.blocks:
            h = block(h, cos, sin)
        logits = self.logits(h)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
        return logits, loss

    def prefill(self, tokens: torch.Tensor, lengths: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Runs right-padded prompts [B, T] (true ``lengths`` [B]) through the model, filling
        ``cache`` positions [0, T); returns each prompt's last-token logits [B, V].

        Padding sits after each prompt, so the causal mask alone keeps real tokens from
        seeing it; the cache's per-sequence lengths make the decode steps ignore it.
        """
        B, T = tokens.shape
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        h = self.embed(tokens)
        for block, layer_cache in zip(self.blocks, cache.layers(), strict=True):
            h = block(h, cos, sin, None, layer_cache)
        last = h[torch.arange(B, device=h.device), lengths - 1]
        cache.lengths.copy_(lengths)
        return self.logits(last)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class KVCache:
    """Preallocated keys and values of every layer.

    Stored as [layers, B, max_len, Hkv, D] so that one token's keys (all KV
    heads) are one contiguous row: a decode step writes each sequence's new
    row with a single ``index_copy_``. ``k`` and ``v`` are [layers, B, Hkv,
    max_len, D] views of that storage, the layout attention reads.
    ``lengths[b]`` is how many positions of sequence ``b`` are valid.
    """

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device, dtype) -> None:
        shape = (cfg.n_layers, batch, max_len, cfg.n_kv_heads, cfg.head_dim)
        self.k_rows = torch.zeros(shape, device=device, dtype=dtype)
        self.v_rows = torch.zeros(shape, device=device, dtype=dtype)
        self.k, self.v = self.k_rows.transpose(2, 3), self.v_rows.transpose(2, 3)
        self.lengths = torch.zeros(batch, dtype=torch.int64, device=device)
        self.max_len = max_len

    def layers(self):
        return [(self.k[i], self.v[i]) for i in range(self.k.shape[0])]

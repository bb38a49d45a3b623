"""Token generation with a preallocated KV cache.

The prompt goes through the model once (``Transformer.prefill``: causal
``scaled_dot_product_attention``, keys and values written to the cache); each
further token costs one ``DecodeSession.step``: one query per sequence, the
new key and value written in place at that sequence's own position, attention
over the cache, and a draw from the logits.

Two interchangeable backends do the attention and the draw:

* ``"fused"`` (default): ``aigc_sdk.ops.decode_attention`` reads only the
  valid part of each sequence's cache, all query heads of a KV head at once;
  ``aigc_sdk.ops.sample`` applies the repetition penalty, temperature, top-k,
  top-p and min-p and draws, without sorting, from Philox numbers keyed by
  (seed, step, row). Both fall back to their PyTorch references (same results)
  when the compiled extension is missing.
* ``"plain"``: what one writes with stock PyTorch: SDPA over the cache with a
  length mask, and sort/cumsum/softmax/``torch.multinomial`` sampling with a
  seeded ``torch.Generator``. The benchmark's baseline; same model, same law
  of the draw, different random numbers.

On a CPU a small model's step is dominated by per-op overhead, so the step
allocates nothing it can reuse: the cache, the rotary tables, the batch index
and the token history live as long as the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aigc_sdk import ops

from .model import KVCache, Transformer

BACKENDS = ("fused", "plain")


@dataclass(frozen=True)
class Sampling:
    """How the next token is drawn (the SDK's shared sampling controls)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int = 0


class DecodeSession:
    """The KV cache and buffers of one batch of sequences, reused for every step."""

    def __init__(self, model: Transformer, batch: int, max_len: int, backend: str = "fused"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        cfg = model.cfg
        if max_len > cfg.max_seq_len:
            raise ValueError(f"max_len {max_len} exceeds the model's max_seq_len {cfg.max_seq_len}")
        weight = model.embed.weight
        self.model, self.cfg, self.backend = model, cfg, backend
        self.batch, self.max_len = batch, max_len
        self.cache = KVCache(cfg, batch, max_len, weight.device, weight.dtype)
        self.rows = torch.arange(batch, device=weight.device)
        self.positions = torch.arange(max_len, device=weight.device)
        # Every token each sequence has seen (for the repetition penalty); -1 is padding.
        self.history = torch.full((batch, max_len), -1, dtype=torch.int64, device=weight.device)
        self.longest = 0  # max over sequences of the cache length (known on the host: no sync)
        self.ragged = False

    # -- the model -----------------------------------------------------------

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]]) -> torch.Tensor:
        """Fills the cache with prompts of any lengths (>= 1); returns next-token logits [B, V]."""
        if len(prompts) != self.batch:
            raise ValueError(f"expected {self.batch} prompts, got {len(prompts)}")
        lengths = [len(p) for p in prompts]
        if min(lengths) < 1 or max(lengths) > self.max_len:
            raise ValueError(f"prompt lengths must be in [1, {self.max_len}], got {lengths}")
        device = self.rows.device
        padded = torch.zeros((self.batch, max(lengths)), dtype=torch.int64)
        for b, p in enumerate(prompts):
            padded[b, : len(p)] = torch.tensor(p)
        self.history.fill_(-1)
        self.history[:, : padded.shape[1]] = padded.masked_fill(
            torch.arange(padded.shape[1]) >= torch.tensor(lengths)[:, None], -1
        ).to(device)
        self.longest, self.ragged = max(lengths), len(set(lengths)) > 1
        lengths_t = torch.tensor(lengths, device=device)
        return self.model.prefill(padded.to(device), lengths_t, self.cache)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Appends ``tokens`` [B] to the sequences; returns the next-token logits [B, V]."""
        if self.longest >= self.max_len:
            raise RuntimeError(f"the KV cache is full ({self.max_len} positions)")
        cfg, model, cache = self.cfg, self.model, self.cache
        B, H, Hkv, D = self.batch, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        pos = cache.lengths  # where each sequence's new token goes
        self.history[self.rows, pos] = tokens
        cos = model.rope_cos[pos].unsqueeze(1)  # [B, 1, D/2]: broadcast over heads
        sin = model.rope_sin[pos].unsqueeze(1)
        seq_lens = pos + 1
        self.longest += 1
        x = model.embed(tokens)  # [B, dim]
        for layer, block in enumerate(model.blocks):
            attn = block.attn
            h = block.attn_norm(x)
            q, k, v = attn.qkv(h).split([H * D, Hkv * D, Hkv * D], dim=-1)
            q = _rope(q.view(B, H, D), cos, sin)
            k = _rope(k.view(B, Hkv, D), cos, sin)
            k_cache, v_cache = cache.k[layer], cache.v[layer]
            k_cache[self.rows, :, pos] = k
            v_cache[self.rows, :, pos] = v.view(B, Hkv, D)
            y = self._attention(q, k_cache, v_cache, seq_lens)
            x = x + attn.out(y.reshape(B, H * D))
            x = x + block.mlp(block.mlp_norm(x))
        cache.lengths += 1
        return model.logits(x)

    def _attention(self, q, k_cache, v_cache, seq_lens) -> torch.Tensor:
        if self.backend == "fused":
            return ops.decode_attention(q, k_cache, v_cache, seq_lens)
        # Plain PyTorch: SDPA over the filled part of the cache, masked only when ragged.
        T = self.longest
        mask = None
        if self.ragged:
            mask = (self.positions[:T] < seq_lens[:, None]).view(self.batch, 1, 1, T)
        y = F.scaled_dot_product_attention(
            q.unsqueeze(2), k_cache[:, :, :T], v_cache[:, :, :T], attn_mask=mask, enable_gqa=True
        )
        return y.squeeze(2)

    # -- the draw --------------------------------------------------------------

    def sampler(self, sampling: Sampling):
        """A function (logits [B, V], step) -> tokens [B] for this session's backend."""
        history = self.history
        if self.backend == "fused":
            penalty = sampling.repetition_penalty

            @torch.inference_mode()
            def draw(logits: torch.Tensor, step: int) -> torch.Tensor:
                return ops.sample(
                    logits,
                    temperature=sampling.temperature,
                    top_k=sampling.top_k,
                    top_p=sampling.top_p,
                    min_p=sampling.min_p,
                    seed=sampling.seed,
                    offset=step,
                    prev_tokens=history[:, : self.longest] if penalty != 1 else None,
                    repetition_penalty=penalty,
                )

            return draw
        generator = torch.Generator(device=history.device).manual_seed(sampling.seed)

        @torch.inference_mode()
        def draw_plain(logits: torch.Tensor, step: int) -> torch.Tensor:
            return sample_plain(logits, sampling, history[:, : self.longest], generator)

        return draw_plain


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def sample_plain(
    logits: torch.Tensor, s: Sampling, history: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Stock-PyTorch sampling (Hugging Face's logits processors, in one function)."""
    logits = logits.float()
    if s.repetition_penalty != 1:
        seen = history.clamp_min(0)  # padding (-1) -> token 0, then masked out below
        scores = logits.gather(1, seen)
        penalised = torch.where(
            scores > 0, scores / s.repetition_penalty, scores * s.repetition_penalty
        )
        logits = logits.scatter(1, seen, torch.where(history >= 0, penalised, scores))
    if s.temperature == 0:
        return logits.argmax(-1)
    logits = logits / s.temperature
    if 0 < s.top_k < logits.shape[-1]:
        kth = torch.topk(logits, s.top_k).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1:
        sorted_logits, order = logits.sort(descending=True)
        sorted_probs = sorted_logits.softmax(-1)
        # Keep the smallest prefix of the sorted tokens whose probability reaches top_p.
        drop_sorted = sorted_probs.cumsum(-1) - sorted_probs >= s.top_p
        drop = torch.empty_like(drop_sorted).scatter_(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    if s.min_p > 0:
        probs = probs.masked_fill(probs < s.min_p * probs.amax(-1, keepdim=True), 0.0)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def decode(
    session: DecodeSession,
    prompts: list[list[int]],
    sampling: Sampling,
    max_new_tokens: int,
) -> Iterator[torch.Tensor]:
    """Yields the next token of every sequence [B], ``max_new_tokens`` times.

    The consumer decides when sequences are finished and simply stops
    iterating when all are; tokens of finished sequences are computed and ignored.
    """
    if max_new_tokens == 0:
        return
    draw = session.sampler(sampling)
    logits = session.prefill(prompts)
    for step in range(max_new_tokens):
        tokens = draw(logits, step)
        yield tokens
        if step + 1 < max_new_tokens:
            logits = session.step(tokens)

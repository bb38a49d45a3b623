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
  (seed, step, row). Without the compiled extension both fall back to their
  PyTorch references, which give the same tokens.
* ``"plain"``: what one writes with stock PyTorch: SDPA over the cache with a
  length mask, and sort/cumsum/softmax/``torch.multinomial`` sampling with a
  seeded ``torch.Generator``. The benchmark's baseline: same model, same
  step, same law of the draw, different random numbers.

On a CPU a small model's step costs its number of PyTorch calls, not its
arithmetic, so ``DecodeWeights`` rearranges the weights once to need few:
norm gains folded into the next matrix, rotary "rotate half" folded into the
q/k projection (so RoPE is one multiply-add), residual adds fused into
``addmm``. The session preallocates everything a step reuses (cache, slot
indices, rotary tables, token history, the ops' parameter tensors).
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


def _rotate_half_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of ``R @ w`` where ``R x = (-x2, x1)`` per head: RoPE's partner vector as a matmul."""
    w = w.view(heads, 2, -1, w.shape[-1])
    return torch.cat((-w[:, 1], w[:, 0]), dim=1).reshape(-1, w.shape[-1])


class DecodeWeights:
    """A model's weights rearranged for one-token steps (made once per model, read-only).

    Per layer, one [dim, q+k+v+rot(q)+rot(k)] matrix (attention-norm gain folded
    in), the output projection, the gate/up matrix (MLP-norm gain folded in)
    and the down projection, all transposed for ``mm``/``addmm``.
    """

    def __init__(self, model: Transformer) -> None:
        cfg = model.cfg
        H, Hkv, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        gain = cfg.dim**0.5  # _rms leaves out this factor of RMSNorm
        with torch.no_grad():
            self.qkv, self.out, self.gate_up, self.down = [], [], [], []
            for block in model.blocks:
                wq, wk, wv = block.attn.qkv.weight.split([H * D, Hkv * D, Hkv * D])
                w = torch.cat([wq, wk, wv, _rotate_half_rows(wq, H), _rotate_half_rows(wk, Hkv)])
                self.qkv.append((w * block.attn_norm.weight * gain).t().contiguous())
                self.out.append(block.attn.out.weight.t().contiguous())
                self.gate_up.append(
                    (block.mlp.gate_up.weight * block.mlp_norm.weight * gain).t().contiguous()
                )
                self.down.append(block.mlp.down.weight.t().contiguous())
            self.embed = model.embed.weight.detach()
            self.head = (model.embed.weight * model.norm.weight * gain).t().contiguous()
            self.cos = torch.cat([model.rope_cos, model.rope_cos], dim=-1)  # [max_len, D]
            self.sin = torch.cat([model.rope_sin, model.rope_sin], dim=-1)
        self.sqrt_eps = torch.tensor((cfg.norm_eps * cfg.dim) ** 0.5, dtype=self.head.dtype)


def _rms(x: torch.Tensor, sqrt_eps: torch.Tensor) -> torch.Tensor:
    """RMSNorm up to a factor sqrt(dim) (folded, with its gain, into the next matrix):
    x / sqrt(sum(x^2) + dim * eps) = x / hypot(|x|, sqrt(dim * eps)), in three calls."""
    return x / torch.hypot(torch.linalg.vector_norm(x, dim=-1, keepdim=True), sqrt_eps)


class _StepBuffers:
    """Outputs a step writes in place, and fixed views into them (no slicing per step)."""

    def __init__(self, cfg, batch: int, device, dtype) -> None:
        B, H, Hkv, D = batch, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        n_qk, n_v = (H + Hkv) * D, Hkv * D

        def empty(*shape):
            return torch.empty(shape, device=device, dtype=dtype)

        self.cos, self.sin = empty(B, D), empty(B, D)
        self.cos3, self.sin3 = self.cos.unsqueeze(1), self.sin.unsqueeze(1)  # [B, 1, D]
        self.slots = torch.empty(B, dtype=torch.int64, device=device)
        self.proj = empty(B, 2 * n_qk + n_v)  # q, k, v, rot(q), rot(k)
        self.qk = self.proj[:, :n_qk].view(B, H + Hkv, D)
        self.v_new = self.proj[:, n_qk : n_qk + n_v]  # [B, Hkv * D]
        self.qk_partner = self.proj[:, n_qk + n_v :].view(B, H + Hkv, D)
        self.roped = empty(B, H + Hkv, D)
        self.q = self.roped[:, :H]  # [B, H, D]
        self.k_new = self.roped[:, H:].view(B, Hkv * D)
        self.gate_up = empty(B, 2 * cfg.hidden_dim)
        self.gate, self.up = self.gate_up[:, : cfg.hidden_dim], self.gate_up[:, cfg.hidden_dim :]


class DecodeSession:
    """The KV cache and buffers of one batch of sequences, reused for every step."""

    def __init__(
        self,
        model: Transformer,
        batch: int,
        max_len: int,
        backend: str = "fused",
        weights: DecodeWeights | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        cfg = model.cfg
        if max_len > cfg.max_seq_len:
            raise ValueError(f"max_len {max_len} exceeds the model's max_seq_len {cfg.max_seq_len}")
        device, dtype = model.embed.weight.device, model.embed.weight.dtype
        self.model, self.cfg, self.backend = model, cfg, backend
        self.weights = weights or DecodeWeights(model)
        self.batch, self.max_len = batch, max_len
        self.cache = KVCache(cfg, batch, max_len, device, dtype)
        self.lengths = self.cache.lengths
        self.buffers = _StepBuffers(cfg, batch, device, dtype)
        # Token t of sequence b is row b * max_len + t of a layer's cache viewed as
        # [B * max_len, Hkv * D], and of the flat token history.
        self.row_base = torch.arange(batch, device=device) * max_len
        kv_width = cfg.n_kv_heads * cfg.head_dim
        self.k_rows = [self.cache.k_rows[i].view(-1, kv_width) for i in range(cfg.n_layers)]
        self.v_rows = [self.cache.v_rows[i].view(-1, kv_width) for i in range(cfg.n_layers)]
        # Every token each sequence has seen (for the repetition penalty); -1 is padding.
        self.history = torch.full((batch, max_len), -1, dtype=torch.int64, device=device)
        self.longest = 0  # max over sequences of the cache length (known on the host: no sync)
        self.ragged = False
        self.positions = torch.arange(max_len, device=device)
        self.scale = cfg.head_dim**-0.5
        fused = backend == "fused"
        self._attention_kernel = fused and ops.has_kernel("decode_attention", device.type)
        self._sample_kernel = fused and ops.has_kernel("sample", device.type)

    # -- the model -----------------------------------------------------------

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]]) -> torch.Tensor:
        """Fills the cache with prompts of any lengths (>= 1); returns next-token logits [B, V]."""
        if len(prompts) != self.batch:
            raise ValueError(f"expected {self.batch} prompts, got {len(prompts)}")
        lengths = [len(p) for p in prompts]
        if min(lengths) < 1 or max(lengths) > self.max_len:
            raise ValueError(f"prompt lengths must be in [1, {self.max_len}], got {lengths}")
        device = self.lengths.device
        padded = torch.zeros((self.batch, max(lengths)), dtype=torch.int64)
        for b, p in enumerate(prompts):
            padded[b, : len(p)] = torch.tensor(p)
        lengths_t = torch.tensor(lengths)
        self.history.fill_(-1)
        self.history[:, : padded.shape[1]] = padded.masked_fill(
            torch.arange(padded.shape[1]) >= lengths_t[:, None], -1
        ).to(device)
        self.longest, self.ragged = max(lengths), len(set(lengths)) > 1
        return self.model.prefill(padded.to(device), lengths_t.to(device), self.cache)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Appends ``tokens`` [B] to the sequences; returns the next-token logits [B, V]."""
        if self.longest >= self.max_len:
            raise RuntimeError(f"the KV cache is full ({self.max_len} positions)")
        w, buf, pos = self.weights, self.buffers, self.lengths
        torch.index_select(w.cos, 0, pos, out=buf.cos)  # rotary angles at each new position
        torch.index_select(w.sin, 0, pos, out=buf.sin)
        torch.add(self.row_base, pos, out=buf.slots)
        self.history.view(-1).index_copy_(0, buf.slots, tokens)
        pos.add_(1)  # now the sequence lengths, new token included
        self.longest += 1

        x = w.embed.index_select(0, tokens)  # [B, dim], updated in place from here on
        for layer in range(self.cfg.n_layers):
            torch.mm(_rms(x, w.sqrt_eps), w.qkv[layer], out=buf.proj)
            torch.mul(buf.qk, buf.cos3, out=buf.roped)  # RoPE on q and k at once
            buf.roped.addcmul_(buf.qk_partner, buf.sin3)
            self.k_rows[layer].index_copy_(0, buf.slots, buf.k_new)
            self.v_rows[layer].index_copy_(0, buf.slots, buf.v_new)
            y = self._attention(buf.q, layer)
            x.addmm_(y.reshape(self.batch, -1), w.out[layer])
            torch.mm(_rms(x, w.sqrt_eps), w.gate_up[layer], out=buf.gate_up)
            F.silu(buf.gate, inplace=True).mul_(buf.up)  # SwiGLU
            x.addmm_(buf.gate, w.down[layer])
        return torch.mm(_rms(x, w.sqrt_eps), w.head)

    def _attention(self, q: torch.Tensor, layer: int) -> torch.Tensor:
        k_cache, v_cache = self.cache.k[layer], self.cache.v[layer]
        if self._attention_kernel:  # arguments are right by construction: skip the checks
            return torch.ops.aigc.decode_attention.default(
                q, k_cache, v_cache, self.lengths, self.scale
            )
        if self.backend == "fused":  # no kernel: the wrapper warns and uses the reference
            return ops.decode_attention(q, k_cache, v_cache, self.lengths)
        # Plain PyTorch: SDPA over the filled part of the cache, masked only when ragged.
        T = self.longest
        mask = None
        if self.ragged:
            mask = (self.positions[:T] < self.lengths[:, None]).view(self.batch, 1, 1, T)
        y = F.scaled_dot_product_attention(
            q.unsqueeze(2), k_cache[:, :, :T], v_cache[:, :, :T], attn_mask=mask, enable_gqa=True
        )
        return y.squeeze(2)

    # -- the draw --------------------------------------------------------------

    def sampler(self, sampling: Sampling):
        """A function (logits [B, V], step) -> tokens [B] for this session's backend."""
        if self.backend == "plain":
            generator = torch.Generator(device=self.history.device).manual_seed(sampling.seed)

            @torch.inference_mode()
            def draw_plain(logits: torch.Tensor, step: int) -> torch.Tensor:
                return sample_plain(logits, sampling, self.history, generator)

            return draw_plain
        penalty = sampling.repetition_penalty
        history = self.history if penalty != 1 else None
        if not self._sample_kernel:  # the wrapper: reference fallback with a warning

            @torch.inference_mode()
            def draw_reference(logits: torch.Tensor, step: int) -> torch.Tensor:
                return ops.sample(
                    logits,
                    temperature=sampling.temperature,
                    top_k=sampling.top_k,
                    top_p=sampling.top_p,
                    min_p=sampling.min_p,
                    seed=sampling.seed,
                    offset=step,
                    prev_tokens=history,
                    repetition_penalty=penalty,
                )

            return draw_reference
        # The kernel, with its per-row parameter tensors made once (it checks their values).
        device = self.history.device

        def full(value, dtype):
            return torch.full((self.batch,), value, dtype=dtype, device=device)

        seed = (sampling.seed + 2**63) % 2**64 - 2**63  # the same 64 bits as a signed int64
        params = [
            full(sampling.temperature, torch.float32),
            full(sampling.top_k, torch.int64),
            full(sampling.top_p, torch.float32),
            full(sampling.min_p, torch.float32),
            full(seed, torch.int64),
        ]
        offset = full(0, torch.int64)
        penalty_t = full(penalty, torch.float32) if history is not None else None
        op = torch.ops.aigc.sample.default

        @torch.inference_mode()
        def draw(logits: torch.Tensor, step: int) -> torch.Tensor:
            offset.fill_(step)
            return op(logits, *params, offset, history, penalty_t)

        return draw


def sample_plain(
    logits: torch.Tensor, s: Sampling, history: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Stock-PyTorch sampling (Hugging Face's logits processors, in one function).

    ``history`` [B, n] holds the token ids seen so far; -1 is padding.
    """
    logits = logits.float()
    if s.repetition_penalty != 1:
        B, V = logits.shape
        # Padding goes to an extra column that is dropped: duplicate writes all say True.
        ids = history.masked_fill(history < 0, V)
        seen = torch.zeros((B, V + 1), dtype=torch.bool, device=logits.device)
        seen = seen.scatter_(1, ids, True)[:, :V]
        penalised = torch.where(
            logits > 0, logits / s.repetition_penalty, logits * s.repetition_penalty
        )
        logits = torch.where(seen, penalised, logits)
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
    first_allowed: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """Yields the next token of every sequence [B], ``max_new_tokens`` times.

    ``first_allowed`` ([B, V] bool) restricts the first token of each sequence
    (token healing). The consumer decides when sequences are finished and
    simply stops iterating when all are; tokens of finished sequences are
    computed and ignored.
    """
    if max_new_tokens == 0:
        return
    draw = session.sampler(sampling)
    logits = session.prefill(prompts)
    if first_allowed is not None:
        logits = logits.masked_fill(~first_allowed.to(logits.device), float("-inf"))
    for step in range(max_new_tokens):
        tokens = draw(logits, step)
        yield tokens
        if step + 1 < max_new_tokens:
            logits = session.step(tokens)

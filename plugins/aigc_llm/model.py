"""The forward pass of a Llama-family or GPT-2 model, over a KV cache of sequence slots.

A ``KVCache`` holds ``slots`` sequences of up to ``max_len`` positions each, with
their own lengths. ``prefill`` runs whole prompts into chosen slots (causal SDPA)
and ``step`` appends one token to every active slot (``aigc_sdk.ops.decode_attention``
over each slot's own length), so sequences of any lengths decode together and a
slot can be refilled while the others go on.

The numerics follow Hugging Face transformers' implementations of the same
architectures: the tests compare logits with them on the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aigc_sdk import ops

from .config import LMConfig


class KVCache:
    """Keys and values of every layer, [layers, slots, Hkv, max_len, D] storage.

    Each KV head of each slot keeps its positions in one contiguous run, so that
    attention reads each (slot, head) as a single sequential stream, the access the
    hardware prefetchers follow; ``k``/``v`` are that storage, and ``k_rows``/``v_rows``
    its [layers, slots, max_len, Hkv, D] views, indexed by position.
    """

    def __init__(self, cfg: LMConfig, slots: int, max_len: int, dtype: torch.dtype) -> None:
        shape = (cfg.n_layers, slots, cfg.n_kv_heads, max_len, cfg.head_dim)
        self._views(
            torch.zeros(shape, dtype=dtype),
            torch.zeros(shape, dtype=dtype),
            torch.zeros(slots, dtype=torch.int64),
        )

    def _views(self, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor) -> None:
        self.k, self.v, self.lengths = k, v, lengths
        self.k_rows, self.v_rows = k.transpose(2, 3), v.transpose(2, 3)
        self.slots, self.max_len = k.shape[1], k.shape[3]

    def prefix(self, slots: int) -> KVCache:
        """The first ``slots`` slots, sharing this cache's storage and lengths: a decode
        step over them costs ``slots`` rows, however many the whole cache has."""
        view = object.__new__(KVCache)
        view._views(self.k[:, :slots], self.v[:, :slots], self.lengths[:slots])
        return view

    def move(self, source: int, target: int) -> None:
        """Copies slot ``source``'s positions and length into slot ``target``."""
        length = int(self.lengths[source])
        self.k_rows[:, target, :length] = self.k_rows[:, source, :length]
        self.v_rows[:, target, :length] = self.v_rows[:, source, :length]
        self.lengths[target] = length


def linear(x: torch.Tensor, weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight^T + bias for a float matrix, a quantized one (``ops.QuantWeight``), or a
    list of them whose outputs are concatenated (parts quantized in different formats)."""
    if isinstance(weight, ops.QuantWeight):
        return ops.quant_linear(x, weight, bias)
    if isinstance(weight, list):
        y = torch.cat([linear(x, part) for part in weight], dim=-1)
        return y if bias is None else y + bias
    return F.linear(x, weight, bias)


def embedding(tokens: torch.Tensor, table, dtype: torch.dtype) -> torch.Tensor:
    """Rows ``tokens`` of an embedding table, dequantizing only those rows of a quantized one."""
    if isinstance(table, ops.QuantWeight):
        rows = table.dequantize_rows(tokens.reshape(-1), dtype)
        return rows.reshape(*tokens.shape, table.shape[1])
    return F.embedding(tokens, table)


class LanguageModel:
    """Weights (read-only, shareable between threads) and the two passes over a cache."""

    def __init__(self, cfg: LMConfig, tensors: dict[str, torch.Tensor]) -> None:
        self.cfg = cfg

        # Quantized matrices on the CPU in the layouts its kernels read fastest, replaced
        # in place so that each GGUF copy is freed as soon as its tiled one exists.
        def tiled(t):
            if isinstance(t, list):
                return [tiled(part) for part in t]
            cpu = isinstance(t, ops.QuantWeight) and t.device.type == "cpu"
            return t.tiled() if cpu else t

        for name, t in tensors.items():
            tensors[name] = tiled(t)
        self.w = tensors
        self.dtype = next(t.dtype for t in tensors.values() if isinstance(t, torch.Tensor))
        self.head = tensors.get("head", tensors["embed"])
        self.layers = [
            {
                name[len(f"layers.{i}.") :]: t
                for name, t in tensors.items()
                if name.startswith(f"layers.{i}.")
            }
            for i in range(cfg.n_layers)
        ]
        self.scale = cfg.head_dim**-0.5
        if not cfg.is_gpt2:
            inv_freq = cfg.inv_freq()
            if "rope_freqs" in tensors:
                inv_freq = inv_freq / tensors["rope_freqs"].double()
            self._inv_freq = inv_freq.float()
            self._rope_len = 0
            self._extend_rope(min(cfg.context_length, 4096))
        self._attention_kernel = ops.has_kernel("decode_attention", "cpu")
        self._fused_layers = self._fused_layer_arguments()
        self._final_norm = self.w["norm.weight"].contiguous()  # applied by the fused step

    def _fused_layer_arguments(self) -> list | None:
        """The per-layer weights as ``torch.ops.aigc.llm_decode_layers`` takes them, or None
        where the op does not apply (GPT-2, bfloat16, matrices split by block type)."""
        if self.cfg.is_gpt2 or self.dtype != torch.float32:
            return None
        if not ops.has_kernel("llm_decode_layers", "cpu"):
            return None
        lists: dict[str, list] = {}
        for name in ("qkv", "o", "gate_up", "down"):
            data, types, counts = [], [], []
            for layer in self.layers:
                weight = layer[f"{name}.weight"]
                parts = weight if isinstance(weight, list) else [weight]
                for w in parts:
                    if isinstance(w, ops.QuantWeight):
                        data.append(w.data)
                        types.append(w.qtype)
                    else:
                        data.append(w.contiguous())
                        types.append(-1)  # a float32 matrix
                counts.append(len(parts))
            if name in ("o", "down") and any(c != 1 for c in counts):
                return None
            lists[name] = [data, types, counts] if name in ("qkv", "gate_up") else [data, types]
        biases = [layer["qkv.bias"].float() for layer in self.layers if "qkv.bias" in layer]
        norms = [
            [layer[f"{n}.weight"].contiguous() for layer in self.layers]
            for n in ("attn_norm", "mlp_norm")
        ]
        return [*lists["qkv"], biases, *lists["o"], *lists["gate_up"], *lists["down"], *norms]

    # -- positions -----------------------------------------------------------------

    def _extend_rope(self, length: int) -> None:
        """cos/sin tables [length, D] in rotate-half layout, float32 angles as transformers."""
        if length <= self._rope_len:
            return
        positions = torch.arange(length, dtype=torch.float32)
        angles = torch.outer(positions, self._inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        self.cos, self.sin = angles.cos().to(self.dtype), angles.sin().to(self.dtype)
        self._rope_len = length

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    # -- pieces ----------------------------------------------------------------------

    def _norm(self, x: torch.Tensor, weights: dict, name: str) -> torch.Tensor:
        """LayerNorm (gpt2) or RMSNorm with ``weights[name + ".weight"]`` (and ``.bias``)."""
        weight = weights[f"{name}.weight"]
        if self.cfg.is_gpt2:
            bias = weights[f"{name}.bias"]
            return F.layer_norm(x, (x.shape[-1],), weight, bias, self.cfg.norm_eps)
        return F.rms_norm(x, (x.shape[-1],), weight, self.cfg.norm_eps)

    def _mlp(self, x: torch.Tensor, layer: dict) -> torch.Tensor:
        if self.cfg.is_gpt2:
            h = F.gelu(linear(x, layer["up.weight"], layer["up.bias"]), approximate="tanh")
            return linear(h, layer["down.weight"], layer["down.bias"])
        gate, up = linear(x, layer["gate_up.weight"]).chunk(2, dim=-1)
        return linear(F.silu(gate) * up, layer["down.weight"])

    def _qkv(self, x: torch.Tensor, layer: dict):
        """q [..., H, D] and k, v [..., Hkv, D] of ``x`` [..., dim]."""
        cfg = self.cfg
        proj = linear(x, layer["qkv.weight"], layer.get("qkv.bias"))
        kv_width = cfg.n_kv_heads * cfg.head_dim
        q, k, v = proj.split([cfg.n_heads * cfg.head_dim, kv_width, kv_width], dim=-1)
        shape = x.shape[:-1]
        return (
            q.view(*shape, cfg.n_heads, cfg.head_dim),
            k.view(*shape, cfg.n_kv_heads, cfg.head_dim),
            v.view(*shape, cfg.n_kv_heads, cfg.head_dim),
        )

    def _embed(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = embedding(tokens, self.w["embed"], self.dtype)
        if self.cfg.is_gpt2:
            x = x + F.embedding(positions, self.w["pos_embed"])
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return linear(self._norm(x, self.w, "norm"), self.head).float()

    # -- passes --------------------------------------------------------------------------

    def check_length(self, length: int) -> None:
        if not self.cfg.is_gpt2:
            self._extend_rope(length)

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]], cache: KVCache, slots: list[int]) -> torch.Tensor:
        """Runs each prompt (>= 1 token) into its cache slot; returns last-token logits [n, V].

        The prompts are right-padded into one block: the causal mask keeps real
        tokens from seeing the padding after them, and each slot's length makes
        later steps ignore it.
        """
        cfg = self.cfg
        n, T = len(prompts), max(len(p) for p in prompts)
        self.check_length(T)
        tokens = torch.zeros((n, T), dtype=torch.int64)
        for row, ids in enumerate(prompts):
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        lengths = torch.tensor([len(p) for p in prompts], dtype=torch.int64)
        positions = torch.arange(T)
        x = self._embed(tokens, positions)
        if not cfg.is_gpt2:
            cos, sin = self.cos[:T, None, :], self.sin[:T, None, :]  # [T, 1, D]
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(self._norm(x, layer, "attn_norm"), layer)  # [n, T, heads, D]
            if not cfg.is_gpt2:
                q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            for row, (slot, length) in enumerate(zip(slots, lengths.tolist(), strict=True)):
                cache.k_rows[i, slot, :length] = k[row, :length]
                cache.v_rows[i, slot, :length] = v[row, :length]
            y = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                k.transpose(1, 2),
                v.transpose(1, 2),
                is_causal=True,
                scale=self.scale,
                enable_gqa=cfg.n_heads != cfg.n_kv_heads,
            )
            x = x + linear(
                y.transpose(1, 2).reshape(n, T, -1), layer["o.weight"], layer.get("o.bias")
            )
            x = x + self._mlp(self._norm(x, layer, "mlp_norm"), layer)
        cache.lengths[torch.tensor(slots)] = lengths
        last = x[torch.arange(n), lengths - 1]
        return self.logits(last)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, cache: KVCache, active: torch.Tensor | None = None):
        """Appends ``tokens`` [slots] to every slot (or those where ``active`` [slots] is
        true); returns next-token logits [slots, V] (rows of inactive slots are junk)."""
        cfg = self.cfg
        positions = cache.lengths.clone()
        if int(positions.max()) >= cache.max_len:
            raise RuntimeError(f"the KV cache is full ({cache.max_len} positions)")
        cache.lengths.add_(1 if active is None else active.to(torch.int64))
        B = tokens.shape[0]
        x = self._embed(tokens, positions).contiguous()  # [B, dim]
        if self._fused_layers is not None:
            self.check_length(cache.max_len)
            torch.ops.aigc.llm_decode_layers(
                x,
                *self._fused_layers,
                cache.k,
                cache.v,
                positions,
                cache.lengths,
                self.cos,
                self.sin,
                cfg.n_heads,
                cfg.n_kv_heads,
                cfg.norm_eps,
                self.scale,
                self._final_norm,
            )
            return linear(x, self.head).float()  # x came back normalized
        slots = torch.arange(B)
        if not cfg.is_gpt2:
            cos, sin = self.cos[positions, None, :], self.sin[positions, None, :]  # [B, 1, D]
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(self._norm(x, layer, "attn_norm"), layer)  # [B, heads, D]
            if not cfg.is_gpt2:
                q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            cache.k_rows[i, slots, positions] = k
            cache.v_rows[i, slots, positions] = v
            y = self._attention(q.contiguous(), cache.k[i], cache.v[i], cache.lengths)
            x = x + linear(y.reshape(B, -1), layer["o.weight"], layer.get("o.bias"))
            x = x + self._mlp(self._norm(x, layer, "mlp_norm"), layer)
        return self.logits(x)

    def _attention(self, q, k_cache, v_cache, lengths) -> torch.Tensor:
        if self._attention_kernel:  # shapes are right by construction: skip the checks
            return torch.ops.aigc.decode_attention.default(q, k_cache, v_cache, lengths, self.scale)
        return ops.decode_attention(q, k_cache, v_cache, lengths, self.scale)

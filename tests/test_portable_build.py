"""The CPU kernels as AIGC_PORTABLE=1 builds them (-march=x86-64-v3: AVX2, no
AVX-512) against the references.

This machine's own build (-march=native) compiles the AVX2 paths out:
decode_attention's head-group scores and 8-lane PV, upsample_conv2d's 8-lane
tiles, quant_linear's vpmaddubsw dots (VNNI machines use vpdpbusd). Here
they are built into build/portable/<hash>/ and run in a subprocess, since one
process can hold only one `aigc` library; sample, whose
tokens must not depend on the instruction set, is checked token for token.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from emulation import source_closure

pytestmark = pytest.mark.build

REPO = Path(__file__).resolve().parents[1]
CSRC = REPO / "csrc"
REFERENCE = REPO / "aigc_sdk" / "ops" / "reference.py"
SOURCES = [CSRC / "registration.cpp", *sorted((CSRC / "cpu").glob("*.cpp"))]


def setup_cxx_flags() -> list[str]:
    """The flag list setup.py's _cxx_flags() starts from, read from its source:
    importing setup.py would run setup()."""
    tree = ast.parse((REPO / "setup.py").read_text())
    function = next(
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "_cxx_flags"
    )
    first = next(
        node
        for node in function.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "flags"
    )
    return ast.literal_eval(first.value)


# setup.py's flags with AIGC_PORTABLE=1, and the two that setuptools adds from
# Python's own build flags.
CFLAGS = [*setup_cxx_flags(), "-march=x86-64-v3", "-DNDEBUG", "-fwrapv"]


@pytest.fixture(scope="module")
def portable_library() -> Path:
    digest = hashlib.sha256(" ".join(CFLAGS).encode())
    for path in source_closure(SOURCES, [CSRC]):
        digest.update(path.read_bytes())
    build = REPO / "build" / "portable" / digest.hexdigest()[:16]
    build.mkdir(parents=True, exist_ok=True)
    name = "aigc_portable"
    # In a subprocess: load() also loads the library, and a second `aigc`
    # library in this process (beside aigc_sdk._C) would abort it.
    build_script = f"""
from torch.utils import cpp_extension
cpp_extension.load(
    name={name!r},
    sources={[str(s) for s in SOURCES]!r},
    extra_cflags={CFLAGS!r},
    extra_ldflags=["-fopenmp"],
    extra_include_paths=[{str(CSRC)!r}],
    build_directory={str(build)!r},
    is_python_module=False,
)
"""
    done = subprocess.run(
        [sys.executable, "-c", build_script], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return build / f"{name}.so"


def run_with(library: Path, body: str) -> None:
    """Runs `body` in a fresh interpreter where torch.ops.aigc is `library`."""
    script = textwrap.dedent(
        f"""
        import importlib.util, sys, torch
        torch.ops.load_library({str(library)!r})
        # reference.py alone: the aigc_sdk.ops package would load aigc_sdk._C.
        spec = importlib.util.spec_from_file_location("reference", {str(REFERENCE)!r})
        reference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reference)
        assert "aigc_sdk._C" not in sys.modules
        torch.manual_seed(0)
        """
    ) + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]


def test_decode_attention_avx2(portable_library):
    run_with(
        portable_library,
        """
        import itertools
        cases = itertools.product([1, 2, 3, 4, 8], [40, 64, 128], [torch.float32, torch.bfloat16])
        for G, D, dtype in cases:
            B, Hkv, T = 3, 2, 300
            q = torch.randn(B, Hkv * G, D, dtype=dtype)
            k, v = (torch.randn(B, Hkv, T, D, dtype=dtype) for _ in range(2))
            lens = torch.tensor([T, 37, 0])
            out, lse = torch.ops.aigc.decode_attention_lse(q, k, v, lens, D**-0.5)
            want, want_lse = reference.decode_attention(q, k, v, lens, D**-0.5)
            tol = 1e-5 if dtype == torch.float32 else 2e-2
            torch.testing.assert_close(out.float(), want.float(), atol=tol, rtol=tol)
            torch.testing.assert_close(lse, want_lse, atol=1e-4, rtol=1e-5)
        """,
    )


def test_sample_avx2_gives_the_reference_tokens(portable_library):
    run_with(
        portable_library,
        """
        for V, dtype in [(1000, torch.float32), (128256, torch.float32), (5000, torch.bfloat16)]:
            logits = (torch.randn(4, V) * 3).to(dtype)
            rows = lambda *xs, dtype=torch.float32: torch.tensor(xs, dtype=dtype)
            args = (
                logits,
                rows(1.0, 0.7, 0.0, 1.3),
                rows(0, 50, 0, 7, dtype=torch.int64),
                rows(1.0, 0.9, 0.5, 0.8),
                rows(0.0, 0.0, 0.1, 0.05),
                rows(1, 2, 3, 4, dtype=torch.int64),
                rows(0, 5, 9, 1, dtype=torch.int64),
                torch.randint(0, V, (4, 8)),
                rows(1.0, 1.3, 1.1, 2.0),
            )
            got, want = torch.ops.aigc.sample(*args), reference.sample(*args)
            assert torch.equal(got, want), (V, dtype, got, want)
        """,
    )


def test_upsample_conv2d_avx2(portable_library):
    run_with(
        portable_library,
        """
        layers = [  # Cin, Cout, size, kernel, stride, padding, activation, dtype
            (64, 32, 4, 4, 2, 1, "relu", torch.float32),
            (16, 3, 16, 4, 2, 1, "tanh", torch.float32),
            (32, 16, 8, 4, 2, 1, "leaky_relu", torch.bfloat16),
        ]
        for cin, cout, size, kernel, stride, padding, act, dtype in layers:
            x = torch.randn(2, cin, size, size).to(dtype)
            w = (torch.randn(cin, cout, kernel, kernel) * 0.1).to(dtype)
            b, scale, shift = (torch.randn(cout).to(dtype) for _ in range(3))
            args = (x, w, b, scale, shift, [stride] * 2, [padding] * 2, [0, 0], act, 0.01)
            got = torch.ops.aigc.upsample_conv2d(*args)
            want = reference.upsample_conv2d(
                *(t.float() for t in args[:5]), *args[5:]
            )
            tol = 1e-4 if dtype == torch.float32 else 5e-2
            torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol)
        x = torch.randn(4, 64, 100)
        w = torch.randn(64, 32, 8) * 0.1
        args = (x, w, None, None, None, [4], [2], [0], "leaky_relu", 0.2)
        got, want = torch.ops.aigc.upsample_conv2d(*args), reference.upsample_conv2d(*args)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        """,
    )


def test_quant_linear_avx2(portable_library):
    run_with(
        portable_library,
        """
        import numpy as np
        rng = np.random.default_rng(0)
        for qtype, (name, block, nbytes) in reference.QUANT_FORMATS.items():
            N, K = 37, 608 if block == 32 else 512
            raw = rng.integers(0, 256, (N, K // block, nbytes), dtype=np.uint8)
            # Random bytes but finite float16 scales (d, and dmin or m where present).
            scales = (rng.random((N, K // block, 2)) * 2e-3 + 1e-4).astype(np.float16)
            scales = scales.view(np.uint8)
            if name == "Q6_K":
                raw[..., 208:210] = scales[..., 0:2]
            else:
                raw[..., 0:4] = scales
            w = torch.from_numpy(raw.reshape(N, -1))
            w_abs = reference.dequantize_gguf(w, qtype, K).abs()
            for M, exact in [(1, False), (5, False), (40, False), (3, True)]:
                x = torch.randn(M, K)
                got = torch.ops.aigc.quant_linear(x, w, qtype, K, None, exact)
                int8 = not exact and M < 32
                want = reference.quant_linear(x, w, qtype, K, exact=not int8)
                used = reference.quantize_activations(x, reference.activation_block(qtype))
                tol = 1e-5 * ((used if int8 else x).abs() @ w_abs.T) + 1e-30
                assert bool(((got - want).abs() <= tol).all()), (name, M, exact)
        """,
    )


def test_cpu_kernels_compile_without_avx2():
    """The scalar fallbacks (x86-64 without AVX2, other architectures) are compiled
    by no machine of this project: check that they still compile."""
    import concurrent.futures

    from torch.utils import cpp_extension

    includes = [f"-I{p}" for p in [str(CSRC), *cpp_extension.include_paths()]]
    flags = [f for f in CFLAGS if not f.startswith("-march")]
    flags += ["-march=x86-64", "-fsyntax-only", "-Wno-psabi"]

    def compile_source(source: Path) -> subprocess.CompletedProcess:
        command = ["c++", *flags, *includes, str(source)]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    sources = sorted((CSRC / "cpu").glob("*.cpp"))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for source, done in zip(sources, pool.map(compile_source, sources), strict=True):
            assert done.returncode == 0, f"{source.name}: {done.stderr[-4000:]}"


@pytest.mark.parametrize("march", ["icelake-server", "alderlake"])
def test_quant_linear_vnni_paths_compile(march, tmp_path):
    """This machine builds neither quant_linear's AVX-512 VNNI path nor its
    AVX-VNNI one (vpdpbusd on 256-bit registers): compile them, and check
    that the instruction is there (running them needs such a CPU)."""
    from torch.utils import cpp_extension

    obj = tmp_path / "quant_linear.o"
    includes = [f"-I{p}" for p in [str(CSRC), *cpp_extension.include_paths()]]
    flags = [f for f in CFLAGS if not f.startswith("-march")] + [f"-march={march}"]
    done = subprocess.run(
        ["c++", *flags, *includes, "-c", str(CSRC / "cpu" / "quant_linear.cpp"), "-o", str(obj)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    disassembly = subprocess.run(["objdump", "-d", str(obj)], capture_output=True, text=True)
    assert "vpdpbusd" in disassembly.stdout

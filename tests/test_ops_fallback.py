"""Without the compiled extension every op still works, through its reference; with it,
`aigc doctor` reports exactly the kernels the dispatcher has."""

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import run_aigc, run_python

from aigc_sdk.plugins import env_flag

# Each test runs a Python of its own (without the extension, or `aigc doctor`): the cli tier.
pytestmark = pytest.mark.cli

# `make test` sets it: there a missing or broken build is a failure, not a skip.
REQUIRE_EXTENSION = env_flag("AIGC_REQUIRE_EXTENSION")

NO_EXTENSION = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "aigc_sdk._C":
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
"""


def test_ops_fall_back_to_references_when_the_extension_is_missing():
    code = (
        NO_EXTENSION
        + """
import warnings, torch
from aigc_sdk import ops
from aigc_sdk.ops import reference
assert ops.status()["extension"] == "missing"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    tokens = ops.sample(torch.randn(3, 50), top_k=5, seed=7)
    q, k = torch.randn(2, 4, 64), torch.randn(2, 2, 9, 64)
    out = ops.decode_attention(q, k, k, torch.tensor([9, 4]))
    y = ops.upsample_conv2d(torch.randn(1, 3, 4, 4), torch.randn(3, 2, 4, 4), stride=2, padding=1)
assert tokens.shape == (3,) and out.shape == (2, 4, 64) and y.shape == (1, 2, 8, 8)
assert any("using the pure-PyTorch reference" in str(w.message) for w in caught)
print("ok")
"""
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_doctor_reports_a_missing_extension():
    out = run_python(
        NO_EXTENSION + "import sys; from aigc_sdk.cli import main; sys.exit(main(['doctor']))"
    )
    assert out.returncode == 0, out.stderr
    assert "extension    missing: ImportError: blocked for the test" in out.stdout


def _elf_section_names(path: Path) -> set[str]:
    """Section names of an ELF64 little-endian shared object (the build's own record)."""
    data = path.read_bytes()

    def number(offset: int, size: int) -> int:
        return int.from_bytes(data[offset : offset + size], "little")

    sections, entry_size = number(0x28, 8), number(0x3A, 2)
    count, names_index = number(0x3C, 2), number(0x3E, 2)
    header = [sections + i * entry_size for i in range(count)]
    strings = number(header[names_index] + 0x18, 8)
    names = set()
    for entry in header:
        start = strings + number(entry, 4)
        names.add(data[start : data.index(b"\0", start)].decode())
    return names


def test_doctor_reports_the_kernels_the_dispatcher_has():
    import torch

    from aigc_sdk import ops
    from aigc_sdk.ops._extension import CPU_ONLY_OPS, INFO_OPS

    if ops.load_error() is not None:
        message = f"the extension does not load: {ops.load_error()}"
        if REQUIRE_EXTENSION:
            pytest.fail(f"AIGC_REQUIRE_EXTENSION=1 but {message}")
        pytest.skip(message)
    out = run_aigc("doctor", "--json")
    assert out.returncode == 0, out.stderr
    kernels = json.loads(out.stdout)["kernels"]
    # nvcc puts device code in a .nv_fatbin section: a CPU-only build has none.
    library = Path(importlib.util.find_spec("aigc_sdk._C").origin)
    cuda_built = ".nv_fatbin" in _elf_section_names(library)
    assert kernels["extension"] == "built"
    assert kernels["build"] == ("cpu+cuda" if cuda_built else "cpu")
    registered = {
        name.removeprefix("aigc::")
        for name in torch._C._dispatch_get_all_op_names()
        if name.startswith("aigc::")
    }
    assert set(ops.OPS) <= registered
    for op in sorted(registered - set(INFO_OPS)):
        has = {
            device: torch._C._dispatch_has_kernel_for_dispatch_key(f"aigc::{op}", key)
            for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
        }
        assert has["cpu"], f"aigc::{op} has no CPU kernel"
        if op in CPU_ONLY_OPS:
            assert not has["cuda"]
            continue
        assert has["cuda"] == cuda_built, (
            f"aigc::{op}: CUDA kernel {has['cuda']}, build {cuda_built}"
        )
        if op in kernels["ops"]:
            assert kernels["ops"][op] == {d: "kernel" if k else "reference" for d, k in has.items()}


@pytest.mark.parametrize("required", [True, False])
def test_a_required_extension_that_is_missing_fails_the_suite(required):
    test = f"{__file__}::test_doctor_reports_the_kernels_the_dispatcher_has"
    run = f"import pytest; sys.exit(pytest.main([{test!r}, '-q', '-p', 'no:cacheprovider']))"
    out = run_python(NO_EXTENSION + run, env={"AIGC_REQUIRE_EXTENSION": "1" if required else "0"})
    if required:
        assert out.returncode == 1 and "1 failed" in out.stdout, out.stdout + out.stderr
        assert "AIGC_REQUIRE_EXTENSION=1 but the extension does not load" in out.stdout
    else:
        assert out.returncode == 0 and "1 skipped" in out.stdout, out.stdout + out.stderr

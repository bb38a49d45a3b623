"""scripts/ptxas_report.py: ptxas resource report of the CUDA kernels, and no spills.

The torch-free sources (csrc/kernels/*.cu instantiation files and the
emulation harness' self-test kernels) compile in seconds and run in the default
suite. The torch bindings (csrc/cuda/*.cu) take minutes per file on two cores:
their check is marked slow; CI runs it as
``python scripts/ptxas_report.py --fail-on-spill`` (cached in build/ptxas/).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.build

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "ptxas_report.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("ptxas_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ptxas_report"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ptxas_report = _load_script()
needs_nvcc = pytest.mark.skipif(
    ptxas_report.find_nvcc() is None, reason="nvcc not found (CUDA_HOME, NVCC or PATH)"
)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO, timeout=3600
    )


RECORDED = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_ZN2op6kernelILi128EfEEvPKT0_PS1_i' for 'sm_80'
ptxas info    : Function properties for _ZN2op6kernelILi128EfEEvPKT0_PS1_i
    8 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Function properties for _ZN2op6helperEf
    16 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 72 registers, used 1 barriers, 8192 bytes smem, 380 bytes cmem[0]
ptxas info    : Compile time = 12.000 ms
ptxas info    : Compiling entry function '_ZN2op6kernelILi128EfEEvPKT0_PS1_i' for 'sm_90'
ptxas warning : Registers are spilled to local memory in function \
'_ZN2op6kernelILi128EfEEvPKT0_PS1_i', 24 bytes spill stores, 32 bytes spill loads
ptxas info    : Function properties for _ZN2op6kernelILi128EfEEvPKT0_PS1_i
    48 bytes stack frame, 24 bytes spill stores, 32 bytes spill loads
ptxas info    : Used 128 registers, used 1 barriers, 48 bytes cumulative stack size, 8192 bytes smem
"""


def test_parser_reads_entries_device_functions_and_spills():
    records = {(r.arch, r.mangled): r for r in ptxas_report.parse_ptxas(RECORDED, "x.cu")}
    k80 = records[("sm_80", "_ZN2op6kernelILi128EfEEvPKT0_PS1_i")]
    assert (k80.entry, k80.registers, k80.static_smem, k80.barriers, k80.stack_frame) == (
        True,
        72,
        8192,
        1,
        8,
    )
    assert not k80.spills and k80.cmem0 == 380
    helper = records[("sm_80", "_ZN2op6helperEf")]
    assert not helper.entry and helper.spills and helper.stack_frame == 16
    k90 = records[("sm_90", "_ZN2op6kernelILi128EfEEvPKT0_PS1_i")]
    assert (k90.registers, k90.spill_stores, k90.spill_loads, k90.static_smem) == (
        128,
        24,
        32,
        8192,
    )


def test_names_are_demangled_without_parameters():
    names = ptxas_report.demangle(["_ZN2op6kernelILi128EfEEvPKT0_PS1_i"])
    signature = names["_ZN2op6kernelILi128EfEEvPKT0_PS1_i"]
    if signature.startswith("_Z"):
        pytest.skip("no c++filt / cu++filt")
    assert ptxas_report.short_name(signature) == "op::kernel<128, float>"


@needs_nvcc
def test_selftest_kernels_are_reported_and_do_not_spill(tmp_path):
    out = tmp_path / "report.json"
    proc = _run(
        "--fail-on-spill", "--json", str(out), "tests/emulation/kernels/selftest_instances.cu"
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out.read_text())
    by_name = {(r["arch"], r["name"]): r for r in records}
    for arch in ("sm_80", "sm_90"):
        gemm = by_name[(arch, "emu_selftest::wmma_gemm<__half, false, false>")]
        assert gemm["entry"] and gemm["registers"] > 0 and gemm["spill_stores"] == 0
        assert by_name[(arch, "emu_selftest::transpose<16>")]["static_smem"] == 16 * 17 * 4
        assert by_name[(arch, "emu_selftest::block_scan<128, true>")]["barriers"] == 1
    assert "emu_selftest::block_reduce_sum<256>" in proc.stdout


@needs_nvcc
def test_fail_on_spill_catches_a_spilling_kernel():
    proc = _run("--fail-on-spill", "tests/emulation/ptxas_fixtures/spilling_kernel.cu")
    assert proc.returncode == 1
    assert "spilling_kernel" in proc.stderr and "spill registers" in proc.stderr


@needs_nvcc
def test_torch_free_kernel_sources_do_not_spill():
    sources = [p for p in ptxas_report.default_sources() if "csrc/cuda/" not in p.as_posix()]
    proc = _run("--fail-on-spill", *(str(p) for p in sources))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_nvcc
@pytest.mark.slow
def test_shipped_cuda_bindings_do_not_spill():
    if not list((REPO / "csrc" / "cuda").glob("*.cu")):
        pytest.skip("no csrc/cuda/*.cu yet")
    proc = _run("--fail-on-spill")
    assert proc.returncode == 0, proc.stdout + proc.stderr

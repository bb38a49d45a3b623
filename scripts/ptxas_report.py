#!/usr/bin/env python3
"""Resource usage of the CUDA kernels, as ptxas reports it.

Compiles CUDA sources with nvcc for each target architecture (default sm_80 and
sm_90) with ``-Xptxas -v`` and the flags the extension build uses, parses
ptxas' report and prints one row per kernel: registers, spill stores/loads,
stack frame, static shared memory, barriers. Template instantiations and
kernels from several headers are told apart by their (demangled) names.

Sources, by default:
  csrc/kernels/*.cu            torch-free files instantiating kernel templates (fast)
  tests/emulation/kernels/*.cu the emulation harness' self-test kernels
  csrc/cuda/*.cu               the torch bindings (complete but slow: torch headers
                               go through nvcc's front end once per architecture)
Results are cached in build/ptxas/ by content hash (sources, local headers,
flags, nvcc and torch versions), so a second run only compiles what changed.

    python scripts/ptxas_report.py                      # table of everything
    python scripts/ptxas_report.py --fail-on-spill      # exit 1 if any kernel spills
    python scripts/ptxas_report.py --json out.json tests/emulation/kernels/*.cu
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "build" / "ptxas"
DEFAULT_GLOBS = ("csrc/kernels/*.cu", "tests/emulation/kernels/*.cu", "csrc/cuda/*.cu")
DEFAULT_ARCHS = ("80", "90")
# As setup.py and torch.utils.cpp_extension give them to nvcc.
NVCC_FLAGS = [
    "-O3",
    "-std=c++20",
    "-lineinfo",
    "--expt-relaxed-constexpr",
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
    "-DAIGC_WITH_CUDA=1",
]


@dataclass
class KernelUsage:
    arch: str
    mangled: str
    name: str = ""  # demangled, without return type and parameters
    signature: str = ""  # demangled in full
    entry: bool = False  # a __global__ kernel (else a non-inlined device function)
    registers: int | None = None
    spill_stores: int = 0
    spill_loads: int = 0
    stack_frame: int = 0
    static_smem: int = 0
    barriers: int | None = None
    cmem0: int | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


# ---- running nvcc --------------------------------------------------------------------


def find_nvcc() -> str | None:
    for candidate in (
        os.environ.get("NVCC"),
        os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc"),
        shutil.which("nvcc"),
    ):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def torch_include_flags() -> list[str]:
    """Flags to find torch's headers, located without importing torch.

    ATen/cuda headers also need cusparse.h & co., which the CUDA toolkit of
    these machines lacks and torch's nvidia-* wheels ship; those directories
    also hold (possibly different) copies of the runtime headers, so they are
    searched after nvcc's own (-idirafter).
    """
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return []
    torch_dir = Path(next(iter(spec.submodule_search_locations)))
    flags = []
    for d in (
        torch_dir / "include",
        torch_dir / "include" / "torch" / "csrc" / "api" / "include",
        Path(sysconfig.get_paths()["include"]),
    ):
        if d.is_dir():
            flags += ["-isystem", str(d)]
    for d in sorted((torch_dir.parent / "nvidia").glob("*/include")):
        flags += ["-Xcompiler", f"-idirafter,{d}"]
    return flags


_TORCH_INCLUDE = re.compile(r"^\s*#\s*include\s*<(torch|ATen|c10)/", re.MULTILINE)


def uses_torch(files: list[Path]) -> bool:
    return any(_TORCH_INCLUDE.search(f.read_text(errors="replace")) for f in files)


def _torch_version() -> str:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return "none"
    version_file = Path(spec.origin).parent / "version.py"
    return version_file.read_text() if version_file.is_file() else "unknown"


_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.MULTILINE)


def local_closure(source: Path, include_dirs: list[Path]) -> list[Path]:
    """The source and every header it includes with quotes, transitively."""
    seen: dict[Path, None] = {}
    stack = [source.resolve()]
    while stack:
        path = stack.pop()
        if path in seen:
            continue
        seen[path] = None
        for name in _INCLUDE.findall(path.read_text(errors="replace")):
            for base in (path.parent, *include_dirs):
                candidate = (base / name).resolve()
                if candidate.is_file():
                    stack.append(candidate)
                    break
    return sorted(seen)


def nvcc_command(
    nvcc: str, source: Path, archs: list[str], output: Path, with_torch: bool
) -> list[str]:
    cmd = [nvcc, *NVCC_FLAGS, "--fatbin", "-Xptxas", "-v", "-I", str(REPO / "csrc")]
    if with_torch:
        cmd += torch_include_flags()
    for arch in archs:
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    return [*cmd, str(source), "-o", str(output)]


def ptxas_log(nvcc: str, source: Path, archs: list[str], use_cache: bool = True) -> str:
    """ptxas' -v output for one source (cached by content)."""
    files = local_closure(source, [REPO / "csrc"])
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    h = hashlib.sha256()
    for f in files:
        h.update(str(f).encode() + f.read_bytes())
    h.update(" ".join([*NVCC_FLAGS, *archs, version, _torch_version()]).encode())
    cached = CACHE / f"{source.stem}-{h.hexdigest()[:16]}.log"
    if use_cache and cached.is_file():
        return cached.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = nvcc_command(nvcc, source, archs, Path(tmp) / "out.fatbin", uses_torch(files))
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(
            f"nvcc failed on {source} (exit {proc.returncode}):\n{proc.stderr[-6000:]}"
        )
    log = proc.stdout + proc.stderr
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(log)
    return log


# ---- parsing ptxas -v ------------------------------------------------------------------

_COMPILING = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_PROPERTIES = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SPILL_WARNING = re.compile(
    r"Registers are spilled to local memory in function '([^']+)', "
    r"(\d+) bytes spill stores, (\d+) bytes spill loads"
)


def parse_ptxas(log: str, source: str = "") -> list[KernelUsage]:
    """Kernels and non-inlined device functions in ptxas -v output, per architecture."""
    records: dict[tuple[str, str], KernelUsage] = {}
    arch = "?"
    entry: KernelUsage | None = None
    props: KernelUsage | None = None

    def record(a: str, name: str) -> KernelUsage:
        key = (a, name)
        if key not in records:
            records[key] = KernelUsage(arch=a, mangled=name, sources=[source] if source else [])
        return records[key]

    for line in log.splitlines():
        if m := _COMPILING.search(line):
            arch = m.group(2)
            entry = record(arch, m.group(1))
            entry.entry = True
            props = None
        elif m := _PROPERTIES.search(line):
            props = record(arch, m.group(1))
        elif (m := _FRAME.search(line)) and props is not None:
            props.stack_frame, props.spill_stores, props.spill_loads = (int(g) for g in m.groups())
            props = None
        elif (m := _SPILL_WARNING.search(line)) and entry is not None:
            r = record(arch, m.group(1))
            r.spill_stores = max(r.spill_stores, int(m.group(2)))
            r.spill_loads = max(r.spill_loads, int(m.group(3)))
        elif (m := _USED.search(line)) and entry is not None:
            entry.registers = int(m.group(1))
            if s := re.search(r"(\d+) bytes smem", line):
                entry.static_smem = int(s.group(1))
            if b := re.search(r"used (\d+) barriers", line):
                entry.barriers = int(b.group(1))
            if c := re.search(r"(\d+) bytes cmem\[0\]", line):
                entry.cmem0 = int(c.group(1))
    return list(records.values())


def demangle(names: list[str]) -> dict[str, str]:
    """Mangled -> demangled, through cu++filt or c++filt when present."""
    tool = shutil.which("cu++filt") or shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    out = subprocess.run(
        [tool], input="\n".join(names) + "\n", capture_output=True, text=True
    ).stdout.splitlines()
    return dict(zip(names, out, strict=False)) if len(out) == len(names) else {n: n for n in names}


def short_name(signature: str) -> str:
    """`void ns::k<float, 4>(float const*, int)` -> `ns::k<float, 4>`."""
    s = signature.strip()
    if s.endswith(")"):
        depth = 0
        for i in range(len(s) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(s[i], 0)
            if depth == 0:
                s = s[:i]
                break
    return s[5:] if s.startswith("void ") else s


# ---- report -------------------------------------------------------------------------------


def collect(
    sources: list[Path], archs: list[str], jobs: int = 1, use_cache: bool = True
) -> list[KernelUsage]:
    nvcc = find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found (set CUDA_HOME or NVCC)")

    def one(src: Path) -> list[KernelUsage]:
        rel = (
            str(src.resolve().relative_to(REPO)) if src.resolve().is_relative_to(REPO) else str(src)
        )
        return parse_ptxas(ptxas_log(nvcc, src, archs, use_cache), rel)

    merged: dict[tuple[str, str], KernelUsage] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for records in pool.map(one, sources):
            for r in records:
                key = (r.arch, r.mangled)
                if key in merged:
                    merged[key].sources += [s for s in r.sources if s not in merged[key].sources]
                else:
                    merged[key] = r
    usages = list(merged.values())
    names = demangle(sorted({r.mangled for r in usages}))
    for r in usages:
        r.signature = names.get(r.mangled, r.mangled)
        r.name = short_name(r.signature)
    return sorted(usages, key=lambda r: (r.arch, not r.entry, r.name, r.mangled))


def format_table(usages: list[KernelUsage]) -> str:
    header = ("arch", "kernel", "regs", "spill st", "spill ld", "stack", "smem", "bar", "source")
    rows = [
        (
            r.arch,
            r.name + ("" if r.entry else "  [device fn]"),
            "-" if r.registers is None else str(r.registers),
            str(r.spill_stores),
            str(r.spill_loads),
            str(r.stack_frame),
            str(r.static_smem),
            "-" if r.barriers is None else str(r.barriers),
            ", ".join(r.sources),
        )
        for r in usages
    ]
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(header)
    ]
    numeric = {2, 3, 4, 5, 6, 7}

    def fmt(row):
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(row) for row in rows]
    lines.append("(smem: static shared memory in bytes; dynamic shared memory is set at launch)")
    return "\n".join(line.rstrip() for line in lines)


def default_sources() -> list[Path]:
    return [p for pattern in DEFAULT_GLOBS for p in sorted(REPO.glob(pattern))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sources", nargs="*", type=Path, help="CUDA sources (default: see above)")
    parser.add_argument(
        "--arch",
        default=",".join(DEFAULT_ARCHS),
        help="comma-separated SM versions (default 80,90)",
    )
    parser.add_argument("--json", type=Path, help="also write the records as JSON to this file")
    parser.add_argument(
        "--fail-on-spill", action="store_true", help="exit with status 1 if any kernel spills"
    )
    parser.add_argument(
        "--jobs", "-j", type=int, default=1, help="nvcc processes in parallel (default 1)"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="recompile even if a cached report exists"
    )
    args = parser.parse_args(argv)

    sources = args.sources or default_sources()
    if not sources:
        print("no CUDA sources found", file=sys.stderr)
        return 2
    archs = [a.strip().removeprefix("sm_") for a in args.arch.split(",") if a.strip()]
    try:
        usages = collect(sources, archs, args.jobs, use_cache=not args.no_cache)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"ptxas_report: {exc}", file=sys.stderr)
        return 2
    print(format_table(usages))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in usages], indent=2) + "\n")
    spilling = [r for r in usages if r.spills]
    if spilling:
        print(f"\n{len(spilling)} kernel(s) spill registers:", file=sys.stderr)
        for r in spilling:
            print(
                f"  {r.arch} {r.name}: {r.spill_stores} B stores, {r.spill_loads} B loads",
                file=sys.stderr,
            )
        if args.fail_on_spill:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Builds Python modules that run CUDA kernels on the CPU through the emulator.

A binding is a C++ source that includes ``emulation/emu_pybind.h`` and a
kernel header (``kernels/<op>.cuh``), and defines launcher functions with
pybind11 that call ``emu::launch``. ``load_binding`` compiles it with the host
compiler through ``torch.utils.cpp_extension.load`` into
``build/emulation/<name>_<hash>/`` and imports it. The hash covers the
binding, every local header it includes (kernels, the emulator), the flags and
the toolchain, so an edit anywhere gives a new module and an unchanged tree
reuses the cached one. See tests/emulation/README.md.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
BUILD_ROOT = REPO / "build" / "emulation"

# Mirrors the flags torch gives nvcc (no implicit half conversions/operators),
# so kernel code that compiles here compiles in the CUDA build too.
TORCH_NVCC_DEFINES = [
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
]
DEFAULT_CFLAGS = [
    "-O2",
    "-std=c++20",
    "-g0",
    # Kernels reinterpret buffers (half* as uint4* for 128-bit loads), which
    # nvcc tolerates and g++'s strict aliasing would miscompile.
    "-fno-strict-aliasing",
    # Kernel code is compiled for speed on the GPU; on the CPU keep IEEE
    # results without FMA contraction differences between machines.
    "-ffp-contract=off",
    "-Wall",
    "-Wno-unknown-pragmas",  # `#pragma unroll`
    "-Wno-unused-function",
    "-Wno-unused-variable",
    *TORCH_NVCC_DEFINES,
]

_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.MULTILINE)


def _local_includes(path: Path, include_dirs: Sequence[Path]) -> list[Path]:
    found = []
    for name in _INCLUDE.findall(path.read_text(errors="replace")):
        for base in (path.parent, *include_dirs):
            candidate = (base / name).resolve()
            if candidate.is_file():
                found.append(candidate)
                break
    return found


def source_closure(sources: Iterable[Path], include_dirs: Sequence[Path]) -> list[Path]:
    """The sources and every header they include with quotes, transitively."""
    seen: dict[Path, None] = {}
    stack = [Path(s).resolve() for s in sources]
    while stack:
        path = stack.pop()
        if path in seen:
            continue
        seen[path] = None
        stack.extend(_local_includes(path, include_dirs))
    return sorted(seen)


# ---- dynamic shared memory: link every `extern __shared__ T name[]` to the pool ----

_COMMENT_OR_LITERAL = re.compile(
    r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', re.DOTALL
)
_TOKEN = re.compile(
    r"(?P<ns>\bnamespace\s+(?P<nsname>[A-Za-z_][\w:]*)?\s*(?:\[\[[^\]]*\]\]\s*)?\{)"
    r"|(?P<extern>\bextern\s+__shared__\b[^;{}]*?\b(?P<var>[A-Za-z_]\w*)\s*\[\s*\]\s*;)"
    r"|(?P<open>\{)|(?P<close>\})"
)


def _blank(match: re.Match) -> str:
    # Keep newlines so positions stay meaningful; drop everything else.
    return re.sub(r"[^\n]", " ", match.group(0))


def _mangle(namespaces: list[str], name: str) -> str:
    if not namespaces:
        return name
    parts = "".join(f"{len(p)}{p}" for p in namespaces)
    return f"_ZN{parts}{len(name)}{name}E"


def dynamic_shared_symbols(paths: Iterable[Path]) -> list[str]:
    """Linker names of the `extern __shared__ T name[]` declared in the files.

    A block-scope extern declaration names a variable of the innermost
    enclosing namespace, so the namespaces around each declaration give its
    mangled name. Anonymous namespaces (internal linkage) are not supported:
    use AIGC_DYNAMIC_SHARED there.
    """
    symbols: set[str] = set()
    for path in paths:
        text = _COMMENT_OR_LITERAL.sub(_blank, Path(path).read_text(errors="replace"))
        text = re.sub(r"^\s*#.*$", "", text, flags=re.MULTILINE)  # preprocessor lines
        stack: list[str | None] = []
        for m in _TOKEN.finditer(text):
            if m.group("ns"):
                names = (m.group("nsname") or "").split("::")
                stack.append("::".join(names) if m.group("nsname") else "(anonymous)")
            elif m.group("extern"):
                namespaces = [p for entry in stack if entry for p in entry.split("::")]
                if "(anonymous)" in namespaces:
                    raise ValueError(
                        f"{path}: `extern __shared__ ... {m.group('var')}[]` inside an anonymous "
                        "namespace cannot be linked by the emulator; use "
                        "AIGC_DYNAMIC_SHARED(T, name) from cuda_compat.cuh"
                    )
                symbols.add(_mangle(namespaces, m.group("var")))
            elif m.group("open"):
                stack.append(None)
            elif m.group("close") and stack:
                stack.pop()
    return sorted(symbols)


def dynamic_shared_defines(symbols: Sequence[str]) -> list[str]:
    """-D flags that make csrc/emulation/emu_dynsmem_link.h alias each symbol to the pool."""
    flags = []
    for i, sym in enumerate(symbols):
        # The TLS init function of a variable: _ZTH + its encoding (_Z stripped).
        init = "_ZTH" + (sym[2:] if sym.startswith("_Z") else f"{len(sym)}{sym}")
        flags += [f"-DAIGC_EMU_DYNSMEM_{i}={sym}", f"-DAIGC_EMU_DYNSMEM_INIT_{i}={init}"]
    return flags


def _digest(files: Sequence[Path], flags: Sequence[str]) -> str:
    import torch

    h = hashlib.sha256()
    for f in files:
        h.update(str(f).encode())
        h.update(f.read_bytes())
    h.update("\0".join(flags).encode())
    h.update(f"{sys.version_info[:2]} {torch.__version__}".encode())
    return h.hexdigest()[:12]


@functools.cache
def _load_cached(
    name: str,
    sources: tuple[Path, ...],
    cflags: tuple[str, ...],
    includes: tuple[Path, ...],
    verbose: bool,
):
    from torch.utils import cpp_extension

    include_dirs = [CSRC, REPO, *includes]
    files = source_closure(sources, include_dirs)
    flags = [*cflags, *dynamic_shared_defines(dynamic_shared_symbols(files))]
    module_name = f"{name}_{_digest(files, flags)}"
    build_dir = BUILD_ROOT / module_name
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        return cpp_extension.load(
            name=module_name,
            sources=[str(s) for s in sources],
            extra_cflags=flags,
            extra_include_paths=[str(p) for p in include_dirs],
            build_directory=str(build_dir),
            verbose=verbose,
        )
    except ImportError as exc:
        if "undefined symbol" in str(exc):
            raise ImportError(
                f"{exc}\nIf this is an `extern __shared__` array the emulator could not link, "
                "declare it with AIGC_DYNAMIC_SHARED(T, name) from csrc/kernels/cuda_compat.cuh."
            ) from exc
        raise


def load_binding(
    name: str,
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    extra_cflags: Sequence[str] = (),
    extra_include_paths: Sequence[str | os.PathLike] = (),
    verbose: bool = False,
):
    """Compiles (or reuses) and imports an emulation binding.

    name: a short identifier (the module is ``<name>_<hash>``).
    sources: the binding's C++ file(s); relative paths are from the repo root.
    extra_cflags: appended to DEFAULT_CFLAGS (e.g. ``["-DBLOCK=128"]``).
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    paths = tuple((REPO / s).resolve() if not Path(s).is_absolute() else Path(s) for s in sources)
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"emulation binding source not found: {p}")
    cflags = tuple(DEFAULT_CFLAGS) + tuple(extra_cflags)
    includes = tuple(Path(p).resolve() for p in extra_include_paths)
    return _load_cached(name, paths, cflags, includes, verbose)

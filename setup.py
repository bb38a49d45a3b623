"""Builds the compiled extension ``aigc_sdk._C``.

CPU kernels are always built. CUDA kernels are built too when nvcc and a CUDA
build of torch are present (``AIGC_BUILD_CUDA=0`` forces them off, ``=1`` on).
Package metadata lives in pyproject.toml; this file only adds the extension.

    pip install --no-build-isolation -e .
"""

import glob
import os
import shutil

from setuptools import setup

# torch guesses CUDA_HOME when it is unset and nvcc is not on PATH, and may guess
# wrong (/usr/local); the usual toolkit location is a better default.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

from torch.utils import cpp_extension  # noqa: E402  (reads CUDA_HOME at import)

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "8.0;9.0"


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _want_cuda() -> bool:
    choice = os.environ.get("AIGC_BUILD_CUDA", "auto").lower()
    if choice in ("0", "false", "no"):
        return False
    import torch

    nvcc = os.path.join(cpp_extension.CUDA_HOME or "", "bin", "nvcc")
    available = torch.version.cuda is not None and (
        os.path.exists(nvcc) or shutil.which("nvcc") is not None
    )
    if choice in ("1", "true", "yes") and not available:
        raise RuntimeError(
            "AIGC_BUILD_CUDA=1 but no CUDA toolkit (set CUDA_HOME) or no CUDA build of torch"
        )
    return available


def _cxx_flags() -> list[str]:
    # A literal list: tests/test_portable_build.py reads it from this source.
    flags = ["-O3", "-std=c++20", "-fopenmp", "-Wall", "-Wno-unused-function"]
    # Built from source for the machine it runs on (as llama.cpp does);
    # AIGC_PORTABLE=1 gives a binary for any x86-64-v3 machine instead.
    if os.environ.get("AIGC_PORTABLE") == "1":
        flags.append("-march=x86-64-v3")
    else:
        flags.append("-march=native")
    return flags


def _cuda_wheel_includes() -> list[str]:
    """Headers the CUDA toolkit may lack but torch's CUDA headers include (cusparse.h).

    pip's torch brings them in the nvidia-* wheels; a toolkit without the math
    libraries (as on these machines) needs that directory after its own.
    """
    try:
        import nvidia
    except ImportError:
        return []
    found = []
    for base in getattr(nvidia, "__path__", []):
        found += sorted(glob.glob(os.path.join(base, "cu*", "include")))
        found += sorted(glob.glob(os.path.join(base, "*", "include")))
    return [d for d in dict.fromkeys(found) if os.path.exists(os.path.join(d, "cusparse.h"))]


def extension():
    include_dirs = [os.path.join(ROOT, "csrc")]
    sources = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp")
    cxx = _cxx_flags()
    if _want_cuda():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
        return cpp_extension.CUDAExtension(
            "aigc_sdk._C",
            sources + _sources("csrc/cuda/*.cu"),
            include_dirs=include_dirs + _cuda_wheel_includes(),
            define_macros=[("AIGC_WITH_CUDA", "1")],
            extra_compile_args={
                "cxx": cxx,
                "nvcc": ["-O3", "-std=c++20", "-lineinfo", "--expt-relaxed-constexpr"],
            },
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension(
        "aigc_sdk._C",
        sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx},
        extra_link_args=["-fopenmp"],
    )


# AIGC_NO_EXTENSION=1 installs the Python package alone; the Makefile then builds
# the extension in place with `setup.py build_ext --inplace`, which ninja keeps
# incremental across runs (pip's own builds start from scratch every time).
setup(
    ext_modules=[] if os.environ.get("AIGC_NO_EXTENSION") == "1" else [extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)

"""``aigc doctor [--json]``: what is installed, what was built, what runs where."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .common import make_sdk


def add_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="versions, build and kernel status", allow_abbrev=False)
    p.add_argument("--json", action="store_true")


def cmd_doctor(args: argparse.Namespace) -> int:
    report = collect(make_sdk(args))
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def collect(sdk: Any) -> dict[str, Any]:
    import platform

    import torch

    from .. import __version__, ops

    cuda_available = torch.cuda.is_available()
    plugins = sdk.plugins()
    return {
        "aigc_sdk": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": cuda_available,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda_available
        else [],
        "cpu_threads": torch.get_num_threads(),
        # None: libgomp's default (aigc sets it unless the user did; cli/__init__.py)
        "openmp_spin_count": os.environ.get("GOMP_SPINCOUNT"),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "kernels": ops.status(),
        "plugins": {
            "loaded": [p.name for p in plugins if p.status == "loaded"],
            "disabled": [p.name for p in plugins if p.status == "disabled"],
            "failed": {p.name: p.errors for p in plugins if p.status == "failed"},
        },
    }


def render(report: dict[str, Any]) -> str:
    kernels = report["kernels"]
    lines = [
        f"aigc-sdk     {report['aigc_sdk']}",
        f"python       {report['python']}  ({report['platform']})",
        f"torch        {report['torch']}  (CUDA build: {report['torch_cuda'] or 'no'}; "
        f"GPU available: {'yes' if report['cuda_available'] else 'no'})",
        f"cpu          {report['cpu_threads']} threads, {report['cpu_capability']}, "
        f"OpenMP spin {report['openmp_spin_count'] or 'libgomp default'}",
        f"extension    {kernels['extension']}"
        + (f" ({kernels['build']})" if kernels["build"] else f": {kernels['extension_error']}"),
        "ops          cpu        cuda",
    ]
    for op, where in kernels["ops"].items():
        lines.append(f"  {op:<18} {where['cpu']:<10} {where['cuda']}")
    plugins = report["plugins"]
    lines.append(f"plugins      loaded: {', '.join(plugins['loaded']) or 'none'}")
    if plugins["disabled"]:
        lines.append(f"             disabled: {', '.join(plugins['disabled'])}")
    for name, errors in plugins["failed"].items():
        lines.append(f"             failed: {name}: {'; '.join(errors)}")
    return "\n".join(lines)

"""Imports point downward only (DESIGN.md, Layers): no module of the library
imports its two doors, the CLI (aigc_sdk.cli) and the server (aigc_sdk.serve)."""

import subprocess
import sys

# Every module of aigc_sdk but the doors and the `python -m` entry points (which are
# doors too: `python -m aigc_sdk.training` runs the CLI's `aigc train`).
IMPORT_THE_LIBRARY = r"""
import importlib, pathlib, sys
import aigc_sdk

root = pathlib.Path(aigc_sdk.__file__).parent
doors = ("aigc_sdk.cli", "aigc_sdk.serve")
for path in sorted(root.rglob("*.py")):
    parts = path.relative_to(root.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    if name.startswith(doors) or parts[-1] == "__main__" or "templates" in parts:
        continue
    importlib.import_module(name)
print(" ".join(sorted(m for m in sys.modules if m.startswith(doors))))
"""


def test_the_library_never_imports_the_cli_or_the_server():
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_THE_LIBRARY], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [], f"imported by the library: {out.stdout}"

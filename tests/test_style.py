"""The code base stays ruff-clean (the same check as `make lint`)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_check_passes():
    targets = [
        p for p in ("aigc_sdk", "plugins", "tests", "benchmarks", "setup.py") if (ROOT / p).exists()
    ]
    out = subprocess.run([RUFF, "check", *targets], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

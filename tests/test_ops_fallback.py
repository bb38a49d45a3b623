"""Without the compiled extension every op still works, through its reference."""

from conftest import run_python

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

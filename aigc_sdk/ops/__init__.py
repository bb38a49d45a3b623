"""The Python face of the fused kernels (``torch.ops.aigc.*``).

Each op has a wrapper here that checks its arguments, a fake impl for
torch.compile, autograd where it trains, and a reference in ``reference.py``
used when the extension has no kernel for the device.
"""

from ._extension import OPS, build_info, has_kernel, load_error, status
from .attention import decode_attention
from .quant import QuantLinear, QuantWeight, quant_linear, quantized_weight
from .sampling import sample
from .upsample import upsample_conv2d

__all__ = [
    "OPS",
    "QuantLinear",
    "QuantWeight",
    "build_info",
    "decode_attention",
    "has_kernel",
    "load_error",
    "quant_linear",
    "quantized_weight",
    "sample",
    "status",
    "upsample_conv2d",
]

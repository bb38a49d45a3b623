"""Pure-PyTorch references of every op: the test oracle and the fallback.

Each function computes exactly what its fused kernel computes, written for
clarity, not speed.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_compile_caches():
    """Dynamo compiles a function for at most recompile_limit (8) shapes, then
    runs it eagerly under the compiled peer's name: every benchmark starts
    from empty caches, so its torch.compile peer is compiled for its shape."""
    torch.compiler.reset()


@pytest.fixture(scope="session")
def read_probe():
    """A memory-read probe: the bandwidth a memory-bound op is scored against."""
    from aigc_sdk import bench

    return bench.read_probe()

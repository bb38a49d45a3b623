"""llama-cpp-python's OpenAI server (the peer of `aigc serve`), optionally without
llama.cpp's extra buffer types.

    python benchmarks/llama_cpp_server.py --model FILE.gguf --model_alias chat \
        --n_threads 2 --port 18080 --interrupt_requests False [--no-extra-buffers]

Every argument but ``--no-extra-buffers`` goes to ``python -m llama_cpp.server``.
``--no-extra-buffers`` loads the weights without llama.cpp's repacked buffer types,
its AMX one included: on some AMX machines the first request otherwise ends the
server with a segmentation fault in ``ggml_backend_amx_mul_mat``
(ggml-org/llama.cpp#20824). The server's own options cannot turn them off.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    args = sys.argv[1:]
    if "--no-extra-buffers" in args:
        args.remove("--no-extra-buffers")
        import llama_cpp
        import llama_cpp.llama

        default_params = llama_cpp.llama_model_default_params

        def without_extra_buffers():
            params = default_params()
            params.use_extra_bufts = False
            return params

        llama_cpp.llama_model_default_params = without_extra_buffers
        llama_cpp.llama.llama_cpp.llama_model_default_params = without_extra_buffers
    sys.argv = ["llama_cpp.server", *args]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

"""aigc-sdk's real language models: GGUF files and Hugging Face folders of the
Llama family and GPT-2, with their own tokenizers and chat templates.

The entry-point module stays import-light: the generator is named by a lazy
``"module:attr"`` string, so torch and the model code load only on use.
"""

from aigc_sdk import hookimpl


@hookimpl
def aigc_register_generators(register):
    register(
        "chat",
        "aigc_llm.generator:ChatGenerator",
        modality="text",
        request="aigc_llm.request:ChatRequest",
        description="a real chat model (default: SmolLM2-135M-Instruct); "
        "--weights takes any Llama-family or GPT-2 .gguf file or Hugging Face folder",
    )

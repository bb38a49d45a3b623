"""aigc-sdk's Transformer text generator: a small decoder-only language model.

The entry-point module stays import-light: the generator and trainer are
named by lazy ``"module:attr"`` strings, so torch and the model load only on use.
"""

from aigc_sdk import hookimpl


@hookimpl
def aigc_register_generators(register):
    register(
        "transformer",
        "aigc_transformer.generator:TransformerGenerator",
        modality="text",
        request="aigc_transformer.request:TransformerRequest",
        description="a small Transformer language model (default weights: Python source)",
    )


@hookimpl
def aigc_register_trainers(register):
    register(
        "transformer",
        "aigc_transformer.trainer:TransformerTrainer",
        description="Transformer language model with its own BPE tokenizer",
    )

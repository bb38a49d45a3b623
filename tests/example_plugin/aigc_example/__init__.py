"""An example aigc-sdk plugin, written as any third-party package would be.

This module is what the entry point loads, so it stays import-light: the
generators are named by lazy ``"module:attr"`` strings and their code (and
torch) loads only when one is used. Each names its request class too (a light
import), so a request is checked, and ``aigc generate NAME --help`` answered,
without loading torch.
"""

from aigc_sdk import AudioRequest, ImageRequest, TextRequest, hookimpl


@hookimpl
def aigc_register_generators(register):
    register(
        "cppn",
        "aigc_example.cppn:CPPNGenerator",
        modality="image",
        request=ImageRequest,
        description="abstract patterns from a compositional pattern-producing network",
    )
    register(
        "markov",
        "aigc_example.markov:MarkovGenerator",
        modality="text",
        request=TextRequest,
        description="character-level Markov chain text, streamed",
    )
    register(
        "chime",
        "aigc_example.chime:ChimeGenerator",
        modality="audio",
        request=AudioRequest,
        description="a seeded wind-chime melody from additive synthesis",
    )


@hookimpl
def aigc_register_trainers(register):
    register("tiny", "aigc_example.tiny_trainer:TinyTrainer", description="a tiny autoencoder")

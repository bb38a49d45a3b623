"""aigc-sdk's built-in GAN plugin: a DCGAN that draws handwritten digits.

Import-light on purpose: the generator and trainer are named by lazy
``"module:attr"`` strings, so torch and the model load on first use.
"""

from aigc_sdk import hookimpl


@hookimpl
def aigc_register_generators(register):
    register(
        "gan",
        "aigc_gan.generator:GANGenerator",
        modality="image",
        request="aigc_gan.request:GANRequest",
        description="DCGAN digits (32x32): samples, truncation, latent walks, class labels",
    )


@hookimpl
def aigc_register_trainers(register):
    register(
        "gan",
        "aigc_gan.trainer:GANTrainer",
        description="DCGAN with hinge or non-saturating loss, spectral norm, EMA generator",
    )

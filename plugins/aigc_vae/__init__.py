"""aigc-sdk's built-in VAE plugin: a convolutional VAE of handwritten digits.

Import-light on purpose: the generator and trainer are named by lazy
``"module:attr"`` strings, so torch and the model load on first use.
"""

from aigc_sdk import hookimpl


@hookimpl
def aigc_register_generators(register):
    register(
        "vae",
        "aigc_vae.generator:VAEGenerator",
        modality="image",
        request="aigc_vae.request:VAERequest",
        description="convolutional VAE digits (32x32): prior samples, reconstruction, "
        "interpolation between two images",
    )


@hookimpl
def aigc_register_trainers(register):
    register(
        "vae",
        "aigc_vae.trainer:VAETrainer",
        description="convolutional VAE, beta-ELBO with a discretized logistic likelihood",
    )

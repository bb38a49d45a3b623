"""A plugin that claims a generator name the example plugin already uses."""

from aigc_sdk import hookimpl


@hookimpl
def aigc_register_generators(register):
    register("cppn", "aigc_broken.clash:Nothing", modality="image")

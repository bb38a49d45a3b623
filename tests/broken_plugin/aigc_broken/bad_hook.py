"""A plugin whose hooks raise: registration and an observer hook."""

from aigc_sdk import hookimpl


@hookimpl
def aigc_register_generators(register):
    raise RuntimeError("this plugin's registration hook is broken")


@hookimpl
def aigc_after_generate(generator, result):
    raise RuntimeError("this plugin's after-generate hook is broken")

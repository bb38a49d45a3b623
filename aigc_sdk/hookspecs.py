"""Every hook of aigc-sdk: the whole contract a plugin sees.

A plugin is a module (or any object) with functions named after these hooks
and decorated with ``aigc_sdk.hookimpl``; it is found through the entry-point
group ``aigc_sdk.plugins`` or registered at run time with ``SDK.register``.
An implementation may accept any subset of a hook's arguments.

Registration hooks run once per ``SDK``. Lifecycle hooks are notifications:
their return values are ignored. Hooks are called through pluggy's call loop,
so ``tryfirst``/``trylast`` and wrappers (``wrapper=True``, and old-style
``hookwrapper=True``) work as pluggy documents, but every implementation runs
guarded: one that raises is reported with its plugin's name, that plugin is
failed (unregistered, everything it registered dropped) and the others still
run (a broken plugin never takes the SDK or the CLI down).

No hook is ``firstresult`` (every hook wants all plugins' answers, or none)
and none is ``historic`` (a plugin registered late is asked to register its
generators at that moment, which is what historic replay would give).
"""

import pluggy

PROJECT_NAME = "aigc"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def aigc_register_generators(register):
    """Declare the generators this plugin provides.

    Called once per SDK when the plugin is loaded. Call
    ``register(name, factory, modality=..., description=..., request=...)``
    once per generator. ``factory`` is a ``Generator`` subclass, a zero-argument
    callable returning a generator, or a ``"package.module:attr"`` string
    naming one; a string is imported only when the generator is first used,
    so listing plugins never imports model code. ``modality`` is ``"image"``,
    ``"text"`` or ``"audio"``. ``request`` (optional) is the generator's
    ``Request`` class or a ``"module:attr"`` string naming it, in a module
    that does not import torch: the SDK checks requests and describes the
    fields from it without importing the factory. Two plugins registering
    one name is an error that names both.
    """


@hookspec
def aigc_register_trainers(register):
    """Declare the trainers this plugin provides.

    Called once per SDK when the plugin is loaded, like
    ``aigc_register_generators``: ``register(name, factory, description=...)``
    with a ``Trainer`` subclass, a callable, or a lazy ``"module:attr"``.
    """


@hookspec
def aigc_before_generate(generator, request):
    """Called just before ``generator`` runs ``request`` (also for streams).

    ``generator`` is the Generator instance and ``request`` its validated
    request object. Observers must not modify either.
    """


@hookspec
def aigc_after_generate(generator, request, result, seconds):
    """Called after a generation finished successfully.

    ``result`` is the ``GenerationResult`` (for a stream, the result holding
    the whole text once the stream is exhausted) and ``seconds`` the wall time
    the generation took.
    """


@hookspec
def aigc_train_step_end(trainer, step, metrics):
    """Called after each optimizer step of a training run.

    ``step`` is the number of optimizer steps done so far (1 after the
    first) and ``metrics`` a dict of floats (losses, learning rate, ...).
    With data-parallel training it is called on rank 0 only.
    """


@hookspec
def aigc_evaluation_end(trainer, step, metrics):
    """Called after each evaluation of a training run, with its metrics."""


@hookspec
def aigc_checkpoint_saved(trainer, step, path):
    """Called after a training checkpoint was written completely to ``path``.

    The checkpoint is final on disk when this runs: an observer may copy or
    upload it.
    """


@hookspec
def aigc_training_samples(trainer, step, samples):
    """Called when a training run produced sample artefacts.

    ``samples`` is a ``GenerationResult`` made by the model being trained
    (an image grid, text or audio), already saved under the run's directory.
    """

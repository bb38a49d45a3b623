"""The built-in audio plugin: a WaveNet generating 16 kHz audio sample by sample.

Import-light on purpose: the generator and trainer are lazy "module:attr"
strings, so torch and the model load only when they are used.
"""

from aigc_sdk import hookimpl


@hookimpl
def aigc_register_generators(register):
    register(
        "audio",
        "aigc_audio.generator:WaveNetGenerator",
        modality="audio",
        request="aigc_audio.request:WaveNetRequest",
        description="WaveNet (mu-law, conv queues, fused sampler): notes and chords at 16 kHz",
    )


@hookimpl
def aigc_register_trainers(register):
    register(
        "audio",
        "aigc_audio.trainer:WaveNetTrainer",
        description="WaveNet on 'tones' (synthesized notes and chords) or WAV/FLAC files",
    )

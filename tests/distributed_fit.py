"""One built-in trainer's run under torchrun, then every rank's full state on disk.

    torchrun --nproc_per_node=2 tests/distributed_fit.py NAME OUT OPTIONS_JSON [--resume]
        [--ddp-reference]

Run by tests/test_train_distributed.py. Each rank writes what it holds when
the run ends (models, EMA copies, optimizer and scheduler state) to
``OUT/rank-R.safetensors`` and ``OUT/rank-R.json``, so the test compares the
ranks directly, not only through the loop's own digests. The trainer is the
plugin's class with ``configure_optimizers`` recorded, the documented way a
trainer is extended, so the run is the plugin's own.

``--ddp-reference`` (gan only) first trains the same recipe under
DistributedDataParallel in the same processes (tests/ddp_gan_reference.py)
and writes rank 0's result to ``OUT/ddp-reference.safetensors``; the loop
then joins the process group already there.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from aigc_sdk import SDK
from aigc_sdk.training.state import flatten


def recording(cls: type) -> type:
    def configure_optimizers(self):
        self.recorded_optimizers = cls.configure_optimizers(self)
        return self.recorded_optimizers

    # The same class name keeps the trainer's name, which checkpoints record.
    return type(cls.__name__, (cls,), {"configure_optimizers": configure_optimizers})


def main() -> None:
    name, out, options = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    resume = "--resume" in sys.argv[4:]
    rank = int(os.environ.get("RANK", "0"))
    reference = None
    if "--ddp-reference" in sys.argv[4:]:
        from ddp_gan_reference import train_with_ddp

        dist.init_process_group("gloo")
        reference = train_with_ddp(options)
    sdk = SDK(plugins=[f"aigc_{name}"], autoload=False)
    trainer = recording(sdk.trainers.get(name).resolve())(**options)
    trainer.fit(out, resume=resume, quiet=True)
    if reference is not None:
        if rank == 0:
            save_file(reference, out / "ddp-reference.safetensors")
        dist.barrier()
        dist.destroy_process_group()

    tensors = {}
    for model_name, model in trainer.models.items():
        tensors.update({f"{model_name}.{k}": v for k, v in model.state_dict().items()})
    for model_name, model in trainer.ema.items():
        tensors.update({f"ema.{model_name}.{k}": v for k, v in model.state_dict().items()})
    structure = {}
    for opt_name, value in trainer.recorded_optimizers.items():
        optimizer, scheduler = value if isinstance(value, tuple) else (value, None)
        states = {"optimizer": optimizer.state_dict()}
        if scheduler is not None:
            states["scheduler"] = scheduler.state_dict()
        structure[opt_name] = flatten(states, f"optimizer.{opt_name}", tensors)
    tensors = {k: v.detach().cpu().clone() for k, v in tensors.items()}
    save_file(tensors, out / f"rank-{rank}.safetensors")
    (out / f"rank-{rank}.json").write_text(json.dumps(structure, sort_keys=True))


if __name__ == "__main__":
    main()

"""``aigc train NAME [options]``: the command line of every trainer plugin.

Every config key of the trainer is a flag (``--batch-size 64``) and can be
set with ``--set batch_size=64`` or from ``--config file.json``. Precedence:
defaults (or, with ``--resume``, the run's saved config) < ``--config`` <
flags and ``--set``.

``python -m aigc_sdk.training NAME [options]`` runs the same command line
(``module_main``): handy under ``torchrun`` (``torchrun --nproc_per_node=2 -m
aigc_sdk.training NAME ...``) and wherever the ``aigc`` script is not on the PATH.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AigcError, PluginError, UserError
from .arguments import ArgumentParser
from .common import make_sdk

if TYPE_CHECKING:  # aigc_sdk.training imports torch: only inside the command
    from ..training import TrainConfig, Trainer

RESERVED = {"out", "resume", "config", "set", "quiet", "print_config", "help"}
MODULE_USAGE = "usage: python -m aigc_sdk.training NAME [options]   (NAME --help for the options)"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (see: aigc train NAME --help)",
        add_help=False,
        allow_abbrev=False,
    )
    p.add_argument("name")


def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    return cli_main(make_sdk(args), args.name, extra)


def config_class(factory: Any) -> type[TrainConfig]:
    from ..training import TrainConfig

    config = getattr(factory, "Config", TrainConfig)
    if not (isinstance(config, type) and issubclass(config, TrainConfig)):
        raise PluginError(f"{factory!r}.Config must subclass aigc_sdk.training.TrainConfig")
    return config


def build_parser(name: str, factory: Any, prog: str | None = None) -> argparse.ArgumentParser:
    from ..training import TrainConfig

    config = config_class(factory)
    description = getattr(factory, "description", "") or (factory.__doc__ or "").strip()
    parser = ArgumentParser(
        prog=prog or f"aigc train {name}",
        description=description.splitlines()[0] if description else f"Train {name}.",
        epilog=(
            "Precedence: defaults (with --resume: the run's saved config) < --config FILE "
            "< flags and --set KEY=VALUE. The run directory gets metrics.jsonl, metrics.png, "
            "samples/, checkpoints/ and model/."
        ),
    )
    run = parser.add_argument_group("run")
    run.add_argument("--out", metavar="DIR", help=f"run directory (default: runs/{name})")
    run.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --out"
    )
    run.add_argument("--config", metavar="FILE", help="JSON object of config key: value")
    run.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set one config key (repeatable)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    run.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit"
    )
    common = parser.add_argument_group("training options (every trainer)")
    own = parser.add_argument_group(f"{name} options")
    base_keys = set(TrainConfig.keys())
    for f in dataclasses.fields(config):
        if f.name in RESERVED:
            raise PluginError(f"trainer {name!r}: config key {f.name!r} is reserved by aigc train")
        group = common if f.name in base_keys else own
        _add_option(group, config, f)
    return parser


def _add_option(group: Any, config: type[TrainConfig], f: dataclasses.Field) -> None:
    from ..training.config import describe_type, is_bool, parse_text

    flag = "--" + f.name.replace("_", "-")
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    help_text = f.metadata.get("help", "")
    choices = f.metadata.get("choices")
    if choices:
        help_text += f" [{'|'.join(map(str, choices))}]"
    help_text += f" (default: {json.dumps(default)})"
    kwargs: dict[str, Any] = {"dest": f"cfg_{f.name}", "default": argparse.SUPPRESS}
    if is_bool(config, f.name):
        group.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text, **kwargs)
    else:
        group.add_argument(
            flag, metavar=describe_type(config, f.name), type=parse_text, help=help_text, **kwargs
        )


def resolve_config(
    factory: Any, args: argparse.Namespace, out: Path
) -> tuple[TrainConfig, Path | None]:
    """The run's config and, with ``--resume``, the checkpoint it continues from."""
    from ..training import checkpointing

    config_type = config_class(factory)
    config = config_type()
    checkpoint = checkpointing.latest_checkpoint(out) if args.resume else None
    if checkpoint is not None:
        saved = checkpointing.read_state(checkpoint).get("config", {})
        config = config_type.from_dict(saved, f"{checkpoint}/{checkpointing.STATE_FILE}")
    if args.config:
        config = config_type.from_json_file(args.config, base=config)
    flags = {
        key.removeprefix("cfg_"): value
        for key, value in vars(args).items()
        if key.startswith("cfg_")
    }
    for assignment in args.set:
        key, value = config_type.parse_assignment(assignment)
        flags[key] = value
    if flags:
        config = config_type.from_dict(flags, "the command line", base=config)
    return config, checkpoint


def make_trainer(sdk: Any, name: str, config: TrainConfig) -> Trainer:
    from ..training import Trainer

    trainer = sdk.trainer(name, config=config)
    if not isinstance(trainer, Trainer):
        raise PluginError(
            f"trainer {name!r} made a {type(trainer).__name__}, not an aigc_sdk.training.Trainer"
        )
    trainer.name = name
    return trainer


def cli_main(sdk: Any, name: str, argv: list[str], prog: str | None = None) -> int:
    """Parses ``argv`` for trainer ``name``, trains, and returns the exit code.

    User errors raise ``UserError`` (the caller prints them as one line);
    ``--help`` and argument errors exit through argparse.
    """
    from ..generation import check_device
    from ..training import fit

    factory = sdk.trainers.get(name).resolve()
    parser = build_parser(name, factory, prog)
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path("runs") / name
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; expected a run directory")
    config, _ = resolve_config(factory, args, out)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    if config.device != "auto":  # before the trainer loads its data
        check_device(config.device, "--device")
    trainer = make_trainer(sdk, name, config)
    try:
        result = fit(trainer, out, resume=args.resume, sdk=sdk, quiet=args.quiet)
    except KeyboardInterrupt:
        print(f"aigc train {name}: interrupted", file=sys.stderr)
        return 130
    return 128 + signal.SIGTERM if result.stopped else 0


def module_main(argv: list[str] | None = None) -> int:
    """``python -m aigc_sdk.training NAME [options]``: ``aigc train`` without the script."""
    from ..sdk import SDK

    argv = sys.argv[1:] if argv is None else argv
    try:
        sdk = SDK()
        if not argv or argv[0].startswith("-"):
            names = sdk.trainers.names()
            print(MODULE_USAGE, file=sys.stderr)
            print(f"trainers: {', '.join(names) if names else 'none installed'}", file=sys.stderr)
            return 0 if argv and argv[0] in ("-h", "--help") else 2
        return cli_main(sdk, argv[0], argv[1:], prog=f"python -m aigc_sdk.training {argv[0]}")
    except AigcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

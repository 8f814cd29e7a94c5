"""``python -m diffusion train|sample|train-embedding|score|robustness|data``: the library without Ray.

Every config key becomes a flag of the same name (``--batch-size`` sets TrainConfig.batch_size),
so the flags never drift from the dataclasses. Wrong arguments give one line on stderr that
names the accepted values, and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from collections.abc import Sequence
from typing import Any, Literal, NoReturn

from diffusion.cli import measure, train
from diffusion.core.config import (
    ConfigError,
    DataConfig,
    DenoiserConfig,
    DiffusionConfig,
    RunConfig,
    TrainConfig,
    from_dict,
)
from diffusion.core.device import pick_device
from diffusion.core.models import DENOISERS, denoiser_config
from diffusion.core.samplers import SAMPLERS, SamplerSetting
from diffusion.embeddings import EMBEDDINGS
from diffusion.embeddings.training import EMBEDDING_TRAINING
from diffusion.lab.datasets import DATASETS, DatasetUnavailable, store_dataset
from diffusion.lab.store import CheckpointError, LabStore, LabStoreError, check_name, default_lab

SECTIONS: dict[str, type] = {"model": DenoiserConfig, "diffusion": DiffusionConfig, "train": TrainConfig, "data": DataConfig}


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in a single line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


NON_NEGATIVE_INTS = {"warmup_steps", "seed"}


def _flag_options(name: str, hint: Any) -> dict[str, Any]:
    if typing.get_origin(hint) is Literal:  # a closed choice: the config's Literal, which its registry is keyed by
        return {"choices": list(typing.get_args(hint))}
    if typing.get_origin(hint) is tuple:
        return {"type": int, "nargs": "*"}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint is int:
        return {"type": int if name in NON_NEGATIVE_INTS else positive_int}
    return {"type": hint}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (default: the preset value), choices from the fields' Literal types."""
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} ({cls.__name__})")
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name == "arch":
                continue
            options = _flag_options(field.name, hints[field.name])
            flag = "--" + field.name.replace("_", "-")
            group.add_argument(flag, dest=f"{section}.{field.name}", default=None, **options)


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    """A RunConfig from the model's defaults overridden by every flag that was given."""
    given: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in vars(args).items():
        section, _, name = key.partition(".")
        if name and section in SECTIONS and value is not None:
            given[section][name] = value
    model = denoiser_config(args.model, where="RunConfig.model", **given.pop("model"))
    return from_dict(RunConfig, {"model": model, **given})


def sampler_setting(args: argparse.Namespace) -> SamplerSetting | None:
    """The sampling that a command's flags ask for, checked: ``train``'s grid, ``sample``'s images, ``score``'s FD."""
    if args.command == "train":
        return SamplerSetting(args.sampler, args.sample_steps)
    if args.command == "sample":
        return SamplerSetting(args.sampler, args.steps, args.eta)
    if args.command == "score":
        return SamplerSetting(args.sampler, args.steps, args.eta, args.num_images)
    return None


def build_parser() -> argparse.ArgumentParser:
    """The ``train`` and ``sample`` sub-commands."""
    parser = OneLineParser(prog="python -m diffusion", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = commands.add_parser("train", help="train one denoiser and write its checkpoint and grid")
    train.add_argument("--model", required=True, choices=list(DENOISERS), help="denoiser architecture")
    train.add_argument("--lab", default=default_lab(), help="lab store root: a path or a URI (default $DIFFUSION_LAB, else ./lab)")
    train.add_argument("--name", default=None, help="model name in the lab store (default: the model)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between resume states")
    train.add_argument("--resume", action="store_true",
                       help="continue the run saved under --name (same flags: a state saved by another config is refused)")
    train.add_argument("--sampler", choices=list(SAMPLERS), default="ddim", help="sampler for the grid")
    train.add_argument("--sample-steps", type=positive_int, default=50, help="sampler steps for the grid")
    add_config_flags(train)

    sample = commands.add_parser("sample", help="draw a grid from an exported model")
    sample.add_argument("--lab", default=default_lab(), help="lab store root (default $DIFFUSION_LAB, else ./lab)")
    sample.add_argument("--name", required=True, help="exported model name")
    sample.add_argument("--out", required=True, help="PNG file to write")
    sample.add_argument("--num-images", type=positive_int, default=50)
    sample.add_argument("--sampler", choices=list(SAMPLERS), default="ddim")
    sample.add_argument("--steps", type=positive_int, default=None, help="default: T for ddpm, 50 for ddim")
    sample.add_argument("--eta", type=float, default=None,
                        help="sampler noise, 0 to 1 (default: the sampler's own, 1 for dpmpp2m_sde, 0 for ddim)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="auto")

    embedding = commands.add_parser("train-embedding", help="train the evaluation VAE or the classifier")
    embedding.add_argument("--kind", required=True, choices=list(EMBEDDING_TRAINING))
    embedding.add_argument("--lab", default=default_lab(), help="lab store root (default $DIFFUSION_LAB, else ./lab)")
    embedding.add_argument("--name", default=None, help="store name (default: the kind)")
    embedding.add_argument("--steps", type=positive_int, default=None, help="default: 1500 (vae), 600 (classifier)")
    embedding.add_argument("--dataset", choices=list(DATASETS), default="mnist-embedded")
    embedding.add_argument("--device", default="auto")

    score = commands.add_parser("score", help="FD (with floor and ratio) and KID of a stored denoiser")
    score.add_argument("--lab", default=default_lab(), help="lab store root (default $DIFFUSION_LAB, else ./lab)")
    score.add_argument("--name", required=True, help="exported denoiser name")
    score.add_argument("--num-images", type=positive_int, default=1000, help="N: samples scored (and floor size)")
    score.add_argument("--sampler", choices=list(SAMPLERS), default="ddim")
    score.add_argument("--steps", type=positive_int, default=None, help="default: T for ddpm, 50 for ddim")
    score.add_argument("--eta", type=float, default=None,
                        help="sampler noise, 0 to 1 (default: the sampler's own, 1 for dpmpp2m_sde, 0 for ddim)")
    score.add_argument("--seed", type=int, default=0)
    score.add_argument("--embeddings", nargs="+", choices=list(EMBEDDINGS), default=list(EMBEDDINGS))
    score.add_argument("--device", default="auto")

    robustness = commands.add_parser("robustness", help="corruption-robustness curves of every embedding")
    robustness.add_argument("--lab", default=default_lab(), help="lab store root (default $DIFFUSION_LAB, else ./lab)")
    robustness.add_argument("--n", type=positive_int, default=1000, help="images per set")
    robustness.add_argument("--seeds", type=positive_int, default=5, help="repeats per severity")
    robustness.add_argument("--embeddings", nargs="+", choices=list(EMBEDDINGS), default=list(EMBEDDINGS))
    robustness.add_argument("--dataset", choices=list(DATASETS), default="mnist-embedded")
    robustness.add_argument("--device", default="auto")

    data = commands.add_parser("data", help="copy a data set into the lab store, where every cluster node reads it")
    data.add_argument("--dataset", choices=list(DATASETS), required=True)
    data.add_argument("--lab", default=default_lab(), help="lab store root (default $DIFFUSION_LAB, else ./lab)")
    data.add_argument("--data-root", default=DataConfig().data_root, help="where a local copy is (torchvision's layout)")
    data.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                      help="download it when no local copy exists (default: yes; --no-download to forbid)")
    return parser


def data_command(store: LabStore, config: DataConfig) -> int:
    """Copy ``config.dataset`` into the lab store and print where, its sizes and checksum."""
    manifest = store_dataset(store, config)
    print(f"stored {config.dataset}: {manifest['train']} train and {manifest['test']} test images, "
          f"sha256 {manifest['sha256'][:16]}..., in {store.uri(store.dataset_path(config.dataset))}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)

    try:
        args.setting = sampler_setting(args)
        if args.command == "train":
            run = run_config_from_args(args)
            name = check_name(args.name or args.model, "--name")
            return train.train_command(run, LabStore(args.lab), name, pick_device(args.device), args)
        if args.command == "data":
            return data_command(LabStore(args.lab), DataConfig(args.dataset, args.data_root, args.download))
        command = {
            "sample": train.sample_command,
            "train-embedding": measure.train_embedding_command,
            "score": measure.score_command,
            "robustness": measure.robustness_command,
        }[args.command]
        return command(LabStore(args.lab), args, pick_device(args.device))
    except (ConfigError, ValueError, DatasetUnavailable, LabStoreError, CheckpointError) as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted at {time.strftime('%H:%M:%S')}; continue with --resume", file=sys.stderr)
        return 130

"""Samplers of one stored model side by side in one run: FD / floor (VAE, N images) and images/s on this machine.

    python bench/bench_samplers.py --lab LAB [--model unet] [--n 1000] [--batch 250] \
        [--settings ddpm-T ddim-20 ddim-50@1 dpmpp2m-20 diffusers-ddim-20 ...]

A setting is ``[diffusers-]SAMPLER-STEPS[@ETA]``: STEPS is a number or T (all levels), ETA the
noise (default: the sampler's own); ``diffusers-ddim`` is diffusers' DDIMScheduler driving the same network. The lab
needs the model and the VAE (``make run``, or the lab.tar that bench/quality_study.py writes).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from sampling import Scorer, Setting, sampler_rows  # bench/sampling.py, beside this script

from diffusion.core.config import ConfigError
from diffusion.core.device import pick_device
from diffusion.core.samplers import SAMPLERS, SamplerSetting
from diffusion.core.schedules import NoiseSchedule
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore

SETTING = re.compile(r"^(diffusers-)?([a-z0-9_]+)-(T|\d+)(?:@([0-9.]+))?$")
DEFAULT_SETTINGS = ["ddpm-T", "ddpm-100", "ddpm-50", "ddim-20", "ddim-50", "ddim-50@1", "dpmpp2m-20", "diffusers-ddim-20"]


def parse_setting(text: str) -> Setting:
    """``[diffusers-]SAMPLER-STEPS[@ETA]`` as a Setting, or a ConfigError saying what is accepted."""
    match = SETTING.match(text)
    if not match or match.group(2) not in SAMPLERS or (match.group(1) and match.group(2) != "ddim"):
        raise ConfigError(f"setting {text!r} is not accepted: use [diffusers-]SAMPLER-STEPS[@ETA] with SAMPLER one of "
                          f"{', '.join(SAMPLERS)} (diffusers: ddim only), STEPS a number or T, e.g. ddim-50@0.5")
    steps = None if match.group(3) == "T" else int(match.group(3))
    eta = float(match.group(4)) if match.group(4) else None  # None: the sampler's own
    return Setting(SamplerSetting(match.group(2), steps, eta), "diffusers" if match.group(1) else "ours")


def add_model_flags(parser: argparse.ArgumentParser, n: int) -> None:
    """--lab, --model, --n (default ``n``), --batch and --device, what ``score_settings`` reads."""
    parser.add_argument("--lab", required=True)
    parser.add_argument("--model", default="unet")
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--device", default="auto")


def score_settings(args: argparse.Namespace, settings: list[Setting]) -> list[dict[str, Any]]:
    """Load the stored model, print it and the floor, and return ``sampler_rows`` of ``settings`` on it."""
    device = pick_device(args.device)
    store = LabStore(args.lab)
    stored = ModelRegistry(store).load_denoiser(args.model, device)
    diffusion = stored.run.diffusion
    schedule = NoiseSchedule.from_config(diffusion).to(device)
    scorer = Scorer(store, args.n, device)
    print(f"# {args.model} ({diffusion.prediction}, {diffusion.schedule}, T = {diffusion.timesteps}) on {device}; "
          f"floor at N = {scorer.n}: {scorer.floor.mean:.3f} +- {scorer.floor.std:.3f}", flush=True)
    return sampler_rows(stored.model, schedule, diffusion.schedule, diffusion.prediction, settings, scorer, args.batch, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_flags(parser, 1000)
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS)
    args = parser.parse_args()
    rows = score_settings(args, [parse_setting(s) for s in args.settings])
    print("| setting | network evaluations | FD | FD / floor | images/s |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['steps']} | {row['fd']:.3f} | {row['ratio']:.2f} | {row['images_per_s']:,.1f} |")


if __name__ == "__main__":
    main()

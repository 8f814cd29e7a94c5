"""Speed of the five denoisers and of diffusers' UNet2DModel on this machine, side by side in one run.

For each network: training images/s at batch 128 through our training loop (AdamW, clipping,
EMA, the same loss), fp32 and bf16 autocast; sampling network evaluations per second (images x
steps / s) through our DDIM loop at batch 250. The diffusers rows (the ``bench`` extra) are
UNet2DModel in the configuration commonly used for 28x28 digits: block_out_channels
(32, 64, 64), attention at the two lower levels, 2 or 1 layers per block.

    python bench/bench_denoisers.py [--batch 128] [--sample-batch 250] [--seconds 8] [--no-diffusers]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch import nn

from diffusion.core.config import DiffusionConfig, TrainConfig
from diffusion.core.device import pick_device
from diffusion.core.losses import diffusion_loss
from diffusion.core.models import DENOISERS, build_denoiser, denoiser_config, parameter_count
from diffusion.core.samplers import SamplerSetting, sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.core.training import Trainer, accelerated_network
from diffusion.lab.datasets import load_embedded_mnist


def train_rate(build: Callable[[], nn.Module], precision: str, batch: int, seconds: float, data: torch.Tensor,
               device: torch.device, variant: Callable[[Trainer], None] | None = None) -> float:
    """Training images/s after two warm-up steps (``variant`` may change the trainer first), over about ``seconds``."""
    schedule = NoiseSchedule.from_config(DiffusionConfig()).to(device)
    trainer = Trainer(build(), diffusion_loss(schedule), data, TrainConfig(steps=10_000, batch_size=batch, precision=precision), device)
    if variant is not None:
        variant(trainer)
    for _ in range(2):
        trainer.train_step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < 3:
        trainer.train_step().item()
        steps += 1
    return steps * batch / (time.perf_counter() - start)


def sample_rate(build: Callable[[], nn.Module], precision: str, batch: int, device: torch.device) -> float:
    """Network evaluations of one image per second through 10 DDIM steps."""
    model = build().to(device)
    schedule = NoiseSchedule.from_config(DiffusionConfig()).to(device)
    sample(model, schedule, batch, SamplerSetting("ddim", 2), precision=precision, batch_size=batch)  # warm-up
    start = time.perf_counter()
    sample(model, schedule, batch, SamplerSetting("ddim", 10), precision=precision, batch_size=batch)
    return 10 * batch / (time.perf_counter() - start)


def diffusers_unet(layers_per_block: int) -> nn.Module:
    """diffusers' UNet2DModel behind our denoiser interface, with the image shape our samplers read."""
    from reference import DiffusersUNet  # bench/reference.py, beside this script

    model = DiffusersUNet(layers_per_block)
    model.config = SimpleNamespace(image_channels=1, image_size=28)
    return model


def loop_adamw(trainer: Trainer) -> None:
    """The optimiser as it was before the speed work: AdamW looping over the parameters."""
    trainer.optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=trainer.config.lr, fused=False, foreach=False)


def channels_last(trainer: Trainer) -> None:
    """Weights and activations in NHWC."""
    trainer.model.to(memory_format=torch.channels_last)


def compiled(trainer: Trainer) -> None:
    """The loop's own ``torch_compile`` setting (its compile time is spent in the warm-up steps)."""
    trainer.network = accelerated_network(trainer.model, "torch_compile", trainer.device, trainer.precision)


SPEED_VARIANTS: dict[str, Callable[[Trainer], None] | None] = {
    "AdamW looping over parameters (before)": loop_adamw,
    "fused AdamW (the default now)": None,
    "fused AdamW + channels_last": channels_last,
    "fused AdamW + torch.compile": compiled,
}


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (the machine type elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--sample-batch", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-diffusers", action="store_true", help="skip the diffusers rows")
    parser.add_argument("--no-variants", action="store_true", help="skip the unet speed-work table")
    args = parser.parse_args()
    device = pick_device(args.device)
    data = load_embedded_mnist("train").images
    networks: dict[str, Callable[[], nn.Module]] = {f"`{arch}`": (lambda a=arch: build_denoiser(denoiser_config(a))) for arch in DENOISERS}
    if not args.no_diffusers:
        networks["diffusers UNet2DModel, 2 layers/block"] = lambda: diffusers_unet(2)
        networks["diffusers UNet2DModel, 1 layer/block"] = lambda: diffusers_unet(1)
    print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {device}")
    print(f"# training batch {args.batch}; sampling batch {args.sample_batch}, DDIM")
    header = ["network", "parameters", "train fp32 img/s", "train bf16 img/s", "bf16 speed-up",
              "sample fp32 evals/s", "sample bf16 evals/s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, build in networks.items():
        fp32 = train_rate(build, "fp32", args.batch, args.seconds, data, device)
        bf16 = train_rate(build, "bf16", args.batch, args.seconds, data, device)
        s32 = sample_rate(build, "fp32", args.sample_batch, device)
        s16 = sample_rate(build, "bf16", args.sample_batch, device)
        print(f"| {name} | {parameter_count(build()):,} | {fp32:,.0f} | {bf16:,.0f} | {bf16 / fp32:.2f}x | {s32:,.0f} | {s16:,.0f} |",
              flush=True)
    if args.no_variants:
        return
    print("\n# the unet's training loop, bf16: what each change does (torch.compile's compile time is not counted)")
    print("| training loop | train bf16 img/s | vs before |\n|---|---|---|")
    unet = networks["`unet`"]
    before = None
    for name, variant in SPEED_VARIANTS.items():
        rate = train_rate(unet, "bf16", args.batch, args.seconds, data, device, variant)
        before = before or rate
        print(f"| {name} | {rate:,.0f} | {rate / before:.2f}x |", flush=True)


if __name__ == "__main__":
    main()

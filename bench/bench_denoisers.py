"""Speed of the five denoisers on this machine, side by side in one run.

For each registered denoiser at its default size: training images/s at batch 128 through the
real training loop (fp32 and bf16 autocast), and sampling network evaluations per second
(image-evaluations: batch x steps / s) through the real DDIM generator at batch 250.

    python bench/bench_denoisers.py [--batch 128] [--sample-batch 250] [--seconds 8]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from diffusion.config import DiffusionConfig, RunConfig, TrainConfig
from diffusion.data import load_embedded_mnist
from diffusion.device import pick_device
from diffusion.models import DENOISERS, denoiser_config, parameter_count
from diffusion.recipe import build_denoiser_run
from diffusion.samplers import sample


def train_rate(arch: str, precision: str, batch: int, seconds: float, data: torch.Tensor, device: torch.device) -> float:
    """Training images/s after two warm-up steps, measured over about ``seconds``."""
    run = RunConfig(model=denoiser_config(arch), diffusion=DiffusionConfig(),
                    train=TrainConfig(steps=10_000, batch_size=batch, precision=precision))
    trainer = build_denoiser_run(run, device, data).trainer
    for _ in range(2):
        trainer.train_step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < 3:
        trainer.train_step().item()
        steps += 1
    return steps * batch / (time.perf_counter() - start)


def sample_rate(arch: str, precision: str, batch: int, device: torch.device) -> float:
    """Network evaluations of one image per second through 10 DDIM steps."""
    run = RunConfig(model=denoiser_config(arch))
    job = build_denoiser_run(run, device, torch.zeros(1, 1, 28, 28))
    model, schedule = job.ema_model, job.schedule
    sample(model, schedule, batch, steps=2, precision=precision, batch_size=batch)  # warm-up
    start = time.perf_counter()
    sample(model, schedule, batch, steps=10, precision=precision, batch_size=batch)
    return 10 * batch / (time.perf_counter() - start)


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
    args = parser.parse_args()
    device = pick_device(args.device)
    data = load_embedded_mnist("train").images
    print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {device}")
    print(f"# training batch {args.batch}; sampling batch {args.sample_batch}, DDIM")
    header = ["model", "parameters", "train fp32 img/s", "train bf16 img/s", "bf16 speed-up",
              "sample fp32 evals/s", "sample bf16 evals/s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for arch in DENOISERS:
        params = parameter_count(build_denoiser_run(RunConfig(model=denoiser_config(arch)), device, data[:1]).trainer.model)
        fp32 = train_rate(arch, "fp32", args.batch, args.seconds, data, device)
        bf16 = train_rate(arch, "bf16", args.batch, args.seconds, data, device)
        s32 = sample_rate(arch, "fp32", args.sample_batch, device)
        s16 = sample_rate(arch, "bf16", args.sample_batch, device)
        print(f"| `{arch}` | {params:,} | {fp32:,.0f} | {bf16:,.0f} | {bf16 / fp32:.2f}x | {s32:,.0f} | {s16:,.0f} |", flush=True)


if __name__ == "__main__":
    main()

"""Speed of the training loop itself (``Trainer.fit``), eager against CUDA graphs and compiled, side by side in one run.

Trains the ``unet`` (README sizes, v prediction, cosine schedule, min-SNR) at batch 128 through
the loop the trials use, with callbacks every 100 steps as a trial reports, and prints images/s
and the mean loss of the last window for each ``compile`` setting: equal losses within noise
mean the compiled loop trains the same model.

    python bench/bench_training_loop.py [--device cuda] [--steps 600] [--warmup 100] [--modes off cuda_graphs torch_compile]

Over a whole quick-preset trial on the CPU (compilation counted):
``--batch 64 --warmup 1 --steps 1499 --modes off torch_compile``.

An older checkout's loop, for a before/after on one machine (eager only):
``git worktree add /tmp/old REV && PYTHONPATH=/tmp/old python bench/bench_training_loop.py``.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from diffusion.core.config import DiffusionConfig, RunConfig, TrainConfig
from diffusion.core.device import pick_device
from diffusion.core.models import denoiser_config
from diffusion.lab.datasets import load_embedded_mnist
from diffusion.lab.recipe import build_denoiser_run

try:
    from diffusion.core.config import COMPILE_MODES
except ImportError:  # an older checkout on PYTHONPATH (before the setting existed): eager only
    COMPILE_MODES = ("off",)


def loop_rate(device: torch.device, mode: str, steps: int, warmup: int, batch: int) -> tuple[float, float, float]:
    """(training images/s over ``steps`` after ``warmup`` steps, mean loss of the last 100 steps, seconds of the whole
    run: the warm-up with its compilation or graph capture, then the timed steps)."""
    extra = {"compile": mode} if "compile" in TrainConfig.__dataclass_fields__ else {}
    train = TrainConfig(steps=warmup + steps, batch_size=batch, lr=2e-3, warmup_steps=50, ema_decay=0.995, **extra)
    run = RunConfig(model=denoiser_config("unet"), train=train,
                    diffusion=DiffusionConfig(schedule="cosine", prediction="v", loss_weighting="min_snr"))
    job = build_denoiser_run(run, device, load_embedded_mnist("train").images)
    began = time.perf_counter()
    job.trainer.fit(until=warmup, every=100)  # compilation and graph capture happen here
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    progress = job.trainer.fit(every=100)
    end = time.perf_counter()
    return steps * batch / (end - start), progress.loss, end - began


def main() -> None:
    """Print one row per compile setting, and the ratio to the first."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--modes", nargs="+", default=None, choices=list(COMPILE_MODES),
                        help="default: off and cuda_graphs on CUDA, off alone on the CPU")
    args = parser.parse_args()
    device = pick_device(args.device)
    modes = args.modes or (["off", "cuda_graphs"] if device.type == "cuda" else ["off"])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"unet training loop, batch {args.batch}, {args.steps} timed steps after {args.warmup}, on {where}")
    print("| compile | img/s | x first | whole run s (warm-up and compilation included) | x first | loss (last 100 steps) |"
          "\n|---|---|---|---|---|---|")
    first = first_whole = None
    for mode in modes:
        rate, loss, whole = loop_rate(device, mode, args.steps, args.warmup, args.batch)
        first, first_whole = first or rate, first_whole or whole
        print(f"| {mode} | {rate:,.0f} | {rate / first:.2f} | {whole:.0f} | {first_whole / whole:.2f} | {loss:.4f} |",
              flush=True)


if __name__ == "__main__":
    main()

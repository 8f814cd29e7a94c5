"""CPU levers for the sweep's trials, side by side in one run: threads per trial, two 1-thread trials at once, sizes.

For each network (and size) it trains through the trials' own loop (``Trainer.fit``, the quick
recipe: v prediction, cosine schedule, min-SNR, bf16 autocast where the CPU has it) and prints
the images/s of one 2-thread trial, of one 1-thread trial, and of two 1-thread trials running at
the same time (their sum): the last over the first is what running trials side by side on one
core each gains over one trial on both cores.

    python bench/bench_cpu_levers.py [--archs unet resunet ...] [--steps 20] [--warmup 4] [--batch 64] [--size resunet:24:1 ...]

The quick preset's sizes: ``--archs mlp unet --size cnn:32:6 resunet:24:1 attnunet:24:1``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

ARCHS = ("mlp", "cnn", "unet", "resunet", "attnunet")


def one_rate(arch: str, width: int | None, depth: int | None, threads: int, steps: int, warmup: int,
             channels_last: bool, batch: int = 64) -> float:
    """Training images/s of one network in this process, on ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    from diffusion.core.config import DiffusionConfig, RunConfig, TrainConfig
    from diffusion.core.models import denoiser_config
    from diffusion.lab.datasets import load_embedded_mnist
    from diffusion.lab.recipe import build_denoiser_run

    sizes = {k: v for k, v in (("width", width), ("depth", depth)) if v}
    run = RunConfig(model=denoiser_config(arch, **sizes), train=TrainConfig(steps=warmup + steps, batch_size=batch, warmup_steps=2),
                    diffusion=DiffusionConfig(schedule="cosine", prediction="v", loss_weighting="min_snr"))
    job = build_denoiser_run(run, torch.device("cpu"), load_embedded_mnist("train").images)
    if channels_last:
        job.trainer.model.to(memory_format=torch.channels_last)
    job.trainer.fit(until=warmup, every=warmup)
    start = time.perf_counter()
    job.trainer.fit(every=steps)
    return steps * run.train.batch_size / (time.perf_counter() - start)


def in_subprocesses(spec: dict, copies: int) -> list[float]:
    """``copies`` processes measuring ``spec`` at the same time; their rates."""
    command = [sys.executable, __file__, "--child", json.dumps(spec)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    """One table row per network: 2 threads, 1 thread, two 1-thread trials at once."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--size", nargs="*", default=[], help="extra rows ARCH:WIDTH:DEPTH")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64, help="images per step (the quick preset's: 64)")
    parser.add_argument("--channels-last", action="store_true", help="also time 2 threads with channels_last")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(one_rate(**json.loads(args.child)))
        return
    rows = [(arch, None, None) for arch in args.archs]
    rows += [(a, int(w), int(d)) for a, w, d in (s.split(":") for s in args.size)]
    extra = " | 2 threads, channels_last" if args.channels_last else ""
    print(f"| network | 2 threads img/s | 1 thread img/s | two 1-thread trials, sum img/s | two x1 / one x2{extra} |")
    print("|---|---|---|---|---|" + ("---|" if extra else ""))
    for arch, width, depth in rows:
        base = {"arch": arch, "width": width, "depth": depth, "steps": args.steps, "warmup": args.warmup,
                "channels_last": False, "batch": args.batch}
        two = in_subprocesses(base | {"threads": 2}, 1)[0]
        one = in_subprocesses(base | {"threads": 1}, 1)[0]
        pair = sum(in_subprocesses(base | {"threads": 1}, 2))
        cells = [f"{two:,.0f}", f"{one:,.0f}", f"{pair:,.0f}", f"{pair / two:.2f}x"]
        if extra:
            cells.append(f"{in_subprocesses(base | {'threads': 2, 'channels_last': True}, 1)[0]:,.0f}")
        name = arch + (f" (width {width}, depth {depth})" if width else "")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

"""HTTP sampling through Ray Serve against in-process batched sampling of the same images, in one run.

Starts ``python -m serve`` (one replica with all of this machine's cores) on a free port over a lab store, then for 1, 8 and 32
concurrent clients sends ``--requests`` POST /sample requests of ``--images`` images each
(DDIM, ``--steps`` steps, distinct seeds) and reports images/s and the latency p50 / p95.
The reference samples the same total number of images in-process with
``diffusion.core.samplers.sample`` at the server's largest batch (256 images).

    python bench/bench_serve.py --lab lab [--model unet] [--images 4] [--steps 20] [--requests 96]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from diffusion.core.samplers import sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.network import free_port
from serve.launch import running_server

SERVER_BATCH = 256


def post(url: str, body: dict) -> float:
    """Seconds one POST took (raises on a non-200)."""
    data = json.dumps(body).encode()
    start = time.perf_counter()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    return time.perf_counter() - start


def http_run(base: str, model: str, clients: int, requests: int, images: int, steps: int) -> dict[str, float]:
    """Images/s and latency percentiles of ``requests`` requests from ``clients`` threads."""
    bodies = [{"model": model, "num_images": images, "steps": steps, "seed": i} for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = sorted(pool.map(lambda body: post(base + "/sample", body), bodies))
    seconds = time.perf_counter() - start
    return {"images_per_s": requests * images / seconds, "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))]}


def in_process_rate(store: LabStore, model: str, total: int, steps: int) -> float:
    """Images/s of ``total`` images sampled in-process in batches of the server's largest batch."""
    stored = ModelRegistry(store).load_denoiser(model)
    schedule = NoiseSchedule.from_config(stored.run.diffusion)
    sample(stored.model, schedule, 8, steps=2)  # warm-up
    start = time.perf_counter()
    sample(stored.model, schedule, total, steps=steps, batch_size=SERVER_BATCH)
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", default="lab")
    parser.add_argument("--model", default="unet")
    parser.add_argument("--images", type=int, default=4, help="images per request")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    args = parser.parse_args()
    store = LabStore(args.lab)
    torch.set_num_threads(os.cpu_count() or 1)
    reference = in_process_rate(store, args.model, args.requests * args.images, args.steps)

    ray_tmp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    server_args = ["--max-replicas", "1", "--num-cpus", str(os.cpu_count() or 1)]
    try:
        with running_server(Path(args.lab).resolve(), free_port(), server_args, {"TMPDIR": ray_tmp, "RAY_ADDRESS": ""}) as base:
            http_run(base, args.model, 4, 8, args.images, args.steps)  # warm-up
            print(f"model {args.model}, {args.images} images per request, DDIM {args.steps} steps, {args.requests} requests per row\n")
            print("| clients | HTTP images/s | p50 latency ms | p95 latency ms | in-process images/s | HTTP / in-process |")
            print("|---|---|---|---|---|---|")
            for clients in (1, 8, 32):
                row = http_run(base, args.model, clients, args.requests, args.images, args.steps)
                print(f"| {clients} | {row['images_per_s']:.1f} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | "
                      f"{reference:.1f} | {row['images_per_s'] / reference:.2f} |", flush=True)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

if __name__ == "__main__":
    main()

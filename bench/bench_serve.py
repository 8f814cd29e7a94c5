"""HTTP sampling through Ray Serve against in-process sampling of the same images on the same cores, in one run.

Starts ``python -m serve`` over a lab store on a free port (``--replicas`` replicas of
``--num-cpus`` CPUs and ``--num-gpus`` GPU each), then for each ``--clients`` level sends
``--requests`` POST /sample requests (distinct seeds; the shapes of ``--mix``, in turn) from
that many client threads on kept-alive connections. Each row reports images/s, latency p50 /
p95, the requests and images per sampling loop (from the replica's /healthz; with several
replicas, "-"), and the ratio to in-process sampling of the same images at batch 256 with
``diffusion.core.samplers.sample``, on the replicas' cores with as many threads.

Cores: the replicas are pinned to the last ``replicas x num_cpus`` cores and the in-process
reference runs there too, with as many threads; the load generator, Serve's proxy and
controller and Ray's own processes are pinned to the other cores. When no core is left over,
the table says the cores are shared.

    python bench/bench_serve.py --lab lab [--model unet] [--mix 4x20] [--clients 1,8,32,64] [--requests 256]
        [--replicas 1] [--num-cpus 1] [--num-gpus 0]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from diffusion.core.samplers import SamplerSetting, sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.network import free_port
from serve.launch import running_server, session_pids

REFERENCE_BATCH = 256  # the server's largest loop (serve.schemas.MAX_IMAGES)
LOOP_COUNTERS = ("sampling_loops", "requests_sampled", "images_sampled")  # /healthz counters of the replica that answers


@dataclass(frozen=True)
class Shape:
    """One kind of request: images per request and DDIM steps."""

    images: int
    steps: int


def parse_mix(text: str) -> list[Shape]:
    """``"4x20,16x20,1x50"`` -> shapes (images x steps); requests take them in turn."""
    shapes = []
    for part in text.split(","):
        try:
            images, steps = (int(x) for x in part.lower().split("x"))
        except ValueError:
            raise SystemExit(f"bench_serve: --mix takes IMAGESxSTEPS[,IMAGESxSTEPS...], e.g. 4x20,16x50; got {part!r}") from None
        shapes.append(Shape(images, steps))
    return shapes


class Client:
    """One load-generator thread's kept-alive connection to the server."""

    local = threading.local()

    @classmethod
    def post(cls, host: str, port: int, body: dict) -> float:
        """Seconds one POST /sample took (raises on a non-200)."""
        connection = getattr(cls.local, "connection", None)
        if connection is None:
            connection = cls.local.connection = http.client.HTTPConnection(host, port, timeout=600)
        data = json.dumps(body).encode()
        start = time.perf_counter()
        connection.request("POST", "/sample", body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return time.perf_counter() - start


def healthz(host: str, port: int) -> dict:
    """One replica's /healthz."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("GET", "/healthz")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def http_run(host: str, port: int, clients: int, bodies: list[dict]) -> dict[str, float]:
    """Images/s and latency percentiles of ``bodies`` sent by ``clients`` threads."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = sorted(pool.map(lambda body: Client.post(host, port, body), bodies))
    seconds = time.perf_counter() - start
    images = sum(body["num_images"] for body in bodies)
    return {"images_per_s": images / seconds, "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))]}


def request_bodies(model: str, shapes: list[Shape], count: int, first_seed: int) -> list[dict]:
    """``count`` /sample bodies with distinct seeds, the shapes in turn."""
    return [{"model": model, "num_images": shapes[i % len(shapes)].images, "steps": shapes[i % len(shapes)].steps,
             "sampler": "ddim", "seed": first_seed + i} for i in range(count)]


def in_process_rate(store: LabStore, model: str, bodies: list[dict], device: torch.device) -> float:
    """Images/s of the same images sampled in-process, each shape's images in batches of ``REFERENCE_BATCH``."""
    stored = ModelRegistry(store).load_denoiser(model)
    network = stored.model.to(device)
    schedule = NoiseSchedule.from_config(stored.run.diffusion).to(device)
    sample(network, schedule, 8, SamplerSetting("ddim", 2))  # warm-up
    per_steps: dict[int, int] = {}
    for body in bodies:
        per_steps[body["steps"]] = per_steps.get(body["steps"], 0) + body["num_images"]
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for steps, images in per_steps.items():
        sample(network, schedule, images, SamplerSetting("ddim", steps), batch_size=REFERENCE_BATCH)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sum(per_steps.values()) / (time.perf_counter() - start)


def pin(process: psutil.Process, cores: list[int]) -> None:
    """Every thread of ``process`` on ``cores`` (Linux sets affinity per thread; new threads inherit it)."""
    try:
        for thread in process.threads():
            try:
                os.sched_setaffinity(thread.id, cores)
            except (ProcessLookupError, PermissionError):
                continue
    except psutil.NoSuchProcess:
        return


def pin_server(root_pid: int, replica_cores: list[int], other_cores: list[int]) -> int:
    """Serve replicas on ``replica_cores``, the rest of the server's session on ``other_cores``; how many replicas."""
    replicas = 0
    for pid in session_pids(root_pid):  # the server started its session: its Ray and Serve's actors are in it
        try:
            process = psutil.Process(pid)
            is_replica = "ServeReplica" in " ".join(process.cmdline())
        except psutil.NoSuchProcess:
            continue
        replicas += is_replica
        pin(process, replica_cores if is_replica else other_cores)
    return replicas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", default="lab")
    parser.add_argument("--model", default="unet")
    parser.add_argument("--mix", default="4x20", help="request shapes IMAGESxSTEPS, comma-separated, taken in turn")
    parser.add_argument("--clients", default="1,8,32,64", help="concurrency levels, comma-separated")
    parser.add_argument("--requests", type=int, default=256, help="requests per concurrency level")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--num-cpus", type=float, default=None, help="CPUs per replica (default: half the cores on a CPU)")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPU share per replica (0: sample on the CPU)")
    args = parser.parse_args()
    shapes, levels = parse_mix(args.mix), [int(c) for c in args.clients.split(",")]
    cores = sorted(os.sched_getaffinity(0))
    cpus = args.num_cpus or max(1, len(cores) // 2)
    replica_cores = cores[-args.replicas * max(1, int(cpus)):]
    other_cores = [c for c in cores if c not in replica_cores]
    pinned = bool(other_cores)
    device = torch.device("cuda" if args.num_gpus > 0 else "cpu")
    store = LabStore(args.lab)

    if pinned:
        os.sched_setaffinity(0, replica_cores)
    torch.set_num_threads(len(replica_cores))  # the reference gets the cores and threads all replicas together have
    reference = in_process_rate(store, args.model, request_bodies(args.model, shapes, args.requests, 0), device)
    if pinned:
        os.sched_setaffinity(0, other_cores)

    ray_tmp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    server_args = ["--min-replicas", str(args.replicas), "--max-replicas", str(args.replicas), "--num-cpus", str(cpus),
                   "--num-gpus", str(args.num_gpus), "--max-queued", str(max(levels) + 16)]
    port = free_port()
    try:
        with running_server(Path(args.lab).resolve(), port, server_args, {"TMPDIR": ray_tmp, "RAY_ADDRESS": ""}) as base:
            host = base.split("//")[1].split(":")[0]
            root = next(p for p in psutil.Process().children() if "serve" in " ".join(p.cmdline()))
            http_run(host, port, 4, request_bodies(args.model, shapes, 16, 10**6))  # warm-up
            where = (f"replicas pinned to cores {replica_cores}; load generator, proxy and Ray on {other_cores}" if pinned
                     else f"cores shared ({len(cores)} cores; no spare core to pin the load generator)")
            print(f"model {args.model}; request shapes {args.mix} (images x DDIM steps); {args.requests} requests per row; "
                  f"{args.replicas} replica(s) x {cpus:g} CPU, {args.num_gpus:g} GPU; {where}\n")
            print("| clients | HTTP images/s | p50 ms | p95 ms | requests / loop | images / loop | "
                  "in-process images/s (batch 256) | HTTP / in-process |")
            print("|---|---|---|---|---|---|---|---|")
            for clients in levels:
                if pinned:
                    pin_server(root.pid, replica_cores, other_cores)
                before = healthz(host, port)
                row = http_run(host, port, clients, request_bodies(args.model, shapes, args.requests, clients * 10**4))
                after = healthz(host, port)
                done = {key: after.get(key, 0) - before.get(key, 0) for key in LOOP_COUNTERS}
                loops = max(1, done["sampling_loops"])
                per_loop = (f"{done['requests_sampled'] / loops:.1f}", f"{done['images_sampled'] / loops:.0f}")
                if args.replicas > 1:  # /healthz answers from one replica or another: its counters cannot be diffed
                    per_loop = ("-", "-")
                print(f"| {clients} | {row['images_per_s']:.1f} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | "
                      f"{per_loop[0]} | {per_loop[1]} | {reference:.1f} | {row['images_per_s'] / reference:.2f} |",
                      flush=True)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""``python -m serve [--lab PATH|URI] [--host 127.0.0.1] [--port 8000] [--max-work N] ...``: start Serve on a chosen address and host the lab store.

``serve run`` has no host or port flags; this does the same with them. It joins the cluster in
RAY_ADDRESS, else starts Ray in local mode, and serves until interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import ray
from ray import serve

from diffusion.lab.store import default_lab
from serve.app import Limits, build_app

APP_NAME = "diffusion"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: serve until interrupted; 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m serve", description=__doc__.split("\n")[0])
    parser.add_argument("--lab", default=default_lab(), help="lab store root: a path or a URI (default $DIFFUSION_LAB, else ./lab)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it: see the README)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica (its torch threads)")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPU share per replica")
    parser.add_argument("--min-replicas", type=int, default=1)
    parser.add_argument("--max-replicas", type=int, default=4)
    parser.add_argument("--max-work", type=int, default=Limits.max_work,
                        help="most images (or paths) x steps one request may ask for; more is a 422 (default %(default)s)")
    parser.add_argument("--max-queued", type=int, default=Limits.max_queued,
                        help="sampling requests waiting or running per replica; more get 503 with Retry-After (default %(default)s)")
    parser.add_argument("--deadline-s", type=float, default=Limits.deadline_s,
                        help="seconds a request may take; later it gets 504 and its sampling stops (default %(default)s)")
    parser.add_argument("--loop-images", type=int, default=Limits.loop_images,
                        help="most images one sampling loop combines (default 0: 256 on a GPU, 64 on a CPU)")
    parser.add_argument("--refresh-s", type=float, default=Limits.refresh_s,
                        help="how often a replica re-reads a model's card to pick up a re-export (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        app = build_app({"lab": args.lab, "num_cpus": args.num_cpus, "num_gpus": args.num_gpus, "min_replicas": args.min_replicas,
                         "max_replicas": args.max_replicas, "max_work": args.max_work, "max_queued": args.max_queued,
                         "deadline_s": args.deadline_s, "refresh_s": args.refresh_s,
                         "loop_images": args.loop_images})
    except ValueError as error:
        print(f"python -m serve: error: {error}", file=sys.stderr)
        return 2
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray._private.ray_constants.ENABLE_RAY_CLUSTER = False  # keeps the node IP 127.0.0.1: servers bind the loopback
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(app, name=APP_NAME, route_prefix="/")
    print(f"serving {args.lab} at http://{args.host}:{args.port} (OpenAPI: /docs)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

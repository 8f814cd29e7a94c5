"""Join the Ray cluster a job was submitted to, or start Ray in local mode on this machine."""

from __future__ import annotations

import os

import ray


def start_ray() -> None:
    """Join the cluster in RAY_ADDRESS (set by ``ray job submit``), else start Ray in local mode."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=True)

"""Join the Ray cluster a job was submitted to, or start Ray in local mode on this machine; the device Ray gave a task."""

from __future__ import annotations

import os

import ray
import torch
from ray._private import ray_constants

from diffusion.core.device import assigned_device


def start_ray() -> None:
    """Join the cluster in RAY_ADDRESS (set by ``ray job submit``), else start Ray in local mode on the loopback.

    On Linux, Ray replaces a node IP of 127.0.0.1 by the machine's address and its servers listen
    on every interface; with ENABLE_RAY_CLUSTER off (Ray's own setting on macOS and Windows) the
    node IP stays 127.0.0.1 and every server (GCS, raylet, workers, agents, metrics) binds it.
    """
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
    else:
        ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time by ray.init's node-IP lookup
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=True)


def task_device() -> torch.device:
    """The device of the calling Ray task or trial: the GPU Ray assigned it, else the CPU (``assigned_device``)."""
    return assigned_device(ray.get_gpu_ids())

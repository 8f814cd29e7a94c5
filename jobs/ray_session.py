"""Join the Ray cluster a job was submitted to, or start Ray in local mode on this machine; the device Ray gave a task."""

from __future__ import annotations

import os

import ray
import torch

from diffusion.device import assigned_device


def start_ray() -> None:
    """Join the cluster in RAY_ADDRESS (set by ``ray job submit``), else start Ray in local mode."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=True)


def task_device() -> torch.device:
    """The device of the calling Ray task or trial: the GPU Ray assigned it, else the CPU (``assigned_device``)."""
    return assigned_device(ray.get_gpu_ids())

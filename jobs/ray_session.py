"""Join the Ray cluster a job was submitted to, or start Ray in local mode on this machine; the device Ray gave a task."""

from __future__ import annotations

import logging
import os

import ray
import torch
from ray._private import ray_constants

from diffusion.core.device import assigned_device


def start_ray() -> None:
    """Join the cluster in RAY_ADDRESS (set by ``ray job submit``), else start Ray in local mode on the loopback.

    Either way the workers' output (prints, Ray's own logging in tasks and trials) stays in Ray's
    session logs instead of reaching this driver's stdout (``log_to_driver=False``): the console
    gets the jobs' own lines (``jobs.console``), and the job's log names the session's log folder.

    On Linux, Ray replaces a node IP of 127.0.0.1 by the machine's address and its servers listen
    on every interface; with ENABLE_RAY_CLUSTER off (Ray's own setting on macOS and Windows) the
    node IP stays 127.0.0.1 and every server (GCS, raylet, workers, agents, metrics) binds it.
    """
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        context = ray.init(log_to_driver=False)
    else:
        ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time by ray.init's node-IP lookup
        context = ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    logging.getLogger(__name__).info("workers' output: <session>/logs on each node; this node's: %s/logs",
                                     context.address_info.get("session_dir"))


def task_device() -> torch.device:
    """The device of the calling Ray task or trial: the GPU Ray assigned it, else the CPU (``assigned_device``)."""
    return assigned_device(ray.get_gpu_ids())

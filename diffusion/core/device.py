"""Device choice and mixed precision: CUDA when present, bf16 autocast where the hardware has it."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from diffusion.core.config import PRECISIONS, ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` are taken as given.

    For standalone runs only: work that Ray placed takes ``assigned_device`` instead.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {name!r}; accepted: auto, cpu, cuda, cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here; use auto or cpu")
    return device


def assigned_device(gpu_ids: Sequence[int | str], visible_devices: str | None = None) -> torch.device:
    """The device of work that a scheduler (Ray) placed: its first assigned GPU, else the CPU.

    The one rule for every trial, task and replica. Work that reserved no GPU computes on the
    CPU even where CUDA is visible (Ray 2.60 no longer hides the GPUs from it); work that
    reserved a logical GPU on a machine without CUDA (``ray.init(num_gpus=1)`` on a laptop)
    computes on the CPU too. Ray masks CUDA_VISIBLE_DEVICES to the assigned ids, so the id's
    position in that list (``visible_devices``, default the environment's) is its CUDA index.
    """
    if not gpu_ids or not torch.cuda.is_available():
        return torch.device("cpu")
    first = str(gpu_ids[0])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "") if visible_devices is None else visible_devices
    listed = [v.strip() for v in visible.split(",") if v.strip()]
    if first in listed:
        return torch.device("cuda", listed.index(first))
    return torch.device("cuda", int(first) if first.isdigit() and not listed else 0)


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast (not just emulated) on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` becomes ``bf16`` where supported, else ``fp32``; explicit values are checked."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast on ``device`` when ``precision`` resolves to bf16; a no-op for fp32."""
    enabled = resolve_precision(precision, device) == "bf16"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
        yield


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under a fixed global torch seed, restoring the previous RNG state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield

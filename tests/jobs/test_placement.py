"""Every Ray task computes where Ray placed it: its assigned GPU, else the CPU, even where CUDA is visible.

A CPU machine stands in for a GPU node: ``ray.init(num_gpus=1)`` gives a logical GPU that Ray
schedules like a real one, and CUDA's visibility is faked inside the task.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest
import ray
import torch

from jobs.ray_session import task_device

pytestmark = pytest.mark.slow  # starts Ray with logical GPUs


@pytest.fixture(scope="module")
def ray_with_a_logical_gpu() -> Iterator[None]:
    temp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, _temp_dir=temp)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@ray.remote(max_calls=1)  # a fresh worker per call: the faked visibility must not leak into the next test
def where_it_computes(fake_cuda_visible: bool) -> tuple[list, str, str]:
    """(Ray's GPU ids, the task's device, the device a tensor op ran on)."""
    if fake_cuda_visible:  # what a task on a GPU node sees: Ray 2.60 leaves CUDA visible to every task
        torch.cuda.is_available = lambda: True
    device = task_device()
    if device.type == "cpu":
        result = torch.ones(4, 4, device=device) @ torch.ones(4, 4, device=device)
        return ray.get_gpu_ids(), str(device), str(result.device)
    return ray.get_gpu_ids(), str(device), "not run (CUDA is faked)"


def test_a_task_without_gpus_computes_on_the_cpu_where_cuda_is_visible(ray_with_a_logical_gpu: None) -> None:
    gpu_ids, device, computed_on = ray.get(where_it_computes.options(num_cpus=1, num_gpus=0).remote(True))
    assert gpu_ids == [] and device == "cpu" and computed_on == "cpu"


def test_a_task_with_a_gpu_share_takes_the_gpu_ray_assigned(ray_with_a_logical_gpu: None) -> None:
    gpu_ids, device, _ = ray.get(where_it_computes.options(num_cpus=1, num_gpus=0.25).remote(True))
    assert [str(i) for i in gpu_ids] == ["0"] and device == "cuda:0"


def test_a_logical_gpu_without_cuda_computes_on_the_cpu(ray_with_a_logical_gpu: None) -> None:
    gpu_ids, device, computed_on = ray.get(where_it_computes.options(num_cpus=1, num_gpus=0.25).remote(False))
    assert [str(i) for i in gpu_ids] == ["0"] and device == "cpu" and computed_on == "cpu"

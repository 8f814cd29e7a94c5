"""The one device rule for work a scheduler placed: its assigned GPU, else the CPU, whatever CUDA shows."""

from __future__ import annotations

import pytest
import torch

from diffusion.core.device import assigned_device


@pytest.fixture
def cuda_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend CUDA is visible, as it is to every Ray task on a GPU node (Ray 2.60 no longer hides it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_work_without_a_gpu_runs_on_the_cpu_even_where_cuda_is_visible(cuda_visible: None) -> None:
    assert assigned_device([], visible_devices="0,1") == torch.device("cpu")


@pytest.mark.parametrize("ids,visible,expected", [
    ([0], "0", "cuda:0"),        # Ray masked CUDA_VISIBLE_DEVICES to the one assigned GPU
    ([3], "3", "cuda:0"),        # the id is a physical index; CUDA renumbers the visible ones from 0
    (["2"], "1,2", "cuda:1"),    # two visible, the first assigned is the second of them
    ([1], "", "cuda:1"),         # nothing masked (RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES): the id is the index
])
def test_work_with_a_gpu_runs_on_the_gpu_ray_assigned(cuda_visible: None, ids: list, visible: str, expected: str) -> None:
    assert assigned_device(ids, visible_devices=visible) == torch.device(expected)


def test_a_logical_gpu_on_a_machine_without_cuda_runs_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert assigned_device([0], visible_devices="0") == torch.device("cpu")

"""What only a GPU machine can check: CUDA training with graph capture, and resume states crossing devices for real.

Marked ``cuda``: skipped where there is no GPU (CI), run on one with ``pytest -m cuda``.
"""

from __future__ import annotations

import pytest
import torch

from diffusion.core.config import replace
from diffusion.lab.datasets import load_embedded_mnist
from diffusion.lab.recipe import build_denoiser_run
from tests.conftest import tiny_run

pytestmark = pytest.mark.cuda
CPU, CUDA = torch.device("cpu"), torch.device("cuda:0")


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_embedded_mnist("train").images[:1024]


@pytest.mark.parametrize("mode", ["auto", "torch_compile"])
@pytest.mark.parametrize("arch,dropout", [("unet", 0.0), ("attnunet", 0.1)])
def test_cuda_training_is_accelerated_by_default_and_learns(digits: torch.Tensor, mode: str, arch: str, dropout: float) -> None:
    run = replace(tiny_run(arch, steps=200), **{"train.batch_size": 64, "train.lr": 3e-3, "train.precision": "auto",
                                                "train.compile": mode, "model.dropout": dropout})
    job = build_denoiser_run(run, CUDA, digits)
    assert job.trainer.network is not job.trainer.model  # auto: CUDA graphs on CUDA
    losses: list[float] = []
    job.trainer.fit(callback=lambda trainer, progress: losses.append(progress.loss), every=50)
    assert job.trainer.network is not job.trainer.model, f"{mode} fell back to eager"
    assert losses[-1] < 0.6 * losses[0], losses


def test_cuda_graphs_train_the_same_model_as_eager(digits: torch.Tensor) -> None:
    """Same seed, same batches, same noise: the replayed graphs compute what the eager passes compute."""
    finals = []
    for mode in ("off", "cuda_graphs"):
        run = replace(tiny_run("resunet", steps=30), **{"train.compile": mode, "train.precision": "fp32"})
        trainer = build_denoiser_run(run, CUDA, digits).trainer
        finals.append(trainer.fit(every=10).loss)
    assert finals[1] == pytest.approx(finals[0], rel=1e-3), finals


@pytest.mark.parametrize("source,target", [(CUDA, CPU), (CPU, CUDA)])
def test_resume_state_crosses_devices(digits: torch.Tensor, source: torch.device, target: torch.device,
                                      caplog: pytest.LogCaptureFixture) -> None:
    run = replace(tiny_run("resunet", steps=12), **{"model.dropout": 0.1, "train.compile": "off"})
    first = build_denoiser_run(run, source, digits).trainer
    first.fit(until=6)
    second = build_denoiser_run(run, target, digits).trainer
    with caplog.at_level("WARNING", logger="diffusion.core.training"):
        second.load_state(first.save_state())
    assert f"saved on {source.type}" in caplog.text
    second.fit()
    assert second.step == 12 and all(p.device.type == target.type for p in second.model.parameters())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_a_state_saved_on_cuda_1_resumes_exactly_on_cuda_0(digits: torch.Tensor) -> None:
    run = replace(tiny_run("unet", steps=8), **{"train.compile": "off"})
    straight = build_denoiser_run(run, CUDA, digits).trainer
    straight.fit()
    first = build_denoiser_run(run, torch.device("cuda:1"), digits).trainer
    first.fit(until=4)
    second = build_denoiser_run(run, CUDA, digits).trainer
    second.load_state(first.save_state())
    second.fit()
    for a, b in zip(straight.model.state_dict().values(), second.model.state_dict().values()):
        torch.testing.assert_close(a, b)

import io
import struct

import pytest
import torch

from diffusion.core.config import ConfigError, TrainConfig, replace
from diffusion.core.ema import EMA
from diffusion.core.training import learning_rate
from diffusion.lab.datasets import load_embedded_mnist
from diffusion.lab.recipe import build_denoiser_run
from tests.conftest import tiny_run

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_embedded_mnist("train").images[:512]


def test_a_tiny_denoiser_learns_within_seconds(digits: torch.Tensor) -> None:
    run = replace(tiny_run("unet", steps=150), **{"train.batch_size": 32, "train.lr": 3e-3})
    job = build_denoiser_run(run, CPU, digits)
    losses = []
    job.trainer.fit(callback=lambda trainer, progress: losses.append(progress.loss), every=25)
    assert len(losses) == 6
    assert losses[-1] < 0.6 * losses[0], losses


def test_resume_is_exact(digits: torch.Tensor) -> None:
    """Train 2N steps == train N, save, load into a fresh trainer, train N more."""
    run = replace(tiny_run("resunet", steps=12), **{"model.dropout": 0.1})
    straight = build_denoiser_run(run, CPU, digits).trainer
    straight.fit()

    first = build_denoiser_run(run, CPU, digits).trainer
    first.fit(until=6)
    saved = first.save_state()
    second = build_denoiser_run(run, CPU, digits).trainer
    second.load_state(saved)
    assert second.step == 6
    second.fit()

    for a, b in zip(straight.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.model.state_dict().values(), second.ema.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(straight.generator.get_state(), second.generator.get_state())


def test_resume_state_loads_with_weights_only(digits: torch.Tensor) -> None:
    trainer = build_denoiser_run(tiny_run("mlp", steps=2), CPU, digits).trainer
    trainer.fit()
    state = torch.load(io.BytesIO(trainer.save_state()), weights_only=True)
    assert state["step"] == 2


def test_callback_can_stop_training(digits: torch.Tensor) -> None:
    trainer = build_denoiser_run(tiny_run("cnn", steps=50), CPU, digits).trainer
    progress = trainer.fit(callback=lambda t, p: p.step >= 4, every=2)
    assert trainer.step == 4 and progress.step == 4 and progress.images_seen == 4 * 16


def test_batches_cover_each_epoch_once(digits: torch.Tensor) -> None:
    run = replace(tiny_run("mlp"), **{"train.batch_size": 100})
    trainer = build_denoiser_run(run, CPU, digits[:250]).trainer
    seen = torch.cat([trainer.batch_indices(s) for s in range(5)])  # 500 indices = 2 epochs
    assert sorted(seen[:250].tolist()) == list(range(250))
    assert sorted(seen[250:].tolist()) == list(range(250))


def test_learning_rate_warms_up_then_decays() -> None:
    config = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100, lr_decay="cosine", min_lr_ratio=0.1)
    assert learning_rate(config, 0) == pytest.approx(1e-5)
    assert learning_rate(config, 99) == pytest.approx(1e-3)
    assert learning_rate(config, 550) == pytest.approx(0.55e-3)
    assert learning_rate(config, 1000) == pytest.approx(1e-4)
    constant = replace(config, lr_decay="constant")
    assert learning_rate(constant, 900) == 1e-3


def test_ema_warms_up_and_tracks_the_weights() -> None:
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, model.weight - 0.1)


@pytest.mark.parametrize(
    "change,message",
    [({"train.steps": 0}, "steps must be a positive integer"), ({"train.lr": -1.0}, "lr must be positive"),
     ({"train.precision": "fp16"}, r"precision 'fp16' is not one of \['auto', 'fp32', 'bf16'\]"),
     ({"train.lr_decay": "step"}, "lr_decay"), ({"diffusion.loss_weighting": "p2"}, "loss_weighting")],
)
def test_bad_training_settings_are_refused_before_training(digits: torch.Tensor, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_denoiser_run(replace(tiny_run(), **change), CPU, digits)


def test_training_leaves_the_callers_rng_alone(digits: torch.Tensor) -> None:
    run = replace(tiny_run("mlp", steps=3), **{"model.dropout": 0.2})
    trainer = build_denoiser_run(run, CPU, digits).trainer
    before = torch.get_rng_state()
    trainer.fit()
    assert torch.equal(before, torch.get_rng_state())


def fake_cuda_state(trainer_state: dict, with_device_tag: bool) -> dict:
    """A resume state as a CUDA trial writes it, built without a GPU from its known layout.

    A CUDA (Philox) generator's state is 16 bytes: the seed and the offset, both uint64.
    """
    philox = torch.tensor(list(struct.pack("<QQ", 1234, 64)), dtype=torch.uint8)
    state = {**trainer_state, "generator": philox, "global_rng": {**trainer_state["global_rng"], "cuda": philox.clone()}}
    if with_device_tag:
        state["generator_device"] = "cuda"
    else:
        state.pop("generator_device")  # states saved before the tag: the device is read from the size
    return state


@pytest.mark.parametrize("with_device_tag", [True, False])
def test_a_state_saved_on_cuda_resumes_on_the_cpu(digits: torch.Tensor, caplog: pytest.LogCaptureFixture,
                                                   with_device_tag: bool) -> None:
    run = tiny_run("unet", steps=8)
    first = build_denoiser_run(run, CPU, digits).trainer
    first.fit(until=4)
    buffer = io.BytesIO()
    torch.save(fake_cuda_state(first.state_dict(), with_device_tag), buffer)

    resumed = []
    for _ in range(2):
        trainer = build_denoiser_run(run, CPU, digits).trainer
        with caplog.at_level("WARNING", logger="diffusion.core.training"):
            trainer.load_state(buffer.getvalue())
        assert trainer.step == 4
        for a, b in zip(first.model.state_dict().values(), trainer.model.state_dict().values()):
            assert torch.equal(a, b)  # weights and optimiser moved; only the random draws are new
        trainer.fit()
        assert trainer.step == 8
        resumed.append(trainer)
    assert "saved on cuda, loading on cpu" in caplog.text and "reseeded" in caplog.text
    # reseeding is a function of (seed, step): two resumes of the same state agree exactly
    for a, b in zip(resumed[0].model.state_dict().values(), resumed[1].model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_state_saved_on_the_cpu_says_so(digits: torch.Tensor) -> None:
    trainer = build_denoiser_run(tiny_run("mlp", steps=2), CPU, digits).trainer
    state = torch.load(io.BytesIO(trainer.save_state()), weights_only=True)
    assert state["generator_device"] == "cpu" and state["generator"].numel() == 5056


def test_windows_of_steps_between_callbacks_change_nothing(digits: torch.Tensor) -> None:
    """The trainer's RNG is swapped in once per callback window: any window size gives the same run."""
    run = replace(tiny_run("resunet", steps=9), **{"model.dropout": 0.1})
    def draw_from_the_global_rng(trainer: object, progress: object) -> None:
        torch.rand(3)

    results = []
    for every in (1, 4, 100):
        trainer = build_denoiser_run(run, CPU, digits).trainer
        trainer.fit(callback=draw_from_the_global_rng, every=every)
        results.append(trainer.model.state_dict())
    for other in results[1:]:
        for a, b in zip(results[0].values(), other.values()):
            assert torch.equal(a, b)


def test_compile_off_on_the_cpu_by_default_and_bad_modes_are_refused(digits: torch.Tensor) -> None:
    trainer = build_denoiser_run(tiny_run("mlp", steps=2), CPU, digits).trainer
    assert trainer.network is trainer.model  # auto: compiled on CUDA only
    with pytest.raises(ConfigError, match=r"compile 'yes' is not one of \['auto', 'cuda_graphs', 'torch_compile', 'off'\]"):
        build_denoiser_run(replace(tiny_run(), **{"train.compile": "yes"}), CPU, digits)
    with pytest.raises(ConfigError, match="compile 'cuda_graphs' needs a CUDA device"):
        build_denoiser_run(replace(tiny_run(), **{"train.compile": "cuda_graphs"}), CPU, digits)


def test_batch_indices_live_on_the_trainers_device(digits: torch.Tensor) -> None:
    trainer = build_denoiser_run(tiny_run("mlp"), CPU, digits).trainer
    assert trainer.batch_indices(0).device == trainer.device and len(trainer.batch_indices(40)) == 16

"""Adding a sampler, an embedding or a kind of model is one entry in one registry (docs/architecture.md, "Where to
add"): a toy entry of each, added here and nowhere else, is taken up by everything downstream of its registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

from diffusion.core.config import DataConfig, DiffusionConfig, TrainConfig, from_dict
from diffusion.core.models import build_denoiser, denoiser_config
from diffusion.core.samplers import SAMPLERS, SamplerSetting, SamplerSpec, ddim, sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.core.training import Trainer
from diffusion.embeddings import EMBEDDINGS, Embedder
from diffusion.embeddings.loading import current_embeddings, load_embedder
from diffusion.lab.datasets import load_embedded_mnist
from diffusion.lab.kinds import STORED_KINDS, StoredKind, kind_of
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.metrics.model_scores import plan_sampling
from diffusion.metrics.scoring import Scorer
from jobs.kinds import MODEL_KINDS, Judged, ModelKind, TrialBody, TrialContext, group_kind
from jobs.presets import EvaluateSettings

CPU = torch.device("cpu")


def test_a_sampler_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SAMPLERS, "toy", SamplerSpec(ddim, default_steps=7, default_eta=0.0))
    setting = from_dict(SamplerSetting, {"sampler": "toy"}, "preset: evaluate.samplers[0]")  # as a preset reads it
    assert setting.eta == 0.0 and setting.resolve(40).steps == 7 and plan_sampling(setting, 40, 10, 5).num_images == 5
    assert from_dict(EvaluateSettings, {"samplers": [{"sampler": "toy", "steps": 3}]}).samplers[0].sampler == "toy"
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=40))
    images = sample(build_denoiser(denoiser_config("unet", width=8)), schedule, 2, setting.resolve(40), precision="fp32")
    assert images.shape == (2, 1, 28, 28)


def test_an_embedding_is_one_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def brightness(device: torch.device | str) -> Embedder:  # a fixed map: each image's mean and spread
        return Embedder("toy", 2, lambda x: torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3))], 1), torch.device(device))

    monkeypatch.setitem(EMBEDDINGS, "toy", brightness)
    store = LabStore(tmp_path / "lab")
    assert from_dict(EvaluateSettings, {"embeddings": ["vae", "toy"]}).embeddings == ("vae", "toy")
    assert current_embeddings(store)["toy"].name == "toy"
    test = load_embedded_mnist("test").images
    score = Scorer(load_embedder("toy", store), test[:200], test).score(test[200:400], kid=False, manifold=False)
    assert score.embedding == "toy" and 0 < score.ratio < 5  # real against real: about the floor


@dataclass(frozen=True)
class ToyConfig:
    width: int = 4


@dataclass(frozen=True)
class ToyRun:
    model: ToyConfig = field(default_factory=ToyConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=3, batch_size=8, warmup_steps=1))
    data: DataConfig = field(default_factory=DataConfig)


class ToyNet(nn.Module):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(28 * 28, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def _start_toy(run: ToyRun, context: TrialContext) -> TrialBody:
    data = load_embedded_mnist("train").images[:64]
    trainer = Trainer(ToyNet(run.model), lambda model, batch, generator: model(batch).pow(2).mean(), data, run.train,
                      context.device)
    return TrialBody(trainer, lambda trainer, progress: Judged({"toy_loss": progress.loss}, progress.loss, {},
                                                               trainer.ema.model))


def test_a_kind_of_model_is_one_entry_in_each_layer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The library's entry (what a card rebuilds) and the sweep's (point -> run, trial body, metric, card)."""
    monkeypatch.setitem(STORED_KINDS, "toy", StoredKind(ToyRun, lambda run: ToyNet(run.model)))
    toy = ModelKind("toy", ("model", "train"), lambda group: {}, "toy_loss", _start_toy, lambda info: {"toy": True})
    monkeypatch.setitem(MODEL_KINDS, "toy", toy)
    assert group_kind("toy") is toy
    run = toy.run_config("toy", {"model": {"width": 3}}, "mnist-embedded")
    assert isinstance(run, ToyRun) and run.model.width == 3 and kind_of(run) == "toy"
    store = LabStore(tmp_path / "lab")
    body = toy.start(run, TrialContext(store, CPU, {}))
    verdicts: list[Judged | None] = []
    body.trainer.fit(callback=lambda trainer, progress: verdicts.append(body.judge(trainer, progress)), every=1)
    assert len(verdicts) == 3 and all(v is not None and v.score >= 0 for v in verdicts)
    ModelRegistry(store).export_model("toy", body.trainer.ema.model, run, toy.card({}))
    loaded = ModelRegistry(store).load_model("toy", kind="toy")
    assert isinstance(loaded.model, ToyNet) and loaded.run == run and loaded.card.metrics == {"toy": True}

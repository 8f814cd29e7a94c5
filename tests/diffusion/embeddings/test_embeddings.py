"""The embeddings trained for real (briefly) on the embedded data, and the robustness curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion.core.config import ClassifierRun, ConfigError, DataConfig, TrainConfig, VAERun
from diffusion.embeddings import EMBEDDINGS, model_embedder, pixel_embedder
from diffusion.embeddings.loading import load_embedder
from diffusion.embeddings.training import build_embedder_job, train_embedder
from diffusion.lab.datasets import load_embedded_mnist, load_sklearn_digits, selection_splits
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import ROBUSTNESS, ROBUSTNESS_SUMMARY, TableStore
from diffusion.metrics.corruptions import CORRUPTIONS, get_corruption
from diffusion.metrics.floor import fd_floor
from diffusion.metrics.frechet import GaussianStats, feature_stats
from diffusion.metrics.robustness import robustness_curve, robustness_summary
from diffusion.metrics.scoring import Scorer

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabStore:
    store = LabStore(tmp_path_factory.mktemp("lab"))
    fast = {"batch_size": 128, "lr": 2e-3, "warmup_steps": 20, "ema_decay": 0.99, "precision": "fp32"}
    train_embedder(store, "vae", VAERun(train=TrainConfig(steps=400, **fast)), CPU)
    train_embedder(store, "classifier", ClassifierRun(train=TrainConfig(steps=150, **fast)), CPU)
    return store


@pytest.fixture(scope="module")
def embedders(lab: LabStore) -> list:
    return [model_embedder("vae", ModelRegistry(lab).load_model("vae", kind="vae").model),
            model_embedder("classifier", ModelRegistry(lab).load_model("classifier", kind="classifier").model),
            pixel_embedder()]


@pytest.mark.slow
def test_embedders_are_stored_with_validation_metrics_not_test_ones(lab: LabStore) -> None:
    assert set(ModelRegistry(lab).list_models()) == {"vae", "classifier"}
    assert ModelRegistry(lab).list_models(kind="vae") == ["vae"]
    classifier = ModelRegistry(lab).read_card("classifier").metrics
    assert classifier["val_accuracy"] > 0.9 and classifier["val_loss"] < 0.5
    vae = ModelRegistry(lab).read_card("vae").metrics
    assert vae["val_loss"] == vae["val_neg_elbo"] == pytest.approx(vae["val_reconstruction"] + vae["val_kl"], rel=1e-5)
    assert not [key for card in (classifier, vae) for key in card if key.startswith("test_")]  # the FD's reference set chooses nothing


def test_the_validation_split_is_a_fixed_stratified_part_of_the_training_split() -> None:
    data = DataConfig(dataset="mnist-embedded")
    splits, again, train = selection_splits(data), selection_splits(data), load_embedded_mnist("train")
    assert (len(splits.fit), len(splits.validation)) == (3600, 400)
    assert torch.equal(splits.validation.images, again.validation.images)  # the same digits in every run
    assert torch.bincount(splits.validation.labels).tolist() == [40] * 10
    rows = lambda images: {tuple(image.flatten().tolist()) for image in images}  # noqa: E731
    assert rows(splits.fit.images) | rows(splits.validation.images) == rows(train.images)  # a cut of the training split


@pytest.mark.slow
def test_embedding_dimensions(embedders: list) -> None:
    images = load_embedded_mnist("test").images[:10]
    assert [e(images).shape for e in embedders] == [(10, 16), (10, 128), (10, 784)]
    assert all(e(images).dtype == np.float64 for e in embedders)


@pytest.mark.slow
def test_streamed_statistics_of_image_batches_equal_the_whole_set(embedders: list) -> None:
    images = load_embedded_mnist("test").images
    whole = GaussianStats.of(embedders[0](images))
    streamed = feature_stats(embedders[0], images, batch_size=96)
    assert streamed.count == whole.count == 1000
    np.testing.assert_allclose(streamed.covariance, whole.covariance, rtol=1e-9, atol=1e-12)


def test_embedder_training_resumes_exactly() -> None:
    run = VAERun(train=TrainConfig(steps=6, batch_size=32, warmup_steps=1, precision="fp32"))
    data = load_embedded_mnist("train")
    straight = build_embedder_job("vae", run, CPU, (data.images[:256], data.labels[:256])).trainer
    straight.fit()
    first = build_embedder_job("vae", run, CPU, (data.images[:256], data.labels[:256])).trainer
    first.fit(until=3)
    second = build_embedder_job("vae", run, CPU, (data.images[:256], data.labels[:256])).trainer
    second.load_state(first.save_state())
    second.fit()
    for a, b in zip(straight.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_a_score_carries_its_floor_and_ratio(embedders: list) -> None:
    test, train = load_embedded_mnist("test"), load_embedded_mnist("train")
    real = Scorer(embedders[0], test.images, torch.cat([train.images, test.images])).score(train.images[:500])
    noise = Scorer(embedders[0], test.images, train.images).score(torch.rand(500, 1, 28, 28) * 2 - 1)
    assert real.n == 500 and real.floor_mean > 0
    assert real.ratio < 3 < noise.ratio
    assert noise.fd == pytest.approx(noise.mean_term + noise.trace_term)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_are_identity_at_zero_seeded_and_in_range(name: str) -> None:
    images = load_embedded_mnist("test").images[:50]
    other = load_sklearn_digits().images
    corrupt = get_corruption(name)
    assert torch.equal(corrupt(images, 0.0, 1, other), images)
    a, b = corrupt(images, 0.5, 1, other), corrupt(images, 0.5, 1, other)
    assert torch.equal(a, b) and not torch.equal(a, images)
    assert a.min() >= -1 and a.max() <= 1 and a.shape == images.shape
    with pytest.raises(ConfigError, match=r"severity must be in \[0, 1\]"):
        corrupt(images, 1.5, 0, other)


def test_unknown_names_list_the_accepted_ones(tmp_path) -> None:
    with pytest.raises(ConfigError, match="accepted: dead_pixels, gaussian_noise, invasion"):
        get_corruption("blur")
    with pytest.raises(ConfigError, match="accepted: vae, classifier, pixels"):
        load_embedder("inception", LabStore(tmp_path))
    assert list(EMBEDDINGS) == ["vae", "classifier", "pixels"]


@pytest.mark.slow
def test_vae_curves_rise_monotonically_and_start_at_the_floor(embedders: list) -> None:
    test, train = load_embedded_mnist("test"), load_embedded_mnist("train")
    curve = robustness_curve(test.images, train.images, embedders, load_sklearn_digits().images, n=500,
                             severities=(0.0, 0.25, 0.5, 0.75, 1.0), seeds=(0, 1, 2))
    assert len(curve) == 3 * 5 * 3 * 3
    assert set(curve.columns) >= {"corruption", "severity", "embedding", "seed", "fd", "ratio"}
    summary = robustness_summary(curve).set_index(["corruption", "embedding"])
    for corruption in CORRUPTIONS:
        assert summary.loc[(corruption, "vae"), "monotonicity"] == pytest.approx(1.0)
        assert summary.loc[(corruption, "vae"), "detection_threshold"] <= 0.5
    # at severity 0 the curve sits on an independently drawn real-vs-real floor at the same N
    for embedder in embedders:
        floor = fd_floor(embedder(torch.cat([train.images, test.images])), 500, draws=5, seed=7)
        at_zero = curve[(curve.severity == 0) & (curve.embedding == embedder.name)].fd.mean()
        assert abs(at_zero - floor.mean) < 3 * floor.std + 0.25 * floor.mean, (embedder.name, at_zero, floor)


@pytest.mark.slow
def test_score_and_robustness_commands_write_what_they_print(lab: LabStore) -> None:
    from diffusion.core.models import build_denoiser
    from tests.conftest import tiny_run
    from tests.diffusion.cli.test_cli import run as run_cli

    tiny = tiny_run("unet")
    ModelRegistry(lab).export_model("tiny", build_denoiser(tiny.model), tiny)
    scored = run_cli("score", "--lab", lab.root, "--name", "tiny", "--num-images", "200", "--steps", "4",
                     "--embeddings", "vae", "pixels")
    assert "floor_mean" in scored.stdout and "ratio" in scored.stdout
    card = ModelRegistry(lab).read_card("tiny").metrics
    assert {"fd_vae", "fd_ratio_pixels", "fd_floor_vae", "fd_floor_pixels"} <= set(card)
    assert (card["fd_n"], card["fd_sampler"]) == (200, "ddim-4")  # card_metrics: the VAE row's N and setting

    robust = run_cli("robustness", "--lab", lab.root, "--n", "200", "--seeds", "2", "--embeddings", "vae", "pixels")
    assert "monotonicity" in robust.stdout
    assert len(TableStore(lab).read(ROBUSTNESS)) == 3 * 8 * 2 * 2
    assert len(TableStore(lab).read(ROBUSTNESS_SUMMARY)) == 3 * 2


@pytest.mark.slow
def test_an_embedding_without_its_model_says_how_to_train_it(tmp_path) -> None:
    from tests.diffusion.cli.test_cli import run as run_cli

    result = run_cli("robustness", "--lab", str(tmp_path), "--embeddings", "vae", check=False)
    assert result.returncode == 2
    assert "python -m diffusion train-embedding --kind vae" in result.stderr

"""What a picture of a model is: how far it trained and its score, from its card."""

from __future__ import annotations

from diffusion.lab.checkpoint import ModelCard
from diffusion.metrics.card_summary import score_line, training_line


def card(**metrics: object) -> ModelCard:
    return ModelCard("denoiser", {"train": {"batch_size": 64, "steps": 1500}}, 1000, "0" * 64, dict(metrics))


def test_the_training_line_names_steps_images_and_cpu_minutes() -> None:
    trained = card(trained_steps=1500, planned_steps=1500, steps=1500, train_seconds=372.0, train_cpus=2)
    assert training_line(trained) == "trained 1,500 steps of 64 (96,000 images), 6.2 min on 2 CPUs (12.4 CPU-minutes)"
    stopped = card(trained_steps=100, planned_steps=1500, steps=100, train_seconds=30.0)
    assert training_line(stopped) == "trained 100 steps of 64 of 1,500 planned (6,400 images), 0.5 min"
    earlier = card(trained_steps=1500, steps=1000)
    assert training_line(earlier).endswith("; these are the weights of step 1,000, its best FD report")
    assert training_line(card()) == "training not recorded on its card"


def test_the_score_line_gives_the_ratio_and_the_manifold_figures() -> None:
    scored = card(fd_ratio_vae=2.104, fd_n=1000, fd_sampler="dpmpp2m_sde-20", precision_vae=0.62, recall_vae=0.55,
                  density_vae=0.81, coverage_vae=0.58)
    assert score_line(scored) == ("FD / floor 2.10x (vae, N = 1,000, dpmpp2m_sde-20); precision 0.62, recall 0.55, "
                                  "density 0.81, coverage 0.58")
    assert score_line(card()) == "not scored yet"

"""A lab whose VAE was re-trained after its two denoisers were scored, and only one of them was scored again.

Built once per session (``retrained_vae_lab`` in tests/conftest.py) and read by the lineage
tests of the jobs, Serve and the dashboard. Everything is real: the VAE is trained, the
denoisers are trained, sampled and scored by the evaluation job's own functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from diffusion.core.config import TrainConfig, VAERun, replace
from diffusion.core.samplers import SamplerSetting
from diffusion.embeddings import pixel_embedder
from diffusion.embeddings.loading import current_embedding, load_embedder
from diffusion.embeddings.training import train_embedder
from diffusion.lab.datasets import load_real_sets, load_sklearn_digits
from diffusion.lab.lineage import EmbeddingId
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import ROBUSTNESS, ROBUSTNESS_SUMMARY, TableStore
from diffusion.metrics.robustness import robustness_curve, robustness_summary
from jobs.evaluate import merge_scores, record_best
from jobs.model_tasks import compute_floors, evaluate_model
from jobs.presets import EvaluateSettings
from tests.serve.client import export_tiny

CPU = torch.device("cpu")
VAE_RUN = VAERun(train=TrainConfig(steps=10, batch_size=64, warmup_steps=2, precision="fp32"))
SETTINGS = EvaluateSettings(num_images=32, samplers=(SamplerSetting("ddim", 5),), embeddings=("vae",),
                            pictures=SamplerSetting("ddim", 5), robustness=None, floor_draws=2)
RESCORED, STALE = "mlp", "cnn"
"""The model scored again in the new VAE, and the one left with scores from the old VAE."""
NEW_TRIAL = "vae_sweep_00001"
"""The trial the new VAE's card names (as the embedding sweep's export writes it)."""


@dataclass(frozen=True)
class RetrainedLab:
    """The lab's root and the two VAEs it held."""

    root: Path
    old_vae: EmbeddingId
    new_vae: EmbeddingId


def evaluate(store: LabStore, models: tuple[str, ...]) -> None:
    """What ``python -m jobs.evaluate --models ...`` does per model, without Ray: score, record on the card, merge."""
    floors = compute_floors(store, "mnist-embedded", SETTINGS, CPU)
    for name in models:
        rows = evaluate_model(store, name, SETTINGS, floors, CPU)
        record_best(store, name, rows)
        merge_scores(store, pd.DataFrame(rows))


def build_retrained_lab(root: Path) -> RetrainedLab:
    """Train a VAE, score both denoisers and draw robustness curves in it; re-train the VAE (other weights, named by a
    trial) and score only ``RESCORED`` again."""
    store = LabStore(root)
    train_embedder(store, "vae", VAE_RUN, CPU)
    old_vae = current_embedding(store, "vae")
    for name in (RESCORED, STALE):
        export_tiny(store, name, name)
    evaluate(store, (RESCORED, STALE))
    real = load_real_sets("mnist-embedded", store)
    curve = robustness_curve(real.test, real.train, [load_embedder("vae", store), pixel_embedder()],
                             load_sklearn_digits().images, n=50, severities=(0.0, 1.0),
                             corruptions=("gaussian_noise",), seeds=(0, 1))
    TableStore(store).write(ROBUSTNESS, curve)
    TableStore(store).write(ROBUSTNESS_SUMMARY, robustness_summary(curve))
    train_embedder(store, "vae", replace(VAE_RUN, **{"train.seed": 1}), CPU)  # other weights
    ModelRegistry(store).update_metrics("vae", {"trial_id": NEW_TRIAL})
    new_vae = current_embedding(store, "vae")
    evaluate(store, (RESCORED,))
    assert old_vae is not None and new_vae is not None
    return RetrainedLab(root, old_vae, new_vae)

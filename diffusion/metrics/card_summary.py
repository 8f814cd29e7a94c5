"""What a picture of a model is, in one line each: how far the model trained, and how it scored.

The dashboard's Samples and Denoising paths pages caption every picture through here, from what
the card records (``jobs.sweep`` exports the training figures, ``jobs.evaluate`` adds the scores,
``diffusion.metrics.model_scores.card_metrics``).
"""

from __future__ import annotations

from typing import Any

from diffusion.lab.checkpoint import ModelCard
from diffusion.metrics.scoring import MANIFOLD_FIELDS


def training_line(card: ModelCard) -> str:
    """``trained 1,500 steps of 64 (96,000 images), 6.2 min on 2 CPUs (12.4 CPU-minutes); weights of step 1,500``;
    ``training not recorded`` for a model exported by other means than a sweep."""
    metrics = card.metrics
    batch = (card.config.get("train") or {}).get("batch_size")
    trained = metrics.get("trained_steps")
    if trained is None or batch is None:
        return "training not recorded on its card"
    planned = metrics.get("planned_steps")
    of_plan = f" of {int(planned):,} planned" if planned and int(planned) != int(trained) else ""
    text = f"trained {int(trained):,} steps of {int(batch)}{of_plan} ({int(trained) * int(batch):,} images)"
    seconds, cpus = metrics.get("train_seconds"), metrics.get("train_cpus")
    if seconds is not None:
        text += f", {float(seconds) / 60:.1f} min"
        if cpus:
            text += f" on {cpus:g} CPU{'s' if float(cpus) != 1 else ''} ({float(seconds) * float(cpus) / 60:.1f} CPU-minutes)"
    step = metrics.get("steps")
    if step is not None and int(step) != int(trained):
        text += f"; these are the weights of step {int(step):,}, its best FD report"
    return text


def score_line(card: ModelCard, embedding: str = "vae") -> str:
    """``FD / floor 2.1x (vae, N = 1,000, dpmpp2m_sde-20); precision 0.62, recall 0.55, density 0.81, coverage 0.58``;
    ``not scored yet`` before an evaluation."""
    metrics: dict[str, Any] = card.metrics
    ratio = metrics.get(f"fd_ratio_{embedding}")
    if ratio is None:
        return "not scored yet"
    where = f"{embedding}" + (f", N = {int(metrics['fd_n']):,}, {metrics.get('fd_sampler', '')}"
                              if embedding == "vae" and "fd_n" in metrics else "")
    figures = [f"{figure} {float(metrics[f'{figure}_{embedding}']):.2f}" for figure in MANIFOLD_FIELDS
               if f"{figure}_{embedding}" in metrics]
    return f"FD / floor {float(ratio):.2f}x ({where})" + (f"; {', '.join(figures)}" if figures else "")

"""A trained denoiser's pictures in the lab store: its sample grid, denoising paths and their GIF."""

from __future__ import annotations

from torch import nn

from diffusion.core.images import grid_png, path_gif, paths_png
from diffusion.core.samplers import denoising_paths, get_sampler, sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.lab.store import LabStore

PATHS_FILE = "paths.safetensors"


def render_pictures(
    store: LabStore,
    name: str,
    model: nn.Module,
    schedule: NoiseSchedule,
    sampler: str = "ddim",
    steps: int | None = 50,
    seed: int = 0,
    eta: float = 0.0,
) -> dict[str, str]:
    """Write the model's 50-image grid, 5 denoising paths (PNG, and safetensors for a step slider) and their GIF."""
    get_sampler(sampler)
    images = sample(model, schedule, 50, sampler=sampler, steps=steps, eta=eta, seed=seed)
    paths = denoising_paths(model, schedule, num_paths=5, snapshots=10, sampler=sampler, steps=steps, eta=eta, seed=seed + 1)
    return {
        "grid": store.write_model_file(name, "grid.png", grid_png(images)),
        "paths": store.write_model_file(name, "paths.png", paths_png(paths)),
        "paths_animation": store.write_model_file(name, "paths.gif", path_gif(paths)),
        "paths_data": store.write_model_file(name, PATHS_FILE, paths.to_bytes()),
    }

"""A trained denoiser's pictures in the lab store: its sample grid, denoising paths and their GIF."""

from __future__ import annotations

from torch import nn

from diffusion.core.images import grid_png, path_gif, paths_png
from diffusion.core.samplers import SamplerSetting, denoising_paths, sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore

PATHS_FILE = "paths.safetensors"


def render_pictures(
    store: LabStore,
    name: str,
    model: nn.Module,
    schedule: NoiseSchedule,
    setting: SamplerSetting = SamplerSetting("ddim", 50),
    seed: int = 0,
) -> dict[str, str]:
    """Write the model's 50-image grid, 5 denoising paths (PNG, and safetensors for a step slider) and their GIF,
    sampled as ``setting`` says (its ``num_images`` is not used: the grid is always 50)."""
    setting = setting.resolve(schedule.timesteps)
    images = sample(model, schedule, 50, setting, seed=seed)
    paths = denoising_paths(model, schedule, setting, num_paths=5, snapshots=10, seed=seed + 1)
    models = ModelRegistry(store)
    return {
        "grid": models.write_model_file(name, "grid.png", grid_png(images)),
        "paths": models.write_model_file(name, "paths.png", paths_png(paths)),
        "paths_animation": models.write_model_file(name, "paths.gif", path_gif(paths)),
        "paths_data": models.write_model_file(name, PATHS_FILE, paths.to_bytes()),
    }

"""The Hugging Face diffusers pieces the benchmarks compare against (the ``bench`` extra, never a product dependency).

``diffusers_unet`` builds UNet2DModel in the configuration commonly used for 28x28 digits
(the Hugging Face diffusion course: block_out_channels (32, 64, 64), attention at the two lower
levels) behind our denoiser interface ``model(x, t) -> prediction``; ``DiffusersDDIM`` drives any
of our networks with diffusers' DDIMScheduler.
"""

from __future__ import annotations

import torch
from torch import nn

from diffusion.core.device import autocast
from diffusion.core.samplers import make_generator


class DiffusersUNet(nn.Module):
    """UNet2DModel(x, t).sample as a denoiser ``model(x, t)``."""

    def __init__(self, layers_per_block: int = 2) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.unet = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=layers_per_block,
                                block_out_channels=(32, 64, 64),
                                down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                                up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t).sample


class DiffusersDDIM:
    """diffusers' DDIMScheduler driving one of our networks: the reference DDIM.

    Levels use the spacing diffusers recommends ("trailing": from T-1 down in equal strides,
    then the clean image); x_0 is clipped to [-1, 1] and eps re-derived from it, as in our
    samplers (``use_clipped_model_output``); eta = 0.
    """

    def __init__(self, schedule: str, prediction: str, timesteps: int = 1000) -> None:
        from diffusers import DDIMScheduler

        self.scheduler = DDIMScheduler(
            num_train_timesteps=timesteps, beta_start=1e-4, beta_end=0.02,
            beta_schedule="linear" if schedule == "linear" else "squaredcos_cap_v2",
            prediction_type={"eps": "epsilon", "v": "v_prediction", "x0": "sample"}[prediction],
            clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True, timestep_spacing="trailing")

    @torch.inference_mode()
    def sample(self, model: nn.Module, num_images: int, steps: int, seed: int = 0, batch_size: int = 500,
               precision: str = "auto") -> torch.Tensor:
        """``num_images`` samples in [-1, 1], (N, 1, 28, 28), in batches, like ``diffusion.core.samplers.sample``."""
        device = next(model.parameters()).device
        generator = make_generator(seed, device)
        model.eval()
        chunks = []
        for start in range(0, num_images, batch_size):
            n = min(batch_size, num_images - start)
            x = torch.randn((n, 1, 28, 28), generator=generator, device=device)
            self.scheduler.set_timesteps(steps, device=device)
            for t in self.scheduler.timesteps:
                with autocast(device, precision):
                    output = model(x, t.expand(n)).float()
                x = self.scheduler.step(output, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
            chunks.append(x.clamp(-1.0, 1.0))
        return torch.cat(chunks)

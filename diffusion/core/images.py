"""Pixel ranges, and the slides' pictures: a grid of samples, denoising paths as a PNG strip and an animated GIF."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from diffusion.core.samplers import DenoisingPaths


def to_model_range(pixels: np.ndarray | torch.Tensor, max_value: float = 255.0) -> torch.Tensor:
    """Map pixel intensities in [0, max_value] to float32 in [-1, 1], shaped (N, 1, 28, 28)."""
    images = torch.as_tensor(np.asarray(pixels), dtype=torch.float32).reshape(-1, 1, 28, 28)
    return images / (max_value / 2) - 1.0


def quantize_8bit(images: torch.Tensor) -> torch.Tensor:
    """Model-range images clipped to [-1, 1] and rounded to the 256 levels an 8-bit image can hold (the real digits'
    levels, ``to_model_range`` of 0..255), still in the model's range and dtype."""
    levels = ((images.clamp(-1, 1) + 1) * 127.5).round()
    return (levels / 127.5 - 1.0).to(images.dtype)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Map model-range images in [-1, 1] to [0, 1] for display."""
    return ((images.clamp(-1, 1) + 1) / 2).float()


def to_pil(images: torch.Tensor, columns: int, scale: int = 2, padding: int = 2) -> Image.Image:
    """Tile (N, C, H, W) images in [-1, 1] into a grayscale PIL image, enlarged ``scale`` times."""
    from torchvision.utils import make_grid  # here, not at the top: importing torchvision costs every process 1.4 s

    grid = make_grid(to_unit_range(images.detach().cpu()), nrow=columns, padding=padding, pad_value=1.0)
    array = (grid[0] * 255).round().to(torch.uint8).numpy()  # (H', W'), one channel
    picture = Image.fromarray(array, mode="L")
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    return picture


def png_bytes(picture: Image.Image) -> bytes:
    """Encode a PIL image as PNG."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def grid_png(images: torch.Tensor, columns: int = 10, scale: int = 2) -> bytes:
    """The "50 random images" grid: (N, C, H, W) in [-1, 1] as a PNG, ``columns`` per row."""
    return png_bytes(to_pil(images, columns, scale))


def paths_png(paths: DenoisingPaths, scale: int = 2, show_x0: bool = False) -> bytes:
    """One row per path: x_t at each snapshot (noise on the left), then the finished sample.

    With ``show_x0`` each path gets a second row with the x_0 predicted at the same steps.
    """
    rows = []
    for p in range(paths.x_t.shape[0]):
        rows.append(torch.cat([paths.x_t[p], paths.final[p : p + 1]]))
        if show_x0:
            rows.append(torch.cat([paths.x0[p], paths.final[p : p + 1]]))
    columns = paths.x_t.shape[1] + 1
    return png_bytes(to_pil(torch.cat(rows), columns, scale))


def path_gif(paths: DenoisingPaths, scale: int = 3, frame_ms: int = 120, hold_ms: int = 1500) -> bytes:
    """An animated GIF: each frame shows every path at one step; the last frame is held."""
    count = paths.x_t.shape[0]
    frames = [to_pil(paths.x_t[:, s], count, scale) for s in range(paths.x_t.shape[1])]
    frames.append(to_pil(paths.final, count, scale))
    durations = [frame_ms] * (len(frames) - 1) + [hold_ms]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return buffer.getvalue()

import io

import torch
from PIL import Image

from diffusion.core.images import grid_png, path_gif, paths_png
from diffusion.core.samplers import DenoisingPaths


def test_grid_of_50_is_10_by_5_tiles() -> None:
    picture = Image.open(io.BytesIO(grid_png(torch.rand(50, 1, 28, 28) * 2 - 1, columns=10, scale=1)))
    assert picture.format == "PNG"
    assert picture.size == (10 * 30 + 2, 5 * 30 + 2)


def test_paths_strip_has_one_row_per_path_and_the_gif_one_frame_per_snapshot() -> None:
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand((5, 8, 1, 28, 28), generator=generator) * 2 - 1  # distinct frames: GIF merges equal ones
    paths = DenoisingPaths(frames, frames, list(range(7, -1, -1)), torch.ones(5, 1, 28, 28))
    strip = Image.open(io.BytesIO(paths_png(paths, scale=1)))
    assert strip.size == (9 * 30 + 2, 5 * 30 + 2)
    gif = Image.open(io.BytesIO(path_gif(paths)))
    assert gif.format == "GIF" and gif.n_frames == 9

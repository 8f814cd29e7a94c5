import re
from pathlib import Path

import pytest
import torch

from diffusion.core.config import ConfigError
from diffusion.core.models import DENOISERS, build_denoiser, denoiser_config, parameter_count

README = Path(__file__).resolve().parents[3] / "README.md"


@pytest.mark.parametrize("arch", list(DENOISERS))
@pytest.mark.parametrize("batch", [1, 3])
def test_every_denoiser_maps_shape_to_shape(arch: str, batch: int) -> None:
    model = build_denoiser(denoiser_config(arch, width=8, depth=1, num_heads=2))
    x = torch.randn(batch, 1, 28, 28)
    t = torch.randint(0, 1000, (batch,))
    out = model(x, t)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", list(DENOISERS))
def test_output_depends_on_the_level(arch: str) -> None:
    torch.manual_seed(0)
    model = build_denoiser(denoiser_config(arch, width=8, depth=1, num_heads=2))
    for p in model.parameters():  # zero-initialised branches hide the time path at init
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 1, 28, 28)
    assert not torch.allclose(model(x, torch.tensor([0, 0])), model(x, torch.tensor([900, 900])))


@pytest.mark.parametrize("arch", list(DENOISERS))
def test_width_and_depth_grow_the_parameter_count(arch: str) -> None:
    small = parameter_count(build_denoiser(denoiser_config(arch, width=16, depth=1, num_heads=2)))
    wide = parameter_count(build_denoiser(denoiser_config(arch, width=32, depth=1, num_heads=2)))
    deep = parameter_count(build_denoiser(denoiser_config(arch, width=16, depth=2, num_heads=2)))
    assert small < wide and small < deep


def test_readme_table_matches_the_registry_defaults() -> None:
    """The README's parameter counts are what the default configs build."""
    text = README.read_text()
    for arch in DENOISERS:
        row = re.search(rf"^\| `{arch}` \|.*\| ([\d,]+) \|$", text, re.MULTILINE)
        assert row, f"README has no table row for {arch}"
        assert int(row.group(1).replace(",", "")) == parameter_count(build_denoiser(denoiser_config(arch)))


def test_attention_adds_parameters_to_the_residual_unet() -> None:
    plain = parameter_count(build_denoiser(denoiser_config("resunet")))
    attention = parameter_count(build_denoiser(denoiser_config("attnunet")))
    assert attention > plain


def test_bad_model_configs_name_what_is_accepted() -> None:
    with pytest.raises(ConfigError, match="unknown model 'transformer'; accepted: mlp, cnn, unet, resunet, attnunet"):
        denoiser_config("transformer")
    with pytest.raises(ConfigError, match="width must be a positive integer"):
        denoiser_config("cnn", width=0)
    with pytest.raises(ConfigError, match="unknown key"):
        denoiser_config("cnn", heads=3)

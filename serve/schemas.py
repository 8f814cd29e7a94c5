"""The HTTP API's request bodies: every field typed and bounded, so bad input is a 422 naming the field."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from diffusion.config import ConfigError
from diffusion.samplers import SAMPLERS, check_eta

MAX_IMAGES = 256
"""Most images one /sample request may ask for."""
MAX_PATHS = 8
"""Most denoising paths one /path request may ask for."""
MAX_SEED = 2**32 - 1

SamplerName = Literal[tuple(SAMPLERS)]  # type: ignore[valid-type]


class SamplingSettings(BaseModel):
    """What every sampling request names: the model and how to sample it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(description="a hosted model's name (GET /models)")
    sampler: SamplerName = Field("ddim", description="ddpm (ancestral), ddim, or dpmpp2m (DPM-Solver++ 2M)")
    steps: int | None = Field(None, ge=1, description="sampling steps, 1 to the model's T; null: 50 for DDIM, 20 for "
                                                       "DPM-Solver++, T for DDPM")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM noise (0 deterministic, 1 like DDPM); ignored by ddpm; "
                                                       "must be 0 for dpmpp2m")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="the same seed and settings give the same images")

    @model_validator(mode="after")
    def _deterministic_solver(self) -> SamplingSettings:
        try:
            check_eta(self.sampler, self.eta)
        except ConfigError as error:
            raise ValueError(f"eta: {error}") from error
        return self


class SampleRequest(SamplingSettings):
    """POST /sample."""

    num_images: int = Field(16, ge=1, le=MAX_IMAGES, description=f"1 to {MAX_IMAGES}")
    format: Literal["png", "json"] = Field("png", description="png: a grid image; json: the images as arrays in [0, 1]")
    columns: int = Field(8, ge=1, le=32, description="grid columns (png)")


class PathRequest(SamplingSettings):
    """POST /path."""

    num_paths: int = Field(1, ge=1, le=MAX_PATHS, description=f"1 to {MAX_PATHS}")
    snapshots: int = Field(10, ge=2, le=50, description="evenly spaced steps shown per path")
    format: Literal["png", "gif"] = Field("png", description="png: a strip per path; gif: the animation")

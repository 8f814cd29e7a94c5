"""The HTTP API's request bodies: every field typed and bounded, so bad input is a 422 naming the field.

Types are strict: a bool is not an integer, a string is not a number, and NaN or infinity is
not a float here. The sampling fields (sampler, steps, eta) are checked by building the core's
``SamplerSetting``, so they accept exactly what the CLI and the presets accept. The work a request asks for (images or paths times steps) is checked against
the server's budget once the steps are known (they default from the model's schedule).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from diffusion.core.config import ConfigError, SamplerName
from diffusion.core.samplers import SamplerSetting

MAX_IMAGES = 256
"""Most images one /sample request may ask for."""
MAX_PATHS = 8
"""Most denoising paths one /path request may ask for."""
MAX_SEED = 2**32 - 1
MAX_NAME = 128
"""Longest model name (the lab store's names are at most 128 characters)."""
DEFAULT_MAX_WORK = 64_000
"""Default budget of one request: images (or paths) x sampling steps, e.g. 64 images x 1000 DDPM steps."""


class SamplingSettings(BaseModel):
    """What every sampling request names: the model and how to sample it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), strict=True)

    model: str = Field(min_length=1, max_length=MAX_NAME, description="a hosted model's name (GET /models)")
    sampler: SamplerName = Field("ddim", description="ddpm (ancestral), ddim, dpmpp2m (DPM-Solver++ 2M) or "
                                                     "dpmpp2m_sde (its SDE form)")
    steps: int | None = Field(None, description="sampling steps, 1 to the model's T; null: 50 for DDIM, 20 for "
                                                "DPM-Solver++, 30 for its SDE form, T for DDPM")
    eta: float | None = Field(None, allow_inf_nan=False,
                              description="noise of ddim and dpmpp2m_sde, 0 to 1 (0 deterministic, 1 like DDPM, the "
                                          "full SDE for dpmpp2m_sde); ignored by ddpm; must be 0 for dpmpp2m; null: the "
                                          "sampler's own, 0 for ddim and dpmpp2m, 1 for dpmpp2m_sde")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="the same seed and settings give the same images")

    @model_validator(mode="after")
    def _sampler_setting(self) -> SamplingSettings:
        """sampler, steps and eta as the core's SamplerSetting accepts them (its ConfigError, a ValueError, names the
        field); an eta left out becomes the sampler's own, so that answers and batching keys carry the number used."""
        self.eta = self.setting.eta
        return self

    @property
    def setting(self) -> SamplerSetting:
        """How the request samples, checked (steps not yet resolved against a model's schedule: ``resolve``)."""
        return SamplerSetting(self.sampler, self.steps, self.eta)

    def resolve(self, timesteps: int) -> SamplerSetting:
        """The request's setting for a model of ``timesteps`` levels; ConfigError naming ``steps`` if they exceed T."""
        try:
            return self.setting.resolve(timesteps)
        except ConfigError as error:
            raise ConfigError(f"steps: {str(error).removeprefix('steps ')}", "steps") from error

    count_field: ClassVar[str] = ""  # the field that counts images (or paths): one network row per step each

    def work(self, steps: int) -> int:
        """Images (or paths) x ``steps``: the network rows the request costs, what the budget caps."""
        return int(getattr(self, self.count_field)) * steps


class SampleRequest(SamplingSettings):
    """POST /sample."""

    count_field: ClassVar[str] = "num_images"

    num_images: int = Field(16, ge=1, le=MAX_IMAGES, description=f"1 to {MAX_IMAGES}")
    format: Literal["png", "json"] = Field("png", description="png: a grid image; json: the images as arrays in [0, 1]")
    columns: int = Field(8, ge=1, le=32, description="grid columns (png)")


class PathRequest(SamplingSettings):
    """POST /path."""

    count_field: ClassVar[str] = "num_paths"

    num_paths: int = Field(1, ge=1, le=MAX_PATHS, description=f"1 to {MAX_PATHS}")
    snapshots: int = Field(10, ge=2, le=50, description="evenly spaced steps shown per path")
    format: Literal["png", "gif"] = Field("png", description="png: a strip per path; gif: the animation")


def work_error(request: SamplingSettings, steps: int, max_work: int) -> str | None:
    """The 422 message when ``request`` at ``steps`` exceeds the budget ``max_work``, else None."""
    work = request.work(steps)
    if work <= max_work:
        return None
    return (f"{request.count_field} x steps: the request asks for {work} image-steps ({request.work(1)} x {steps}); "
            f"this server's budget (max_work) is {max_work} per request: ask for fewer images or steps")


class ErrorBody(BaseModel):
    """Every error the app answers (400-504): one message naming the field or limit and what is accepted."""

    detail: str = Field(description="what was wrong, e.g. 'steps: must be between 1 and 50 ...'")


class Evaluation(BaseModel):
    """A hosted model's score in the lab's current VAE (``stale``: scored only in an older VAE, and not ranked)."""

    model_config = ConfigDict(protected_namespaces=())

    embedding: str
    stale: bool
    embedding_sha256: str | None = None
    embedding_trial: str | None = None
    fd: float | None = None
    floor: float | None = None
    ratio: float | None = Field(None, description="FD / the real-vs-real floor at the same N")
    sampler: str | None = None
    steps: int | None = None
    n: int | None = None
    rank: int | None = None
    reason: str | None = Field(None, description="why a stale score is not ranked, and the command that re-scores it")


class HostedModelInfo(BaseModel):
    """GET /models: one hosted model, loaded or why not, and its evaluation."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    loaded: bool
    error: str | None
    arch: str | None
    parameters: int | None
    timesteps: int | None
    weights_sha256: str | None
    config: dict[str, Any] | None
    evaluation: Evaluation | None


class Health(BaseModel):
    """GET /healthz: liveness, the models, the limits and the batching counters (more counters may follow)."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok"]
    loaded_models: int
    unavailable_models: int
    device: str
    waiting: int
    reloads: int
    limits: dict[str, float]
    queued: int
    batching: dict[str, Any]


ERRORS = {
    400: "the body could not be parsed (not UTF-8 JSON)",
    404: "no such model: the message lists the hosted ones",
    409: "the model is listed but could not be loaded (the message says why)",
    422: "a field or limit was refused (the message names it and what is accepted)",
    503: "the replica's waiting room is full: retry after Retry-After seconds",
    504: "not done within the server's deadline; the sampling stopped",
}
"""The error statuses of a sampling route, each answered with an ``ErrorBody``."""


def sampling_responses(content_types: tuple[str, ...]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a sampling route: 200 in ``content_types``, and each of ``ERRORS``."""
    responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {kind: {} for kind in content_types}, "description": "the images",
              "headers": {name: {"schema": {"type": "string"}, "description": about}
                          for name, about in (("X-Weights-SHA256", "the weights sampled"),
                                              ("X-Steps", "the steps the request resolved to"))}}}
    for status, description in ERRORS.items():
        responses[status] = {"model": ErrorBody, "description": description}
    responses[503]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return responses

import json
import typing
from typing import Any

import pytest

from diffusion.core.config import (
    COMPILE_MODES,
    LOSS_WEIGHTINGS,
    LR_DECAYS,
    PRECISIONS,
    PREDICTIONS,
    Arch,
    ClassifierConfig,
    ClassifierRun,
    ConfigError,
    DataConfig,
    DatasetName,
    DenoiserConfig,
    DiffusionConfig,
    RunConfig,
    SamplerName,
    ScheduleName,
    TrainConfig,
    VAEConfig,
    VAERun,
    from_dict,
    registry,
    replace,
    to_dict,
)
from diffusion.core.models import DENOISERS
from diffusion.core.samplers import SAMPLERS, SamplerSetting
from diffusion.core.schedules import SCHEDULES
from diffusion.lab.datasets import DATASETS
from tests.conftest import tiny_run


def test_run_config_survives_a_json_round_trip() -> None:
    run = tiny_run("attnunet")
    again = from_dict(RunConfig, json.loads(json.dumps(to_dict(run))))
    assert again == run
    assert isinstance(again.model.channel_mults, tuple)


def test_unknown_key_is_named_with_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['learning_rate'\].*accepted: .*'lr'"):
        from_dict(TrainConfig, {"learning_rate": 1e-3})


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"TrainConfig.steps: expected an integer"):
        from_dict(TrainConfig, {"steps": "many"})
    with pytest.raises(ConfigError, match=r"DenoiserConfig: missing required key 'width'"):
        from_dict(DenoiserConfig, {"arch": "mlp", "depth": 2})


def test_replace_reaches_nested_configs_and_checks_them() -> None:
    run = replace(tiny_run(), **{"train.lr": 0.5, "model.width": 16})
    assert run.train.lr == 0.5 and run.model.width == 16
    with pytest.raises(ConfigError, match="unknown key"):
        replace(tiny_run(), **{"train.nope": 1})


REQUIRED: dict[type, dict[str, Any]] = {DenoiserConfig: {"arch": "mlp", "width": 8, "depth": 1}}
"""The fields a config has no default for."""

CHOICES = [  # (config, field, the registry it dispatches to, the word its message uses)
    (DenoiserConfig, "arch", DENOISERS, "model"),
    (DiffusionConfig, "schedule", SCHEDULES, "schedule"),
    (DiffusionConfig, "prediction", PREDICTIONS, "prediction"),
    (DiffusionConfig, "loss_weighting", LOSS_WEIGHTINGS, "loss_weighting"),
    (TrainConfig, "lr_decay", LR_DECAYS, "lr_decay"),
    (TrainConfig, "precision", PRECISIONS, "precision"),
    (TrainConfig, "compile", COMPILE_MODES, "compile"),
    (DataConfig, "dataset", DATASETS, "dataset"),
    (SamplerSetting, "sampler", SAMPLERS, "sampler"),
]


@pytest.mark.parametrize("cls,name,accepted,word", CHOICES, ids=[f"{c.__name__}.{n}" for c, n, _a, _w in CHOICES])
def test_a_choice_outside_its_registry_is_refused_naming_the_field_the_value_and_the_accepted(
        cls: type, name: str, accepted: Any, word: str) -> None:
    with pytest.raises(ConfigError) as error:
        cls(**{**REQUIRED.get(cls, {}), name: "nonsense"})
    message = str(error.value)
    assert word in message and "'nonsense'" in message, message
    assert all(key in message for key in accepted), message
    for key in accepted:  # and every name the registry holds is accepted
        assert getattr(cls(**{**REQUIRED.get(cls, {}), name: key}), name) == key


@pytest.mark.parametrize("choice,entries", [(Arch, DENOISERS), (ScheduleName, SCHEDULES), (SamplerName, SAMPLERS),
                                            (DatasetName, DATASETS)])
def test_each_registry_is_keyed_by_exactly_what_its_config_accepts(choice: Any, entries: dict) -> None:
    assert tuple(entries) == typing.get_args(choice)
    with pytest.raises(TypeError, match="differ from the accepted names"):
        registry(choice, {**entries, "extra": None})


@pytest.mark.parametrize("cls,change,message", [
    (TrainConfig, {"lr": -1.0}, "lr must be positive, got -1.0"),
    (TrainConfig, {"steps": 0}, "steps must be a positive integer, got 0"),
    (TrainConfig, {"warmup_steps": -1}, "warmup_steps must be at least 0, got -1"),
    (TrainConfig, {"min_lr_ratio": 1.5}, "min_lr_ratio must be between 0 and 1, got 1.5"),
    (TrainConfig, {"ema_decay": 1.0}, "ema_decay must be in [0, 1), got 1.0"),
    (TrainConfig, {"grad_clip": -0.5}, "grad_clip must be at least 0, got -0.5"),
    (DiffusionConfig, {"timesteps": 1}, "timesteps must be at least 2, got 1"),
    (DiffusionConfig, {"beta_end": 1.0}, "beta_end must be in (0, 1), got 1.0"),
    (DiffusionConfig, {"min_snr_gamma": 0.0}, "min_snr_gamma must be positive, got 0.0"),
    (DenoiserConfig, {"width": 0}, "width must be a positive integer, got 0"),
    (DenoiserConfig, {"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    (DenoiserConfig, {"channel_mults": (1, 0)}, "channel_mults must be positive integers, got [1, 0]"),
    (VAEConfig, {"latent_dim": 0}, "latent_dim must be a positive integer, got 0"),
    (ClassifierConfig, {"dropout": -0.1}, "dropout must be in [0, 1), got -0.1"),
    (SamplerSetting, {"steps": 0}, "steps must be a positive integer, got 0"),
    (SamplerSetting, {"eta": 1.5}, "eta must be between 0 and 1, got 1.5"),
    (SamplerSetting, {"sampler": "dpmpp2m", "eta": 0.5}, "eta: dpmpp2m is a deterministic solver: eta must be 0, got 0.5"),
    (SamplerSetting, {"num_images": 1}, "num_images must be at least 2, got 1"),
])
def test_a_value_out_of_range_is_refused_when_the_config_is_made(cls: type, change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        cls(**{**REQUIRED.get(cls, {}), **change})
    assert str(error.value) == message
    assert error.value.field == [*change][-1]


def test_every_default_is_valid_and_a_nested_config_must_be_a_config() -> None:
    for cls in (DiffusionConfig, TrainConfig, DataConfig, VAEConfig, ClassifierConfig, VAERun, ClassifierRun, SamplerSetting):
        cls()
    with pytest.raises(ConfigError, match="model must be a DenoiserConfig, got dict"):
        RunConfig(model={"arch": "mlp"})  # type: ignore[arg-type]


def test_a_refused_value_read_from_a_mapping_is_named_by_its_path() -> None:
    with pytest.raises(ConfigError, match=r"^RunConfig\.train\.lr must be positive, got -1.0$"):
        from_dict(RunConfig, {"model": to_dict(tiny_run().model), "train": {"lr": -1}})
    with pytest.raises(ConfigError, match=r"^preset p.yaml: evaluate\.samplers\[0\]: unknown sampler 'euler'; accepted: ddpm"):
        from_dict(SamplerSetting, {"sampler": "euler"}, "preset p.yaml: evaluate.samplers[0]")
    with pytest.raises(ConfigError, match=r"^TrainConfig\.steps must be a positive integer, got 0$"):
        replace(TrainConfig(), steps=0)

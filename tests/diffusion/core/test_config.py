import json

import pytest

from diffusion.core.config import ConfigError, DenoiserConfig, RunConfig, TrainConfig, from_dict, replace, to_dict
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

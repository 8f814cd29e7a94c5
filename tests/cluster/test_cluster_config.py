"""ray_cluster.yaml against Ray's own cluster-launcher schema, and a broken copy that must be rejected."""

from __future__ import annotations

import copy
import re
import sys
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.servers import ROOT

CONFIG = ROOT / "ray_cluster.yaml"


def load() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def test_the_cluster_config_passes_rays_launcher_validation() -> None:
    config = prepare_config(load())
    validate_config(config)
    assert config["provider"]["type"] == "aws"
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["node_config"]["InstanceType"].startswith("m5")
    assert nodes["gpu_worker"]["min_workers"] == 0 and nodes["gpu_worker"]["max_workers"] >= 1
    assert config["idle_timeout_minutes"] > 0


def test_the_config_pins_this_ray_and_python_and_starts_ray_with_token_auth_on_loopback() -> None:
    config = load()
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    for image in (config["docker"]["head_image"], config["docker"]["worker_image"]):
        assert image.startswith(f"rayproject/ray:{ray.__version__}-{python}-"), image
    head_start = " ".join(config["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head_start and "--dashboard-host=127.0.0.1" in head_start
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_start_ray_commands"])
    assert any("pip install" in c and "diffusion-lab" in c for c in config["setup_commands"])


def test_every_key_of_the_config_is_commented() -> None:
    uncommented = [line for line in CONFIG.read_text().splitlines()
                   if re.match(r"^\s*[A-Za-z_~.][\w~./-]*:", line) and "#" not in line
                   and not re.match(r"^\s*(- )?(DeviceName|Ebs|Name|MarketType):", line)]
    assert not uncommented, uncommented


@pytest.mark.parametrize("breakage", ["unknown top-level key", "head type not defined", "more minimum workers than max_workers"])
def test_a_broken_copy_is_rejected(breakage: str) -> None:
    config = copy.deepcopy(load())
    if breakage == "unknown top-level key":
        config["max_wokers"] = 4
    elif breakage == "head type not defined":
        config["head_node_type"] = "cpu_head"
    else:
        config["available_node_types"]["gpu_worker"]["min_workers"] = config["max_workers"] + 1
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validate_config(prepare_config(config))

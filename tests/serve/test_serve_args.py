"""The Serve app's arguments (``serve run`` key=value strings, config.yaml, ``python -m serve`` flags), without a server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from serve.app import Limits, build_app, parse_limits

CONFIG = Path(__file__).resolve().parents[2] / "serve" / "config.yaml"


def test_limits_come_from_strings_numbers_or_defaults() -> None:
    assert parse_limits({}) == Limits()
    assert parse_limits({"max_work": "500", "deadline_s": "2.5", "refresh_s": 0}) == \
        Limits(max_work=500, deadline_s=2.5, refresh_s=0.0)
    args = yaml.safe_load(CONFIG.read_text())["applications"][0]["args"]
    assert parse_limits(args) == Limits()  # the config file spells out the defaults


@pytest.mark.parametrize("key,value,named", [
    ("max_work", "lots", "max_work must be a number"),
    ("max_work", 0, "max_work must be a finite int of at least 1"),
    ("max_queued", True, "max_queued must be a finite int"),
    ("deadline_s", float("nan"), "deadline_s must be a finite float"),
    ("deadline_s", -1, "deadline_s must be a finite float of at least 0.01"),
    ("refresh_s", "inf", "refresh_s must be a finite float"),
])
def test_a_bad_limit_is_refused_naming_it(tmp_path: Path, key: str, value: object, named: str) -> None:
    (tmp_path / "models").mkdir()
    with pytest.raises(ValueError, match=named):
        build_app({"lab": str(tmp_path), key: value})


def test_an_unknown_argument_is_refused_listing_the_accepted_ones(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    with pytest.raises(ValueError, match="unknown argument.*max_wrok.*accepted.*max_work"):
        build_app({"lab": str(tmp_path), "max_wrok": 5})

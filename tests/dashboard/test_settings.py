"""The dashboard's settings come from whoever starts it (flags, else environment); a visitor only reads them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.settings import DashboardSettings, parse_settings
from tests.servers import ROOT, free_port

APP = str(ROOT / "dashboard" / "app.py")
SETTINGS_ENV = ("DIFFUSION_LAB", "DIFFUSION_SERVE_URL", "DIFFUSION_RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")


def shown_text(node: Any) -> list[str]:
    """Every value in an AppTest element tree (texts, codes, captions, messages, widget values)."""
    values = [str(node.value)] if hasattr(node, "value") and not callable(node.value) else []
    for child in getattr(node, "children", {}).values():
        values += shown_text(child)
    return values


def start(argv: list[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> AppTest:
    """The dashboard as ``streamlit run dashboard/app.py -- ARGV`` starts it, with only ``env`` of its variables set."""
    for key in SETTINGS_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", [APP, *argv])
    app = AppTest.from_file(APP, default_timeout=120).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_the_sidebar_shows_the_flags_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ray, serve = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    token_file = tmp_path / "token"
    app = start(["--lab", str(tmp_path / "lab"), "--serve-url", serve + "/", "--ray-address", ray,
                 "--ray-token-file", str(token_file)], monkeypatch, DIFFUSION_LAB="/elsewhere")
    assert not app.sidebar.text_input and not app.sidebar.text_area and not app.sidebar.selectbox
    assert [c.value for c in app.sidebar.code] == [str(tmp_path / "lab"), serve, ray, str(token_file)]
    assert [c.value for c in app.sidebar.caption][:4] == ["Lab store", "Serve URL", "Ray job API", "Ray token file"]
    assert app.session_state["settings"] == DashboardSettings(str(tmp_path / "lab"), serve, ray, str(token_file))


@pytest.mark.slow
def test_the_pages_use_the_environment_and_hide_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file, secret = tmp_path / "token", "f00d" * 16
    token_file.write_text(secret)
    token_file.chmod(0o600)
    ray = f"http://127.0.0.1:{free_port()}"
    app = start([], monkeypatch, DIFFUSION_LAB=str(tmp_path / "lab"), DIFFUSION_RAY_ADDRESS=ray,
                RAY_AUTH_TOKEN_PATH=str(token_file))
    assert [c.value for c in app.sidebar.code] == [str(tmp_path / "lab"), "http://127.0.0.1:8000", ray, str(token_file)]
    for page in ("leaderboard", "live", "jobs"):
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, [e.value for e in app.exception]
        assert not app.text_input or page == "jobs"  # the Jobs form's lab is the page's only text field
        assert not any(secret in text for text in shown_text(app._tree)), page
    assert ray in app.warning[0].value  # the Jobs page asked the operator's address


def test_flags_win_over_the_environment_and_the_defaults_are_local() -> None:
    env = {"DIFFUSION_LAB": "s3://b/lab", "DIFFUSION_SERVE_URL": "http://serve:8000/",
           "DIFFUSION_RAY_ADDRESS": "http://ray:8265", "RAY_AUTH_TOKEN_PATH": "/etc/ray/token"}
    expected = DashboardSettings("s3://b/lab", "http://serve:8000", "http://ray:8265", "/etc/ray/token")
    assert parse_settings([], env) == expected
    assert parse_settings(["--lab", "/srv/lab", "--ray-token-file", "/t"], env).lab == "/srv/lab"
    assert parse_settings(["--ray-token-file", "/t"], env).ray_token_file == "/t"
    local = parse_settings([], {})
    assert (local.lab, local.serve_url) == ("./lab", "http://127.0.0.1:8000")
    assert local.ray_address == "http://127.0.0.1:8265"
    assert local.ray_token_file == str(Path("~/.ray/auth_token").expanduser())

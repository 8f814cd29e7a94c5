"""Where the dashboard looks: the lab store, the Serve app and the Ray job API (flags after ``--``, else environment).

The operator sets them when starting the dashboard; a visitor only sees them (the Jobs page
sends the token in the token file to the Ray job API, and the Live page fetches from the Serve
URL, so a visitor who could change them could send the token, or make requests, anywhere).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from diffusion.lab.store import default_lab

SETTINGS_HELP = ("flags after `--` (`--lab`, `--serve-url`, `--ray-address`, `--ray-token-file`) or the environment "
                 "(DIFFUSION_LAB, DIFFUSION_SERVE_URL, DIFFUSION_RAY_ADDRESS, RAY_AUTH_TOKEN_PATH)")


@dataclass(frozen=True)
class DashboardSettings:
    """The dashboard's three addresses and the Ray token's file."""

    lab: str
    serve_url: str
    ray_address: str
    ray_token_file: str


def parse_settings(argv: Sequence[str], environ: dict[str, str] | None = None) -> DashboardSettings:
    """``streamlit run dashboard/app.py -- --lab PATH [--serve-url URL] [--ray-address URL] [--ray-token-file F]``.

    Each flag falls back to an environment variable (DIFFUSION_LAB, DIFFUSION_SERVE_URL,
    DIFFUSION_RAY_ADDRESS, RAY_AUTH_TOKEN_PATH), then to the local defaults.
    """
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="streamlit run dashboard/app.py --", add_help=False)
    parser.add_argument("--lab", default=default_lab(env))
    parser.add_argument("--serve-url", default=env.get("DIFFUSION_SERVE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--ray-address", default=env.get("DIFFUSION_RAY_ADDRESS", "http://127.0.0.1:8265"))
    parser.add_argument("--ray-token-file", default=env.get("RAY_AUTH_TOKEN_PATH", str(Path("~/.ray/auth_token").expanduser())))
    args, _unknown = parser.parse_known_args(list(argv))
    return DashboardSettings(args.lab.strip(), args.serve_url.strip().rstrip("/"), args.ray_address.strip().rstrip("/"),
                             str(Path(args.ray_token_file.strip()).expanduser()))


def settings_shown(settings: DashboardSettings) -> dict[str, str]:
    """What the sidebar shows, label -> value: the addresses and the token's file, never the token."""
    return {"Lab store": settings.lab, "Serve URL": settings.serve_url, "Ray job API": settings.ray_address,
            "Ray token file": settings.ray_token_file}

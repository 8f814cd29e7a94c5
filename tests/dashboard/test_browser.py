"""The dashboard in a real browser: ``streamlit run`` on a free port, Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dashboard.screenshots import CHROMIUM, PAGES, capture_pages, running_dashboard
from tests.servers import free_port

# CI installs Chromium and sets DIFFUSION_LAB_REQUIRE_BROWSER, so there a missing browser fails instead of skipping
REQUIRED = os.environ.get("DIFFUSION_LAB_REQUIRE_BROWSER") == "1"
if not REQUIRED:
    pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.slow,  # starts the smoke pipeline, Serve, Streamlit and Chromium
              pytest.mark.skipif(not REQUIRED and not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install -y chromium")]


def test_every_page_renders_its_charts_and_images_without_an_exception(smoke_lab: str, tmp_path: Path) -> None:
    nothing_there = {"DIFFUSION_SERVE_URL": f"http://127.0.0.1:{free_port()}",
                     "DIFFUSION_RAY_ADDRESS": f"http://127.0.0.1:{free_port()}"}
    with running_dashboard(smoke_lab, nothing_there) as url:
        saved = capture_pages(url, tmp_path / "screenshots")
    assert [p.name for p in saved] == [f"{title.lower().replace(' ', '-')}.png" for title in PAGES]
    assert all(p.stat().st_size > 20_000 for p in saved)  # rendered pages, not blank ones

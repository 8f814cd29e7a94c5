"""``python -m dashboard.screenshots --lab PATH --out DIR``: every page in headless Chromium, one PNG each.

Starts ``streamlit run dashboard/app.py`` on a free port, drives the system's Chromium with
Playwright (``pip install playwright``; never ``playwright install``: it uses
``/usr/bin/chromium``), waits for each page's charts and images, fails on an exception box,
and saves a screenshot. The browser test and the README's pictures both come from here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from diffusion.network import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# page title in the navigation -> what must be visible before the screenshot
PAGES: dict[str, list[str]] = {
    "Leaderboard": [".js-plotly-plot .main-svg", '[data-testid="stDataFrame"]'],
    "Samples": ['[data-testid="stImage"] img'],
    "Denoising paths": ['[data-testid="stImage"] img', '[data-testid="stSlider"]'],
    "Sweeps": ['[data-testid="stDataFrame"]', ".js-plotly-plot .main-svg"],
    "Metric robustness": [".js-plotly-plot .main-svg"],
    "Live sampling": ['[data-testid="stAlert"], [data-testid="stForm"]'],
    "Jobs": ['[data-testid="stAlert"], [data-testid="stDataFrame"]'],
}


class PageFailed(AssertionError):
    """A page showed Streamlit's exception box or never rendered what it should."""


@contextlib.contextmanager
def running_dashboard(lab: str, extra_env: dict[str, str] | None = None, startup_s: float = 60) -> Iterator[str]:
    """``streamlit run dashboard/app.py -- --lab LAB`` on a free port; yields its URL; stopped afterwards.

    It runs in the repository root, so Streamlit reads ``.streamlit/config.toml`` there (loopback
    only, headless, no usage statistics), as it does for a user who follows the README.
    """
    port = free_port()
    command = [str(Path(sys.executable).with_name("streamlit")), "run", str(ROOT / "dashboard" / "app.py"),
               "--server.port", str(port), "--", "--lab", lab]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(extra_env or {})}, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read()[-3000:] if process.stdout and process.poll() is not None else ""
                raise RuntimeError(f"the dashboard did not start within {startup_s:.0f} s\n{output}")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def capture_pages(url: str, out: Path, pages: dict[str, list[str]] | None = None, timeout_ms: int = 60_000) -> list[Path]:
    """Open each page by its navigation link, wait for its content, refuse exception boxes, save a PNG."""
    from playwright.sync_api import sync_playwright  # a development extra, needed only here

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="networkidle")
            for title, selectors in (pages or PAGES).items():
                page.get_by_role("link", name=title, exact=True).first.click()
                page.get_by_role("heading", name=title).first.wait_for(timeout=timeout_ms)
                for selector in selectors:
                    page.locator(selector).first.wait_for(state="visible", timeout=timeout_ms)
                page.wait_for_timeout(800)  # plotly's transitions, before the picture
                if page.locator('[data-testid="stException"]').count():
                    raise PageFailed(f"{title}: Streamlit shows an exception box")
                path = out / f"{title.lower().replace(' ', '-')}.png"
                page.screenshot(path=str(path))
                saved.append(path)
        finally:
            browser.close()
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m dashboard.screenshots", description=__doc__.split("\n")[0])
    parser.add_argument("--lab", required=True)
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--pages", nargs="+", default=None, help=f"page titles (default: all of {list(PAGES)})")
    args = parser.parse_args(argv)
    unknown = [p for p in args.pages or [] if p not in PAGES]
    if unknown:
        print(f"python -m dashboard.screenshots: error: unknown page(s) {unknown}; accepted: {list(PAGES)}", file=sys.stderr)
        return 2
    chosen = {p: PAGES[p] for p in args.pages} if args.pages else PAGES
    with running_dashboard(args.lab) as url:
        for path in capture_pages(url, args.out, chosen):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The lab store every dashboard test reads: what the smoke pipeline writes, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers import run_smoke_pipeline


@pytest.fixture(scope="session")
def smoke_lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lab = tmp_path_factory.mktemp("dashboard") / "lab"
    run_smoke_pipeline(lab)
    return lab

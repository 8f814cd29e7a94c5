"""The Ray token file of ``python -m cluster.local``: created private, refused when others may read it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cluster.local import ensure_token
from tests.servers import clean_env, run


def test_a_missing_token_file_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "ray" / "token"
    token = ensure_token(path)
    assert len(token) == 64 and int(token, 16) >= 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_token(path) == token


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o666])
def test_a_token_file_that_group_or_others_may_access_is_refused_saying_chmod_600(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "token"
    path.write_text("ab" * 32)
    path.chmod(mode)
    with pytest.raises(SystemExit, match=f"mode {mode:04o}") as refused:
        ensure_token(path)
    assert f"chmod 600 {path}" in str(refused.value.code)
    path.chmod(0o600)
    assert ensure_token(path) == "ab" * 32
    path.chmod(0o400)
    assert ensure_token(path) == "ab" * 32


@pytest.mark.slow
def test_up_and_join_refuse_a_readable_token_file_before_starting_anything(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("ab" * 32)
    path.chmod(0o644)
    env = clean_env(str(tmp_path))
    for command in (["up"], ["join", "--address", "127.0.0.1:1"]):
        refused = run([sys.executable, "-m", "cluster.local", *command, "--token-file", str(path)], env, timeout=60)
        assert refused.returncode != 0 and f"chmod 600 {path}" in refused.stderr, refused.stdout + refused.stderr

"""``python -m diffusion train --resume`` continues only the run whose config saved the state."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffusion.lab.checkpoint import config_differences, run_state_from_bytes, run_state_to_bytes
from diffusion.lab.store import CheckpointError
from tests.diffusion.cli.test_cli import TINY, run


@pytest.mark.slow
def test_resume_refuses_a_state_left_by_a_run_of_another_config(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    first = ["train", "--model", "mlp", "--steps", "4", "--checkpoint-every", "2", "--lab", str(lab), "--name", "r", *TINY]
    run(*first, "--lr", "0.002")
    state = lab / "runs" / "r" / "state.pt"
    left_by_first = state.read_bytes()
    fresh = run(*first, "--lr", "0.001")  # a new run under the same name...
    assert "starting r afresh" in fresh.stderr
    state.write_bytes(left_by_first)  # ...stopped before its first checkpoint: the first run's state is what is left
    resumed = run(*first, "--lr", "0.001", "--resume", check=False)
    assert resumed.returncode == 2, resumed.stderr
    assert "the flags differ from the saved run's config" in resumed.stderr
    assert "train.lr: saved 0.002, flags 0.001" in resumed.stderr


def test_a_resume_state_names_its_config_and_an_untagged_one_is_refused() -> None:
    config = {"train": {"lr": 0.002, "steps": 4}, "model": {"arch": "mlp"}}
    assert run_state_from_bytes(run_state_to_bytes(config, b"\x80trainer"), "s") == (config, b"\x80trainer")
    with pytest.raises(CheckpointError, match="s: a resume state that does not say which run config saved it"):
        run_state_from_bytes(b"PK\x03\x04old torch.save state", "s")
    assert config_differences(config, {"train": {"lr": 0.001, "steps": 4}, "model": {"arch": "mlp", "width": 8}}) == [
        "model.width: saved '(absent)', flags 8", "train.lr: saved 0.002, flags 0.001"]

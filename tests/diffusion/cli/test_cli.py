"""``python -m diffusion``, run as a user runs it: a real subprocess; wrong arguments through ``main`` in this process
(the same parser and error path, without paying torch's import once per case)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from diffusion.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
TINY = ["--width", "8", "--depth", "1", "--timesteps", "20", "--batch-size", "16", "--warmup-steps", "1",
        "--sample-steps", "4", "--precision", "fp32"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-m", "diffusion", *args], capture_output=True, text=True, cwd=ROOT,
                            env=env, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--model", "vit"], "invalid choice: 'vit' (choose from 'mlp', 'cnn', 'unet', 'resunet', 'attnunet')"),
        (["train", "--model", "mlp", "--steps", "-5"], "argument --steps: must be a positive integer, got -5"),
        (["train", "--model", "mlp", "--schedule", "sqrt"], "choose from 'linear', 'cosine'"),
        (["train", "--model", "mlp", "--lr", "-1"], "lr must be positive, got -1.0"),
        (["train", "--model", "mlp", "--name", "../up"], "--name '../up' is not accepted"),
        (["train", "--model", "mlp", "--dataset", "mnist", "--data-root", "/nonexistent", "--steps", "1"],
         "full MNIST is not under /nonexistent"),
    ],
)
def test_wrong_arguments_give_one_line_naming_what_is_accepted(args: list[str], message: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = main([*args, "--lab", str(tmp_path / "lab")])
    except SystemExit as exit_:  # argparse exits with 2 on its own errors
        status = exit_.code
    assert status == 2
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert message in lines[0]


@pytest.mark.slow
def test_train_exports_a_checkpoint_and_pictures_then_resumes_and_samples(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    run("train", "--model", "unet", "--steps", "6", "--checkpoint-every", "3", "--lab", str(lab), "--name", "u", *TINY)
    model_dir = lab / "models" / "u"
    assert {p.name for p in model_dir.iterdir()} == {"weights.safetensors", "card.json", "grid.png", "paths.png", "paths.gif",
                                                    "paths.safetensors"}
    assert Image.open(model_dir / "grid.png").size == (2 * 302, 2 * 152)

    resumed = run("train", "--model", "unet", "--steps", "9", "--checkpoint-every", "3", "--lab", str(lab), "--name",
                  "u", "--resume", *TINY, check=False)
    assert resumed.returncode == 2 and "flags differ from the saved run" in resumed.stderr

    out = tmp_path / "more.png"
    run("sample", "--lab", str(lab), "--name", "u", "--out", str(out), "--num-images", "12", "--steps", "3")
    assert Image.open(out).size[0] > 0


@pytest.mark.slow
def test_resume_continues_from_the_saved_step(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    args = ["train", "--model", "mlp", "--steps", "8", "--checkpoint-every", "4", "--lab", str(lab), *TINY]
    run(*args)
    result = run(*args, "--resume")
    assert "8/8" in result.stderr  # the bar starts at the saved step, nothing is redone

"""The Jobs page's command line: checked pieces, quoted for the shell that Ray runs it in."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.job_entrypoint import KINDS, LAB_SCHEMES, PRESETS, EntrypointError, job_entrypoint
from tests.servers import ROOT

HOSTILE_LABS = [
    "/tmp/lab; touch {marker}",
    "/tmp/lab$(touch {marker})",
    "/tmp/lab`touch {marker}`",
    "/tmp/my lab && touch {marker}",
    "/tmp/lab' ; touch {marker}; echo '",
    "/tmp/lab\" ; touch {marker}; echo \"",
    "/tmp/lab | touch {marker} > /dev/null &",
    "s3://bucket/lab;touch {marker}",
    "gs://bucket/$(touch {marker})",
]


def shell_arguments(entrypoint: str, tmp_path: Path) -> list[str]:
    """What ``python`` receives when a shell runs ``entrypoint`` (as Ray's job supervisor does: Popen, shell=True)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    python = fake_bin / "python"
    python.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    python.chmod(0o755)
    ran = subprocess.run(entrypoint, shell=True, env={"PATH": f"{fake_bin}:/usr/bin:/bin"}, capture_output=True,
                         text=True, timeout=30)
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout.splitlines()[-1])


@pytest.mark.parametrize("template", HOSTILE_LABS)
def test_a_hostile_lab_reaches_the_job_unchanged_and_runs_nothing(template: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    lab = template.format(marker=marker)
    entrypoint = job_entrypoint("evaluate", "smoke", lab)
    expected = ["python", "-m", "jobs.evaluate", "--preset", "smoke", "--lab", lab]
    assert shlex.split(entrypoint) == expected
    assert shell_arguments(entrypoint, tmp_path) == expected[1:]
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize(("lab", "said"), [
    ("/tmp/lab\ntouch /tmp/x", "control character"),
    ("/tmp/lab\r", "control character"),
    ("/tmp/\x00lab", "control character"),
    ("lab", "absolute path"),
    ("./lab", "absolute path"),
    ("-rf", "absolute path"),
    ("", "absolute path"),
    ("~/lab", "absolute path"),
    ("http://example.com/lab", "s3://BUCKET"),
    ("file:///tmp/lab", "s3://BUCKET"),
    ("s3://", "s3://BUCKET"),
    ("s3:///lab", "s3://BUCKET"),
])
def test_a_lab_neither_absolute_nor_an_allowed_uri_is_refused_saying_what_is_accepted(lab: str, said: str) -> None:
    with pytest.raises(EntrypointError, match=said) as refused:
        job_entrypoint("pipeline", "quick", lab)
    assert repr(lab) in str(refused.value)


@pytest.mark.slow
def test_an_unknown_job_or_preset_is_refused_naming_the_accepted_ones() -> None:
    with pytest.raises(EntrypointError, match="accepted: pipeline, sweep, evaluate"):
        job_entrypoint("pipeline; rm -rf /", "quick", "/tmp/lab")
    with pytest.raises(EntrypointError, match=f"accepted: {', '.join(PRESETS)}"):
        job_entrypoint("sweep", "quick --lab /elsewhere", "/tmp/lab")


@pytest.mark.slow
def test_every_kind_and_preset_gives_a_plain_command_and_the_uri_schemes_are_named() -> None:
    assert job_entrypoint("pipeline", "quick", "/srv/lab") == "python -m jobs.pipeline --preset quick --lab /srv/lab"
    assert {shlex.split(job_entrypoint(k, p, "s3://b/lab"))[2] for k in KINDS for p in PRESETS} == set(KINDS.values())
    assert {"s3", "gs"} <= set(LAB_SCHEMES)


def test_the_presets_offered_are_the_preset_files() -> None:
    assert list(PRESETS) == sorted(p.stem for p in (ROOT / "jobs" / "presets").glob("*.yaml"))
    assert {"smoke", "quick", "full"} <= set(PRESETS)

"""The command line of a job the dashboard submits, built from checked pieces and quoted for Ray's shell.

Ray runs a job's entrypoint through a shell, and its job API takes one string, not an argument
list: every value is checked against what it may be, then quoted with ``shlex``, so that
``shlex.split(entrypoint)`` gives back exactly the pieces.
"""

from __future__ import annotations

import shlex
from pathlib import Path

KINDS = {"pipeline": "jobs.pipeline", "sweep": "jobs.sweep", "evaluate": "jobs.evaluate"}
PRESET_DIR = Path(__file__).resolve().parents[1] / "jobs" / "presets"  # read as files: dashboard never imports jobs
PRESETS = tuple(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))  # the presets the operator installed
LAB_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs")  # pyarrow filesystems a cluster's lab store may live on


class EntrypointError(ValueError):
    """A job setting that is not accepted, with what is."""


def check_lab(lab: str) -> str:
    """``lab`` if it is an absolute path or a URI of an allowed scheme, on one line; else EntrypointError."""
    bad = sorted({repr(c) for c in lab if ord(c) < 32 or ord(c) == 127})
    if bad:
        raise EntrypointError(f"lab store {lab!r} contains control character(s) {', '.join(bad)}; "
                              "a lab store is an absolute path or a URI on one line")
    scheme, separator, rest = lab.partition("://")
    if separator:
        if scheme not in LAB_SCHEMES or not rest.split("/", 1)[0]:
            accepted = ", ".join(f"{s}://BUCKET/..." for s in LAB_SCHEMES)
            raise EntrypointError(f"lab store {lab!r} is not accepted: a URI must be one of {accepted}")
        return lab
    if not lab.startswith("/"):
        raise EntrypointError(f"lab store {lab!r} is not accepted: give an absolute path (starting with /) "
                              f"or a URI ({', '.join(f'{s}://' for s in LAB_SCHEMES)})")
    return lab


def job_entrypoint(kind: str, preset: str, lab: str) -> str:
    """``python -m jobs.KIND --preset PRESET --lab LAB``, each value checked, then shell-quoted."""
    if kind not in KINDS:
        raise EntrypointError(f"job {kind!r} is not accepted; accepted: {', '.join(KINDS)}")
    if preset not in PRESETS:
        raise EntrypointError(f"preset {preset!r} is not accepted; accepted: {', '.join(PRESETS)}")
    return shlex.join(["python", "-m", KINDS[kind], "--preset", preset, "--lab", check_lab(lab)])

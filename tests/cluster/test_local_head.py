"""``python -m cluster.local`` and ``ray job submit`` for real: a token-protected head, the smoke pipeline as a job."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streamlit.testing.v1 import AppTest

from cluster.local import dashboard_get
from diffusion.lab.store import LabStore
from tests.servers import RAY, ROOT, clean_env, free_port, run

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def dashboard_jobs_page(lab: Path, address: str, token_file: Path) -> AppTest:
    """The dashboard's Jobs page pointed at this head (AppTest reads the settings from the environment)."""
    saved = {k: os.environ.get(k) for k in ("DIFFUSION_LAB", "DIFFUSION_RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    os.environ.update({"DIFFUSION_LAB": str(lab), "DIFFUSION_RAY_ADDRESS": address,
                       "RAY_AUTH_TOKEN_PATH": str(token_file)})
    try:
        app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120).run()
        app.switch_page("views/jobs.py").run()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert not app.exception, [e.value for e in app.exception]
    return app


@dataclass(frozen=True)
class Head:
    """A head that ``python -m cluster.local up`` started: its job API, token file and the environments to reach it."""

    address: str
    dashboard_port: int
    token_file: Path
    env: dict[str, str]  # no token: as a stranger
    authorised: dict[str, str]  # RAY_AUTH_MODE=token with the token file
    local: list[str]  # the CLI and its flags, for status and down
    up_stdout: str


@contextlib.contextmanager
def local_head(tmp_path: Path) -> Iterator[Head]:
    """``python -m cluster.local up`` on free ports with a token file in ``tmp_path``; ``down`` afterwards."""
    ray_tmp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    token_file = tmp_path / "token"
    gcs_port, dashboard_port = free_port(), free_port()
    env = clean_env(ray_tmp)
    local = [sys.executable, "-m", "cluster.local"]
    flags = ["--port", str(gcs_port), "--dashboard-port", str(dashboard_port), "--token-file", str(token_file)]
    up = run([*local, "up", *flags, "--num-cpus", "2", "--temp-dir", ray_tmp], env)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        authorised = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
        yield Head(f"http://127.0.0.1:{dashboard_port}", dashboard_port, token_file, env, authorised, [*local, *flags],
                   up.stdout)
    finally:
        run([*local, "down", *flags], env)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def wait_for_jobs(head: Head, submission_ids: list[str], timeout: float) -> dict[str, str]:
    """Each job's final status (or the last seen one, if ``timeout`` runs out first)."""
    token = head.token_file.read_text().strip()
    deadline, states = time.monotonic() + timeout, dict.fromkeys(submission_ids, "")
    while time.monotonic() < deadline and not all(state in TERMINAL for state in states.values()):
        time.sleep(2)
        for job in submission_ids:
            states[job] = json.loads(dashboard_get(head.dashboard_port, f"/api/jobs/{job}", token)[1]).get("status", "")
    return states


def submit_from_the_form(page: AppTest, kind: str, preset: str, lab: str) -> AppTest:
    """Fill the Jobs page's form as a visitor would and press Submit."""
    form = {box.label: box for box in page.selectbox}
    form["Job"].set_value(kind)
    form["Preset"].set_value(preset)
    page.text_input[0].set_value(lab)
    page.button[0].click().run()
    assert not page.exception, [e.value for e in page.exception]
    return page


def test_the_smoke_pipeline_submitted_as_a_job_fills_the_lab_and_a_wrong_token_is_refused(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    with local_head(tmp_path) as head:
        address, dashboard_port, token_file, env, authorised = (head.address, head.dashboard_port, head.token_file,
                                                                 head.env, head.authorised)
        assert "token authentication on" in head.up_stdout and address in head.up_stdout
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"

        # without the token, or with a wrong one, the job API refuses
        assert dashboard_get(dashboard_port, "/api/jobs/", None)[0] == 401
        wrong = tmp_path / "wrong-token"
        wrong.write_text("0" * 64)
        refused = run([RAY, "job", "submit", "--address", address, "--no-wait", "--", "python", "-c", "pass"],
                      {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(wrong)})
        assert refused.returncode != 0
        assert "auth" in (refused.stdout + refused.stderr).lower(), refused.stdout[-2000:] + refused.stderr[-2000:]

        # with the token: the README's command, the smoke preset
        submitted = run([RAY, "job", "submit", "--address", address, "--working-dir", ".",
                         "--runtime-env", "cluster/runtime_env.yaml", "--submission-id", "smoke-1", "--no-wait",
                         "--", "python", "-m", "jobs.pipeline", "--preset", "smoke", "--lab", str(lab)], authorised)
        assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
        token = token_file.read_text().strip()
        state = wait_for_jobs(head, ["smoke-1"], 600)["smoke-1"]  # through the job API the CLI calls
        logs = run([RAY, "job", "logs", "--address", address, "smoke-1"], authorised).stdout
        assert state == "SUCCEEDED", logs[-5000:]
        status = run([RAY, "job", "status", "--address", address, "smoke-1"], authorised)
        assert "Job 'smoke-1' succeeded" in status.stdout + status.stderr
        assert "[pipeline] stage 2/2: evaluate" in logs and "[leaderboard]" in logs

        store = LabStore(lab)
        assert sorted(store.list_models(kind="denoiser")) == ["attnunet", "cnn", "mlp", "resunet", "unet"]
        assert store.list_models(kind="vae") == ["vae"] and store.list_models(kind="classifier") == ["classifier"]
        for table in ("trials", "trial_history", "scores", "robustness", "robustness_summary"):
            assert len(store.read_table(table)) > 0, table
        assert store.read_table("scores").model.nunique() == 5

        listed = json.loads(dashboard_get(dashboard_port, "/api/jobs/", token)[1])
        assert [job["status"] for job in listed if job.get("submission_id") == "smoke-1"] == ["SUCCEEDED"]
        status = run([*head.local, "status"], env)
        assert status.returncode == 0 and "1 succeeded" in status.stdout, status.stdout

        # the dashboard's Jobs page lists the job with its log tail, and submits an evaluation
        jobs_page = dashboard_jobs_page(lab, address, token_file)
        assert jobs_page.dataframe[0].value.loc[0, "status"] == "SUCCEEDED"
        assert "[leaderboard]" in jobs_page.code[0].value
        submit_from_the_form(jobs_page, "evaluate", "smoke", str(lab))
        [entrypoint] = [code.value for code in jobs_page.main.code if code.language == "bash"]
        assert shlex.split(entrypoint) == ["python", "-m", "jobs.evaluate", "--preset", "smoke", "--lab", str(lab)]
        submitted_id = jobs_page.success[0].value.split()[1]
        state = wait_for_jobs(head, [submitted_id], 300)[submitted_id]
        logs = run([RAY, "job", "logs", "--address", address, submitted_id], authorised).stdout
        assert state == "SUCCEEDED", logs[-3000:]
    assert run([*head.local, "status"], env).returncode == 1


def test_hostile_labs_typed_into_the_jobs_form_reach_the_job_unchanged_and_run_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    # every shell metacharacter in two submissions (each is a real job: the unit test runs more through /bin/sh)
    accepted = [f"{tmp_path}/my lab; touch {marker} $(touch {marker}) `touch {marker}`",
                f"{tmp_path}/lab' && touch {marker} && echo '"]
    refused = {f"{tmp_path}/lab\ntouch {marker}": "control character", f"lab; touch {marker}": "absolute path",
               f"http://127.0.0.1:1/lab; touch {marker}": "s3://BUCKET"}
    with local_head(tmp_path) as head:
        page = dashboard_jobs_page(tmp_path / "lab", head.address, head.token_file)
        for lab, reason in refused.items():
            submit_from_the_form(page, "evaluate", "smoke", lab)
            assert not page.success and "Not submitted" in page.error[0].value and reason in page.error[0].value
        submitted = {}
        for lab in accepted:
            submit_from_the_form(page, "evaluate", "smoke", lab)
            submitted[page.success[0].value.split()[1]] = lab
        states = wait_for_jobs(head, list(submitted), 300)
        token = head.token_file.read_text().strip()
        for job, lab in submitted.items():
            info = json.loads(dashboard_get(head.dashboard_port, f"/api/jobs/{job}", token)[1])
            expected = ["python", "-m", "jobs.evaluate", "--preset", "smoke", "--lab", lab]
            assert shlex.split(info["entrypoint"]) == expected
            logs = run([RAY, "job", "logs", "--address", head.address, job], head.authorised).stdout
            assert states[job] == "FAILED", logs[-3000:]  # an empty lab: nothing to evaluate
            assert f"no exported denoisers in {lab}" in logs, logs[-3000:]  # the lab as typed
            assert token not in info["entrypoint"] + logs
    assert not marker.exists()

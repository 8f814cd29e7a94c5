"""``python -m cluster.local`` and ``ray job submit`` for real: a token-protected head, the smoke pipeline as a job."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from cluster.local import dashboard_get
from diffusion.store import LabStore
from tests.servers import RAY, ROOT, clean_env, free_port, run

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def dashboard_jobs_page(lab: Path, address: str, token_file: Path) -> AppTest:
    """The dashboard's Jobs page pointed at this head (AppTest reads the settings from the environment)."""
    saved = {k: os.environ.get(k) for k in ("DIFFUSION_LAB", "DIFFUSION_RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    os.environ.update({"DIFFUSION_LAB": str(lab), "DIFFUSION_RAY_ADDRESS": address, "RAY_AUTH_TOKEN_PATH": str(token_file)})
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


def test_the_smoke_pipeline_submitted_as_a_job_fills_the_lab_and_a_wrong_token_is_refused(tmp_path: Path) -> None:
    ray_tmp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    token_file, lab = tmp_path / "token", tmp_path / "lab"
    gcs_port, dashboard_port = free_port(), free_port()
    env = clean_env(ray_tmp)
    local = [sys.executable, "-m", "cluster.local"]
    flags = ["--port", str(gcs_port), "--dashboard-port", str(dashboard_port), "--token-file", str(token_file)]
    up = run([*local, "up", *flags, "--num-cpus", "2", "--temp-dir", ray_tmp], env)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "token authentication on" in up.stdout and f"http://127.0.0.1:{dashboard_port}" in up.stdout
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        address = f"http://127.0.0.1:{dashboard_port}"

        # without the token, or with a wrong one, the job API refuses
        assert dashboard_get(dashboard_port, "/api/jobs/", None)[0] == 401
        wrong = tmp_path / "wrong-token"
        wrong.write_text("0" * 64)
        refused = run([RAY, "job", "submit", "--address", address, "--no-wait", "--", "python", "-c", "pass"],
                      {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(wrong)})
        assert refused.returncode != 0
        assert "auth" in (refused.stdout + refused.stderr).lower(), refused.stdout[-2000:] + refused.stderr[-2000:]

        # with the token: the README's command, the smoke preset
        authorised = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
        submitted = run([RAY, "job", "submit", "--address", address, "--working-dir", ".",
                         "--runtime-env", "cluster/runtime_env.yaml", "--submission-id", "smoke-1", "--no-wait",
                         "--", "python", "-m", "jobs.pipeline", "--preset", "smoke", "--lab", str(lab)], authorised)
        assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
        token = token_file.read_text().strip()
        deadline, state = time.monotonic() + 600, ""
        while time.monotonic() < deadline and state not in TERMINAL:  # the job API the CLI calls
            time.sleep(2)
            state = json.loads(dashboard_get(dashboard_port, "/api/jobs/smoke-1", token)[1]).get("status", "")
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
        status = run([*local, "status", *flags], env)
        assert status.returncode == 0 and "1 succeeded" in status.stdout, status.stdout

        # the dashboard's Jobs page lists the job with its log tail, and submits an evaluation
        jobs_page = dashboard_jobs_page(lab, address, token_file)
        assert jobs_page.dataframe[0].value.loc[0, "status"] == "SUCCEEDED"
        assert "[leaderboard]" in jobs_page.code[0].value
        form = {box.label: box for box in jobs_page.selectbox}
        form["Job"].set_value("evaluate")
        form["Preset"].set_value("smoke")
        jobs_page.button[0].click().run()
        assert not jobs_page.exception and "python -m jobs.evaluate --preset smoke" in jobs_page.success[0].value
        submitted_id = jobs_page.success[0].value.split()[1].rstrip(":")
        deadline, state = time.monotonic() + 300, ""
        while time.monotonic() < deadline and state not in TERMINAL:
            time.sleep(2)
            state = json.loads(dashboard_get(dashboard_port, f"/api/jobs/{submitted_id}", token)[1]).get("status", "")
        assert state == "SUCCEEDED", run([RAY, "job", "logs", "--address", address, submitted_id], authorised).stdout[-3000:]
    finally:
        run([*local, "down", *flags], env)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert run([*local, "status", *flags], env).returncode == 1

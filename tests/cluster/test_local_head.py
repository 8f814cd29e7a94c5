"""``python -m cluster.local`` and ``ray job submit`` for real: a token-protected head, the smoke pipeline as a job."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cluster.local import dashboard_get
from diffusion.lab.registry import CARD_FILE, WEIGHTS_FILE, ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import SCORES, TABLES, TableStore
from tests.servers import RAY, ROOT, SMOKE_JOB, Head, run, wait_for_jobs

pytestmark = pytest.mark.slow  # starts a token-protected Ray head and Ray jobs

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


def submit_from_the_form(page: AppTest, kind: str, preset: str, lab: str) -> AppTest:
    """Fill the Jobs page's form as a visitor would and press Submit."""
    form = {box.label: box for box in page.selectbox}
    form["Job"].set_value(kind)
    form["Preset"].set_value(preset)
    page.text_input[0].set_value(lab)
    page.button[0].click().run()
    assert not page.exception, [e.value for e in page.exception]
    return page


def test_the_smoke_pipeline_submitted_as_a_job_fills_the_lab_and_a_wrong_token_is_refused(
        smoke_head: Head, smoke_lab: str, tmp_path: Path) -> None:
    head, lab = smoke_head, smoke_lab  # the session's head; the smoke pipeline ran there as job SMOKE_JOB
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

    # with the token: the README's command, the smoke preset (submitted by tests.servers.submit_smoke_pipeline)
    token = token_file.read_text().strip()
    logs = run([RAY, "job", "logs", "--address", address, SMOKE_JOB], authorised).stdout
    status = run([RAY, "job", "status", "--address", address, SMOKE_JOB], authorised)
    assert f"Job '{SMOKE_JOB}' succeeded" in status.stdout + status.stderr
    assert "[pipeline] stage 2/2: evaluate" in logs and "[leaderboard]" in logs

    store = LabStore(lab)
    models, tables = ModelRegistry(store), TableStore(store)
    assert sorted(models.list_models(kind="denoiser")) == ["attnunet", "cnn", "mlp", "resunet", "unet"]
    assert models.list_models(kind="vae") == ["vae"] and models.list_models(kind="classifier") == ["classifier"]
    for table in TABLES.values():  # trials, trial_history, scores, robustness, robustness_summary
        assert len(tables.read(table)) > 0, table.name
    assert tables.read(SCORES).model.nunique() == 5

    listed = json.loads(dashboard_get(dashboard_port, "/api/jobs/", token)[1])
    assert [job["status"] for job in listed if job.get("submission_id") == SMOKE_JOB] == ["SUCCEEDED"]
    status = run([*head.local, "status"], env)
    succeeded = sum(job["status"] == "SUCCEEDED" for job in listed)
    assert status.returncode == 0 and f"{succeeded} succeeded" in status.stdout, status.stdout

    # the dashboard's Jobs page lists the job with its log tail, and submits an evaluation (of one of the
    # smoke lab's models with its embeddings, copied to a lab of its own: the form's job, not five models again)
    one_model = tmp_path / "one-model-lab"
    for model in ("mlp", "vae", "classifier"):
        for file in (WEIGHTS_FILE, CARD_FILE):
            relpath = models.model_path(model, file)
            LabStore(one_model).write_bytes(relpath, store.read_bytes(relpath))
    jobs_page = dashboard_jobs_page(lab, address, token_file)
    assert jobs_page.dataframe[0].value.set_index("submission_id").loc[SMOKE_JOB, "status"] == "SUCCEEDED"
    assert "[leaderboard]" in jobs_page.code[0].value
    submit_from_the_form(jobs_page, "evaluate", "smoke", str(one_model))
    [entrypoint] = [code.value for code in jobs_page.main.code if code.language == "bash"]
    assert shlex.split(entrypoint) == ["python", "-m", "jobs.evaluate", "--preset", "smoke", "--lab", str(one_model)]
    submitted_id = jobs_page.success[0].value.split()[1]
    state = wait_for_jobs(head, [submitted_id], 300)[submitted_id]
    logs = run([RAY, "job", "logs", "--address", address, submitted_id], authorised).stdout
    assert state == "SUCCEEDED", logs[-3000:]


def test_hostile_labs_typed_into_the_jobs_form_reach_the_job_unchanged_and_run_nothing(smoke_head: Head, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    # every shell metacharacter in two submissions (each is a real job: the unit test runs more through /bin/sh)
    accepted = [f"{tmp_path}/my lab; touch {marker} $(touch {marker}) `touch {marker}`",
                f"{tmp_path}/lab' && touch {marker} && echo '"]
    refused = {f"{tmp_path}/lab\ntouch {marker}": "control character", f"lab; touch {marker}": "absolute path",
               f"http://127.0.0.1:1/lab; touch {marker}": "s3://BUCKET"}
    head = smoke_head
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

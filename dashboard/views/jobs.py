"""Jobs: the Ray job API's jobs with their status and log tail, and a form that submits a pipeline, sweep or evaluation."""

from pathlib import Path

import streamlit as st
import yaml

from dashboard.http_client import request
from dashboard.job_entrypoint import KINDS, PRESETS, EntrypointError, job_entrypoint
from dashboard.page_tools import settings

ROOT = Path(__file__).resolve().parents[2]
NO_AGENT = "No available agent"  # Ray's job API, while a new head's job agent has not registered yet

st.title("Jobs")
address = settings().ray_address
token_path = Path(settings().ray_token_file).expanduser()
token = token_path.read_text().strip() if token_path.is_file() else ""
headers = {"Authorization": f"Bearer {token}"} if token else {}
version = request(f"{address}/api/version", headers=headers, timeout=3)
if version.status in (401, 403):
    st.error(f"The Ray job API at {address} refuses the token in {token_path} (HTTP {version.status}).")
    st.stop()
if not version.ok:
    st.warning(f"No Ray job API answers at {address} ({version.error or f'HTTP {version.status}'}). Start a local head with:")
    st.code("python -m cluster.local up", language="bash")
    st.stop()
st.caption(f"Ray {version.json().get('ray_version', '?')} at {address}")
jobs = request(f"{address}/api/jobs/", headers=headers).json()
rows = [{"submission_id": j.get("submission_id"), "status": j.get("status"), "entrypoint": j.get("entrypoint"),
         "message": j.get("message")} for j in sorted(jobs, key=lambda j: j.get("start_time") or 0, reverse=True)]
if rows:
    st.dataframe(rows, hide_index=True, width="stretch")
    chosen = st.selectbox("Logs of", [r["submission_id"] for r in rows if r["submission_id"]])
    logs = request(f"{address}/api/jobs/{chosen}/logs", headers=headers)
    st.code("\n".join((logs.json().get("logs", "") if logs.ok else logs.error).splitlines()[-40:]) or "(no output yet)")
else:
    st.info("No jobs yet.")

st.subheader("Submit")
with st.form("submit"):
    kind = st.selectbox("Job", list(KINDS))
    preset = st.selectbox("Preset", PRESETS, index=PRESETS.index("quick"))
    lab = st.text_input("Lab store (absolute path or URI)", str(Path(settings().lab).resolve()) if "://" not in settings().lab else settings().lab)
    submitted = st.form_submit_button("Submit")
if submitted:
    try:
        entrypoint = job_entrypoint(kind, preset, lab)
    except EntrypointError as error:
        st.error(f"Not submitted: {error}")
        st.stop()
    from ray.job_submission import JobSubmissionClient  # imported only when submitting: it is slow to load

    excludes = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())["excludes"]
    client = JobSubmissionClient(address, headers=headers)
    try:
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(ROOT), "excludes": excludes})
    except RuntimeError as error:  # the job API's refusals (a head starting, a bad runtime env) arrive as RuntimeError
        st.error(f"Not submitted: the head refused the job: {error}" + (
            " The head's job agent is still starting; submit again in a few seconds." if NO_AGENT in str(error) else ""))
        st.stop()
    st.success(f"Submitted {job_id}")
    st.code(entrypoint, language="bash")

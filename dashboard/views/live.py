"""Live sampling: ask the Serve app for images of a model with a chosen sampler, steps and seed."""

import streamlit as st

from dashboard.http_client import request
from dashboard.page_tools import settings
from diffusion.core.samplers import SAMPLERS

st.title("Live sampling")
url = settings().serve_url
health = request(f"{url}/healthz", timeout=3)
if not health.ok:
    st.warning(f"No Serve app answers at {url} ({health.error or f'HTTP {health.status}'}). Start one with:")
    st.code(f"python -m serve --lab {settings().lab} --port 8000", language="bash")
    st.stop()
models = [m for m in request(f"{url}/models").json() if m["loaded"]]
if not models:
    st.info(f"The Serve app at {url} hosts no loadable model.")
    st.stop()
st.caption(f"Serve app at {url}: {health.json()['loaded_models']} model(s) loaded.")
with st.form("sample"):
    names = [m["name"] for m in models]
    name = st.selectbox("Model", names)
    timesteps = next(m["timesteps"] for m in models if m["name"] == name)
    left, middle, right = st.columns(3)
    sampler = left.selectbox("Sampler", list(SAMPLERS), help="dpmpp2m: DPM-Solver++(2M), good at 10-20 steps; "
                                                             "dpmpp2m_sde runs here with eta 0, its ODE limit")
    steps = middle.number_input("Steps", 1, 1000, 50, help="at most the model's T")
    seed = right.number_input("Seed", 0, 2**32 - 1, 0)
    num_images = st.slider("Images", 1, 64, 16)
    submitted = st.form_submit_button("Sample")
if submitted:
    body = {"model": name, "sampler": sampler, "steps": int(min(steps, timesteps)), "seed": int(seed),
            "num_images": num_images, "columns": 8}
    with st.spinner("sampling"):
        answer = request(f"{url}/sample", body, timeout=300)
    if answer.ok:
        st.image(answer.body, caption=f"{name}: {sampler}, {body['steps']} steps, seed {seed}")
    else:
        st.error(f"The Serve app answered {answer.status}: {answer.error}")

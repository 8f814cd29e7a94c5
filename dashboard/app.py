"""The Diffusion Lab dashboard: ``streamlit run dashboard/app.py -- --lab PATH [--serve-url URL] [--ray-address URL]``.

The entry page: reads the settings (flags, else environment), lets the sidebar change them,
and routes to the pages with ``st.navigation``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the project
    sys.path.insert(0, str(ROOT))

from dashboard.settings import parse_settings  # noqa: E402

VIEWS = Path(__file__).resolve().parent / "views"  # not pages/: Streamlit would serve that folder as a second app

st.set_page_config(page_title="Diffusion Lab", layout="wide")
if "settings" not in st.session_state:
    st.session_state["settings"] = parse_settings(sys.argv[1:])
current = st.session_state["settings"]
with st.sidebar:
    st.markdown("**Diffusion Lab**")
    lab = st.text_input("Lab store (path or URI)", current.lab)
    serve_url = st.text_input("Serve URL", current.serve_url)
    ray_address = st.text_input("Ray job API", current.ray_address)
    token_file = st.text_input("Ray token file", current.ray_token_file)
    st.session_state["settings"] = dataclasses.replace(current, lab=lab.strip(), serve_url=serve_url.strip().rstrip("/"),
                                                       ray_address=ray_address.strip().rstrip("/"),
                                                       ray_token_file=token_file.strip())
    if st.button("Reload from the lab store"):
        st.cache_data.clear()

navigation = st.navigation({
    "Results": [st.Page(VIEWS / "leaderboard.py", title="Leaderboard", icon=":material/leaderboard:", default=True),
                st.Page(VIEWS / "samples.py", title="Samples", icon=":material/grid_view:"),
                st.Page(VIEWS / "paths.py", title="Denoising paths", icon=":material/timeline:"),
                st.Page(VIEWS / "sweeps.py", title="Sweeps", icon=":material/tune:"),
                st.Page(VIEWS / "robustness.py", title="Metric robustness", icon=":material/monitoring:")],
    "Live": [st.Page(VIEWS / "live.py", title="Live sampling", icon=":material/bolt:"),
             st.Page(VIEWS / "jobs.py", title="Jobs", icon=":material/work:")],
})
navigation.run()

"""The Diffusion Lab dashboard: ``streamlit run dashboard/app.py -- --lab PATH [--serve-url URL] [--ray-address URL]``.

The entry page: reads the settings (flags, else environment) once per session, shows them
read-only in the sidebar (a visitor cannot point the dashboard elsewhere), and routes to the
pages with ``st.navigation``. It listens on 127.0.0.1 (``.streamlit/config.toml``); see the
README's Security section before exposing it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the project
    sys.path.insert(0, str(ROOT))

from dashboard.settings import SETTINGS_HELP, parse_settings, settings_shown  # noqa: E402

VIEWS = Path(__file__).resolve().parent / "views"  # not pages/: Streamlit would serve that folder as a second app

st.set_page_config(page_title="Diffusion Lab", layout="wide")
if "settings" not in st.session_state:
    st.session_state["settings"] = parse_settings(sys.argv[1:])
with st.sidebar:
    st.markdown("**Diffusion Lab**")
    for label, value in settings_shown(st.session_state["settings"]).items():
        st.caption(label)
        st.code(value, language=None, wrap_lines=True)
    st.caption(f"Set when the dashboard starts: {SETTINGS_HELP}")
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

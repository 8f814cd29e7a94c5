"""Samples: the 50-image grid of each model, several models side by side."""

import streamlit as st

from dashboard import lab_data
from dashboard.page_tools import or_stop, settings
from diffusion.leaderboard import leaderboard

st.title("Samples")
lab = settings().lab
order = or_stop(lambda: lab_data.ranked_denoisers(lab))
if not order:
    st.info(f"The lab store {lab} has no exported denoisers yet: python -m jobs.pipeline --preset quick --lab {lab}")
    st.stop()
try:
    ranked = leaderboard(lab_data.table(lab, "scores")).model.tolist()
except lab_data.LabUnavailable:
    ranked = []
chosen = st.multiselect("Models", order, default=order[: min(2, len(order))])
if not chosen:
    st.info("Choose one or more models.")
    st.stop()
for column, name in zip(st.columns(len(chosen)), chosen):
    grid = lab_data.model_file(lab, name, "grid.png")
    with column:
        st.subheader(name)
        if grid is None:
            st.info(f"{name} has no grid yet: python -m jobs.evaluate --lab {lab} --models {name}")
        else:
            rank = f"rank {ranked.index(name) + 1} on the leaderboard" if name in ranked else "not scored yet"
            st.image(grid, caption=f"{name}: 50 samples ({rank})", width="stretch")
